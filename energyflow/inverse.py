"""Inverse problems on images: the learned energy as a prior plus a Pyro observation.

Each task is a forward operator ``A`` and a Gaussian noise level: inpainting (box,
random pixels, half image: ``A`` keeps the observed pixels), denoising (``A = I``) and
deblurring (``A`` = a Gaussian blur). The posterior is ``V + observe(likelihood)``
(optionally ``+ Repulsion`` among the chains of one image, acting on the unobserved
pixels). Its stationary density at eps_max is ``exp(-V/eps_max) p(y | x) exp(-W)``.
By default :func:`solve` reaches it with :class:`~energyflow.samplers.guided.GuidedLangevin`,
where the observation steers the transport through the endpoint it is heading to;
``guidance=False`` gives the paper's conditional Langevin, where observation and
repulsion are tempered by eps(t) and so act only from ``tau_star`` on.

Example:
    >>> import torch
    >>> task = make_task("inpaint_half", (1, 8, 8), noise=0.05)
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> y = task.measure(x, generator=torch.Generator().manual_seed(0))
    >>> y.shape, int(task.observed.sum())
    (torch.Size([2, 1, 8, 8]), 32)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import attrs
import torch
from torch import Tensor, nn

from energyflow.energies.base import Energy
from energyflow.energies.interaction import Repulsion
from energyflow.energies.observe import observe
from energyflow.errors import InvalidValueError
from energyflow.field import compile as compile_field
from energyflow.metrics import mean_pairwise_distance, psnr, ssim
from energyflow.samplers.base import SampleResult
from energyflow.samplers.guided import GuidedLangevin
from energyflow.samplers.langevin import Langevin
from energyflow.spaces import Euclidean


def gaussian_blur_operator(kernel_size: int = 3, sigma: float = 1.0) -> Callable[[Tensor], Tensor]:
    """A depthwise Gaussian blur with zero padding, ``(B, C, H, W) -> (B, C, H, W)``."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise InvalidValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    coords = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel2d = (g[:, None] * g[None, :]) / (g.sum() ** 2)

    def blur(x: Tensor) -> Tensor:
        c = x.shape[1]
        k = kernel2d.to(dtype=x.dtype, device=x.device).expand(c, 1, kernel_size, kernel_size)
        return torch.nn.functional.conv2d(x, k, padding=kernel_size // 2, groups=c)

    return blur


@attrs.frozen(eq=False)
class InverseTask:
    """A measurement model ``y = A(x) + noise * xi`` on images.

    Attributes:
        name (str): task name.
        event_shape (tuple[int, ...]): image shape ``(C, H, W)``.
        noise (float): observation noise standard deviation.
        observed (Tensor): ``(C, H, W)`` 1 where a pixel is measured (inpainting), all
            ones otherwise.
        operator (Callable | None): ``A`` for non-masking tasks (blur); None means the
            masked identity.
    """

    name: str
    event_shape: tuple[int, ...]
    noise: float
    observed: Tensor
    operator: Callable[[Tensor], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``A(x)``, shape ``(B, C, H, W)`` (unobserved pixels set to 0)."""
        out = self.operator(x) if self.operator is not None else x
        return out * self.observed.to(dtype=x.dtype, device=x.device)

    def measure(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy measurement of ``x`` ``(B, C, H, W)``: ``A(x) + noise * xi`` on observed pixels."""
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return self.forward(x) + self.noise * xi * self.observed.to(dtype=x.dtype, device=x.device)

    @property
    def region(self) -> Tensor:
        """Pixels the task must reconstruct: the unobserved ones for inpainting, all otherwise."""
        missing = 1.0 - self.observed
        return missing if missing.sum() > 0 else torch.ones_like(self.observed)

    def likelihood(self, y: Tensor) -> Energy:
        """``-log p(y | x)`` as a Pyro-style observation term (tempered)."""
        import pyro
        import pyro.distributions as dist

        if tuple(y.shape[1:]) != tuple(self.event_shape):
            raise InvalidValueError(f"measurements must have shape (B, {self.event_shape}), got {tuple(y.shape)}")
        observed = self.observed.bool()
        operator = self.operator
        noise = self.noise

        def model(x: Tensor) -> None:
            mean = operator(x) if operator is not None else x
            d = dist.Normal(mean, noise).mask(observed.to(x.device)).to_event(len(self.event_shape))
            pyro.sample("y", d, obs=y.to(dtype=x.dtype, device=x.device))

        model.__name__ = self.name
        return observe(model, name=f"observe({self.name})")


def _box_mask(shape: tuple[int, ...]) -> Tensor:
    c, h, w = shape
    m = torch.ones(shape)
    m[:, h // 4 : h - h // 4, w // 4 : w - w // 4] = 0.0
    return m


def _half_mask(shape: tuple[int, ...]) -> Tensor:
    c, h, w = shape
    m = torch.ones(shape)
    m[:, h // 2 :, :] = 0.0
    return m


def _random_mask(shape: tuple[int, ...], fraction: float, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    keep = (torch.rand((1, h, w), generator=g) >= fraction).float()
    return keep.expand(shape).clone()


TASK_DEFAULT_NOISE = {"inpaint_box": 0.05, "inpaint_random": 0.05, "inpaint_half": 0.05, "denoise": 0.3, "deblur": 0.05}


def make_task(name: str, event_shape: tuple[int, ...], noise: float | None = None, *, missing_fraction: float = 0.5,
              mask_seed: int = 0, blur_sigma: float = 1.0) -> InverseTask:
    """Builds an inverse task by name.

    Args:
        name (str): one of ``inpaint_box`` (centre box missing), ``inpaint_random``
            (``missing_fraction`` of the pixels missing), ``inpaint_half`` (bottom half
            missing), ``denoise``, ``deblur`` (3x3 Gaussian blur of width ``blur_sigma``).
        event_shape (tuple[int, ...]): ``(C, H, W)``.
        noise (float | None): observation noise std; a per-task default if None.

    Raises:
        ValueError: unknown task, non-image shape or bad parameters.
    """
    key = name.lower().replace("-", "_")
    if key not in TASK_DEFAULT_NOISE:
        raise InvalidValueError(f"unknown inverse task {name!r}; choose one of: {', '.join(TASK_DEFAULT_NOISE)}")
    shape = tuple(int(s) for s in event_shape)
    if len(shape) != 3:
        raise InvalidValueError(f"inverse tasks work on images (C, H, W), got event shape {shape}")
    noise = TASK_DEFAULT_NOISE[key] if noise is None else float(noise)
    if not noise > 0:
        raise InvalidValueError(f"noise must be > 0, got {noise}")
    if not 0.0 < missing_fraction < 1.0:
        raise InvalidValueError(f"missing_fraction must lie in (0, 1), got {missing_fraction}")
    ones = torch.ones(shape)
    if key == "inpaint_box":
        return InverseTask(key, shape, noise, _box_mask(shape))
    if key == "inpaint_half":
        return InverseTask(key, shape, noise, _half_mask(shape))
    if key == "inpaint_random":
        return InverseTask(key, shape, noise, _random_mask(shape, missing_fraction, mask_seed))
    if key == "denoise":
        return InverseTask(key, shape, noise, ones)
    return InverseTask(key, shape, noise, ones, gaussian_blur_operator(3, blur_sigma))


@attrs.frozen(eq=False)
class InverseSolution:
    """Posterior samples for a batch of measurements.

    Attributes:
        samples (Tensor): ``(N, K, C, H, W)``: K chains for each of N measurements.
        measurements (Tensor): ``(N, C, H, W)``.
        result (SampleResult): the sampler's raw result (diagnostics).
    """

    samples: Tensor
    measurements: Tensor
    result: SampleResult

    @property
    def mean(self) -> Tensor:
        """Posterior mean estimate per measurement, ``(N, C, H, W)``."""
        return self.samples.mean(1)


def solve(
    potential: nn.Module | Energy,
    task: InverseTask,
    measurements: Tensor,
    sampler: Langevin,
    *,
    chains: int = 4,
    repulsion_sigma: float | None = None,
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (-1.0, 1.0),
    guidance: bool = True,
    guidance_weight: float | None = None,
) -> InverseSolution:
    """Samples ``chains`` posterior draws for every measurement.

    Args:
        potential: the learned potential V (an Energy, e.g. ``Potential(net)``).
        task: the measurement model.
        measurements (Tensor): ``(N, C, H, W)``.
        sampler: the conditional Langevin (the run's schedule; ``sampler_for(cfg)``).
        chains (int): posterior draws per measurement.
        repulsion_sigma (float | None): bandwidth of the quadratic repulsion among the
            chains of one measurement, acting on unobserved pixels; None disables it.
        generator: randomness for the initial noise and the chains.
        clamp: pixel range the final samples are clipped to (None keeps them raw).
        guidance (bool): let the observation guide the transport through its
            predicted endpoint (:class:`~energyflow.samplers.guided.GuidedLangevin`;
            the default). False is the paper's sampler: the observation is tempered by
            eps(t) and so inert before ``tau_star``. Both target the same posterior at
            eps_max; on digits guidance lifts the PSNR of the posterior mean by
            2.5-4.6 dB on inpainting (``benchmarks/digits_inverse.py``) for 1.5x the
            gradient evaluations (about 2.5x the time).
        guidance_weight (float | None): the observation's weight ``w`` under guidance;
            None takes eps(t_end) (eps_max), the weight that keeps the posterior exact.
    """
    if chains < 1:
        raise InvalidValueError(f"chains must be >= 1, got {chains}")
    if repulsion_sigma is not None and chains < 2:
        raise InvalidValueError("repulsion needs at least two chains per measurement")
    if measurements.dim() != 4:
        raise InvalidValueError(f"measurements must be (N, C, H, W), got {tuple(measurements.shape)}")
    n = measurements.shape[0]
    device = next(iter(potential.parameters()), torch.zeros(())).device
    if not guidance and guidance_weight is not None:
        raise InvalidValueError("guidance_weight applies only with guidance=True")
    y = measurements.to(device).repeat_interleave(chains, dim=0)
    likelihood = task.likelihood(y)
    expr = potential if guidance else potential + likelihood
    if repulsion_sigma is not None:
        expr = expr + Repulsion(repulsion_sigma, mask=task.region, group_size=chains)
    field = compile_field(expr, Euclidean(task.event_shape))
    runner = GuidedLangevin(sampler, likelihood, guidance_weight) if guidance else sampler
    gen_device = generator.device if generator is not None else device
    x0 = torch.randn((n * chains, *task.event_shape), generator=generator, dtype=measurements.dtype, device=gen_device)
    result = runner.run(field, x0.to(device), generator=generator)
    samples = result.samples.detach()
    if clamp is not None:
        samples = samples.clamp(*clamp)
    return InverseSolution(samples.reshape(n, chains, *task.event_shape).cpu(), measurements.cpu(), result)


def evaluate(solution: InverseSolution, truth: Tensor, task: InverseTask) -> dict[str, float]:
    """PSNR on the reconstructed region, SSIM and diversity of a solution.

    Returns:
        dict: ``psnr`` (dB, mean over all draws, on ``task.region``), ``psnr_mean``
        (PSNR of the posterior mean), ``ssim`` (mean over draws), ``diversity`` (mean
        pairwise distance among the draws of one measurement, averaged).
    """
    n, k = solution.samples.shape[:2]
    flat = solution.samples.reshape(n * k, *task.event_shape)
    truth_rep = truth.cpu().repeat_interleave(k, dim=0)
    region = task.region
    out = {
        "psnr": float(psnr(flat, truth_rep, mask=region).mean()),
        "psnr_mean": float(psnr(solution.mean, truth.cpu(), mask=region).mean()),
        "ssim": float(ssim(flat, truth_rep).mean()),
    }
    if k > 1:
        out["diversity"] = float(sum(mean_pairwise_distance(solution.samples[i]) for i in range(n)) / n)
    return out


def nearest_neighbour_baseline(task: InverseTask, measurements: Tensor, train: Tensor) -> Tensor:
    """For each measurement, the training image whose measurement fits best, ``(N, C, H, W)``."""
    fits = task.forward(train.to(measurements.dtype)).reshape(train.shape[0], -1)
    y = measurements.reshape(measurements.shape[0], -1)
    d = torch.cdist(y.double(), fits.double())
    return train[d.argmin(dim=1)]


def baseline_psnr(candidates: Tensor, truth: Tensor, task: InverseTask) -> float:
    """Mean PSNR on the task region of candidate reconstructions ``(N, C, H, W)``."""
    return float(psnr(candidates.clamp(-1, 1), truth, mask=task.region).mean())


DEFAULT_REPULSION_SIGMA = 2.0


def default_repulsion_sigma(task: InverseTask) -> float:
    """The default repulsion bandwidth.

    2.0 was measured on digits (benchmarks/digits_inverse.py): it raises the diversity of
    four draws by 8-12% for a PSNR drop below 0.5 dB, where sqrt(#missing pixels) (4-8
    on 8x8 digits) moved diversity by only 1-2%. Images with many more pixels need a
    larger bandwidth; pass ``repulsion_sigma`` explicitly there.
    """
    return DEFAULT_REPULSION_SIGMA


@attrs.frozen(eq=False)
class ConditionReport:
    """What :func:`condition_run` measured and wrote.

    Attributes:
        metrics (dict[str, dict[str, float]]): per method (``posterior``,
            ``posterior+repulsion``, ``nearest_neighbour``, ``unconditional``) its scores.
        files (list[Path]): grids, samples and the JSON report written.
    """

    metrics: dict
    files: list


def condition_run(
    run: str,
    task_name: str,
    out_dir: str,
    *,
    num_images: int = 8,
    chains: int = 16,
    noise: float | None = None,
    repulsion_sigma: float | None = None,
    compare_repulsion: bool = True,
    t_end: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    guidance: bool = True,
    guidance_weight: float | None = None,
) -> ConditionReport:
    """Solves an inverse task on held-out images with a trained run and reports scores.

    Measurements are taken of the first ``num_images`` held-out images; the posterior
    ``V + observe(...)`` is sampled with the run's conditional Langevin (``chains`` draws
    each), with and without repulsion, and compared with two baselines: the training
    image that best explains the measurement, and unconditional samples of the model.
    ``guidance`` and ``guidance_weight`` are those of :func:`solve`.

    Raises:
        ValueError: the run's domain has no held-out images, or bad arguments.
    """
    import json
    from pathlib import Path

    from energyflow import plotting
    from energyflow.training.build import resolve_device
    from energyflow.training.run import load_potential, sampler_for

    if num_images < 1:
        raise InvalidValueError(f"num_images must be >= 1, got {num_images}")
    potential, cfg, domain = load_potential(run, device=device)
    if not hasattr(domain, "test_data") or len(domain.space.event_shape) != 3:
        raise InvalidValueError(f"condition needs an image domain with held-out images; this run's domain is {cfg.domain!r}")
    task = make_task(task_name, tuple(domain.space.event_shape), noise)
    test = domain.test_data()
    if num_images > test.shape[0]:
        raise InvalidValueError(f"num_images ({num_images}) exceeds the {test.shape[0]} held-out images")
    truth = test[:num_images].float()
    dev = resolve_device(device)
    y = task.measure(truth, generator=torch.Generator().manual_seed(seed))
    sampler = sampler_for(cfg, t_end=t_end)
    sigma = repulsion_sigma if repulsion_sigma is not None else default_repulsion_sigma(task)
    metrics: dict[str, dict[str, float]] = {}
    solutions: dict[str, InverseSolution] = {}
    variants = [("posterior", None)]
    if chains >= 2 and (compare_repulsion or repulsion_sigma is not None):
        variants.append(("posterior+repulsion", sigma))
    for label, rep in variants:
        gen = torch.Generator(dev).manual_seed(seed + 1)
        sol = solve(potential, task, y, sampler, chains=chains, repulsion_sigma=rep, generator=gen,
                    guidance=guidance, guidance_weight=guidance_weight)
        solutions[label] = sol
        metrics[label] = evaluate(sol, truth, task)
    nn_images = nearest_neighbour_baseline(task, y, domain.train_data().float())
    metrics["nearest_neighbour"] = {"psnr": baseline_psnr(nn_images, truth, task)}
    field = compile_field(potential, domain.space)
    # As many unconditional draws per image as posterior draws, scored the same way.
    x0 = domain.sample_source(num_images * chains, generator=torch.Generator().manual_seed(seed + 2)).to(dev)
    uncond = sampler.run(field, x0, generator=torch.Generator(dev).manual_seed(seed + 3)).samples.detach().cpu()
    metrics["unconditional"] = {"psnr": baseline_psnr(uncond, truth.repeat_interleave(chains, dim=0), task)}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    shown_y = torch.where(task.observed.bool(), y, torch.full_like(y, -1.0)) if task.operator is None else y
    for label, sol in solutions.items():
        rows = [truth, shown_y] + [sol.samples[:, j] for j in range(sol.samples.shape[1])] + [sol.mean]
        grid = torch.cat(rows).clamp(-1, 1)
        fig = plotting.plot_image_grid(
            grid, nrow=num_images,
            title=f"{task.name}: truth, measurement, {sol.samples.shape[1]} draws, mean ({label})",
        )
        files.append(plotting.save_figure(fig, out / f"{task.name}_{label.replace('+', '_')}.png"))
        path = out / f"{task.name}_{label.replace('+', '_')}.pt"
        torch.save(sol.samples, path)
        files.append(path)
    report = out / f"{task.name}_metrics.json"
    report.write_text(json.dumps({"task": task.name, "noise": task.noise, "chains": chains,
                                  "repulsion_sigma": sigma, "guidance": guidance,
                                  "guidance_weight": solutions["posterior"].result.info.get("weight"),
                                  "metrics": metrics}, indent=2) + "\n")
    files.append(report)
    return ConditionReport(metrics, files)


# --- blind denoising: the noise level is a latent site of the model -------------------------------

#: Scale of the HalfNormal prior on the unknown noise std (issue 10).
BLIND_SIGMA_SCALE = 0.5
#: Where :func:`blind_denoise` starts sigma.
SIGMA_INITS = ("measurement", "uniform")


def _hmc_refiner(step_size: float, num_warmup: int, num_samples: int, thin: int, temperature: float):
    from energyflow.samplers.hmc import HMC

    return HMC(step_size=step_size, num_leapfrog=BLIND_HMC_LEAPFROG, num_warmup=num_warmup,
               num_samples=num_samples, thin=thin, temperature=temperature,
               mass_matrix="diag" if num_warmup else None)


def _mala_refiner(step_size: float, num_warmup: int, num_samples: int, thin: int, temperature: float):
    from energyflow.samplers.mala import MALA

    return MALA(step_size=step_size, num_warmup=num_warmup, num_samples=num_samples, thin=thin,
                temperature=temperature, mass_matrix="diag" if num_warmup else None)


# Leapfrog steps of the blind-denoising HMC refinement: on the 65-D digits posterior (x, log sigma)
# 10 steps at the adapted step size (about 0.04) keep sigma's block means flat after a few hundred
# iterations, where MALA's trace of sigma was still drifting after 2,500 (issue 10's closing note).
BLIND_HMC_LEAPFROG = 10

# The refinement kernels of :func:`blind_denoise`: name -> (step size, warm-up, iterations after it, thin,
# temperature) -> a sampler that keeps every thin-th draw (num_samples, thin).
REFINERS = {"hmc": _hmc_refiner, "mala": _mala_refiner}


def _noise_model(x: Tensor, sigma: Tensor, event_dims: int):
    """``Normal(x, sigma)`` over the last ``event_dims`` dimensions.

    ``sigma`` carries the model's batch (the chain plate: ``(B,)``, or ``()`` for one
    parameter set); it is reshaped to broadcast over the pixels.
    """
    import pyro.distributions as dist

    return dist.Normal(x, sigma.reshape(sigma.shape + (1,) * event_dims)).to_event(event_dims)


def blind_denoising_model(potential: Callable[[Tensor], Tensor], event_shape: tuple[int, ...],
                          sigma_scale: float = BLIND_SIGMA_SCALE,
                          prior_temperature: float | None = None) -> Callable[[Tensor | None], None]:
    """The Pyro model of blind denoising: image prior, unknown noise level, observation.

    ::

        x     ~ Boltzmann(V, eps)       (the learned potential: density exp(-V / eps))
        sigma ~ HalfNormal(sigma_scale)
        y     ~ Normal(x, sigma)        (every pixel; omitted when y is None)

    Args:
        potential (Callable): ``V``, ``(N, *event_shape) -> (N,)``.
        event_shape (tuple[int, ...]): the shape of one image, e.g. ``(1, 8, 8)``.
        sigma_scale (float): the HalfNormal's scale.
        prior_temperature (float | None): the prior's fixed temperature (``eps`` of
            :class:`~energyflow.Boltzmann`), or None for the sampler's (the Energy
            Matching schedule's eps(t), eps_max at the end).

    Returns:
        Callable: ``blind(y)`` for :func:`energyflow.model`; ``y`` is ``(B, *event_shape)``
        with one measurement per chain (its leading dimension lines up with the chain
        plate), or None for the prior alone.
    """
    import pyro
    import pyro.distributions as dist

    from energyflow.energies.model import Boltzmann

    event = tuple(int(s) for s in event_shape)

    def blind(y: Tensor | None) -> None:
        x = pyro.sample("x", Boltzmann(potential, event_shape=event, eps=prior_temperature))
        sigma = pyro.sample("sigma", dist.HalfNormal(sigma_scale))
        if y is not None:
            pyro.sample("y", _noise_model(x, sigma, len(event)), obs=y)

    return blind


class _NoiseLikelihood(Energy):
    """``-log Normal(y | x, sigma)`` on the flat state of a blind-denoising model (tempered).

    The observation site of :func:`blind_denoising_model` alone (same distribution, same
    layout), for :class:`~energyflow.samplers.guided.GuidedLangevin`, which evaluates it
    at the predicted endpoint of the transport. Shapes: ``(B, D) -> (B,)``.
    """

    coupling = "tempered"

    def __init__(self, prior_model, y: Tensor, sigma: float | None = None) -> None:
        super().__init__()
        self.prior_model = prior_model
        self.sigma = sigma
        self.register_buffer("y", y)
        self._label = "observe(y | x, sigma)"

    def forward(self, x: Tensor) -> Tensor:
        values, _ = self.prior_model.unpack(x)
        event = tuple(self.y.shape[1:])
        img = values["x"].reshape(x.shape[0], *event)
        if self.sigma is None:
            sigma = values["sigma"].reshape(x.shape[0])
        else:
            sigma = torch.full((x.shape[0],), float(self.sigma), dtype=x.dtype, device=x.device)
        return -_noise_model(img, sigma, len(event)).log_prob(self.y.to(dtype=x.dtype))


@attrs.frozen(eq=False)
class BlindDenoising:
    """Joint posterior draws of images and noise level for a batch of measurements.

    Attributes:
        samples (Tensor): ``(N, S, *event)``: S draws of the image for each of N
            measurements (clamped like :func:`solve`'s when ``clamp`` was given), chain by
            chain: ``samples[i].reshape(chains, S // chains, *event)``.
        sigma (Tensor): ``(N, S)``: the noise level of the same draws.
        measurements (Tensor): ``(N, *event)``.
        transport (SampleResult): the Energy Matching Langevin run (chains ``N * chains``).
        refinement (SampleResult | None): the HMC or MALA run at eps_max, None if skipped;
            its ``draws`` ``(N * chains, S // chains, D)`` are the kept unconstrained states.
        eps_max (float): the sampler's final temperature.
        prior_temperature (float): the temperature of the prior in the posterior the draws
            target (the prior is ``exp(-V / prior_temperature)``; eps_max unless
            :func:`blind_denoise` was given another).
        chains (int): chains per measurement.
        known_sigma (float | None): the noise level conditioned on, None where sigma was
            sampled.

    The chains of one measurement sample one posterior and those of different measurements
    different ones, so the diagnostics (:meth:`to_arviz`, :meth:`summary`,
    :meth:`plot_trace`) take each image's chains as ArviZ's chains and the image as a
    dimension: R-hat and ESS of ``sigma[i]`` are over the ``chains`` chains of image i.
    """

    samples: Tensor
    sigma: Tensor
    measurements: Tensor
    transport: SampleResult
    refinement: SampleResult | None
    eps_max: float
    prior_temperature: float
    chains: int = 1
    known_sigma: float | None = None

    @property
    def mean(self) -> Tensor:
        """Posterior mean image per measurement, ``(N, *event)``."""
        return self.samples.mean(1)

    @property
    def sigma_mean(self) -> Tensor:
        """Posterior mean of sigma per measurement, ``(N,)``."""
        return self.sigma.mean(1)

    @property
    def draws_per_chain(self) -> int:
        """Draws each chain kept (``num_samples // thin``; 1 without refinement)."""
        return self.sigma.shape[1] // self.chains

    def sigma_interval(self, level: float = 0.9) -> Tensor:
        """Central posterior interval of sigma, ``(N, 2)`` (lower, upper quantiles)."""
        if not 0.0 < level < 1.0:
            raise InvalidValueError(f"level must lie in (0, 1), got {level}")
        q = torch.tensor([(1.0 - level) / 2, (1.0 + level) / 2], dtype=self.sigma.dtype)
        return torch.quantile(self.sigma, q, dim=1).T.contiguous()

    def _var_names(self, var_names: Sequence[str] | str | None, default: Sequence[str]) -> list[str]:
        sampled = ["x"] if self.known_sigma is not None else ["x", "sigma"]
        if var_names is None:
            return [n for n in default if n in sampled] or sampled
        names = [var_names] if isinstance(var_names, str) else list(var_names)
        for name in names:
            if name == "sigma" and self.known_sigma is not None:
                raise InvalidValueError(f"sigma was known ({self.known_sigma:g}), not sampled: no draws of it")
            if name not in sampled:
                raise InvalidValueError(f"no variable {name!r}; the posterior has {sampled}")
        return names

    def to_arviz(self, var_names: Sequence[str] | str | None = None):
        """The refinement's draws as an ArviZ ``InferenceData``, one image per index of ``image``.

        Groups: ``posterior`` with ``sigma`` ``(chain, draw, image)`` and ``x`` ``(chain,
        draw, image, *event)`` (the draws of :attr:`samples`, clamped as they are), where a
        chain is one of the ``chains`` chains of each image; ``sample_stats`` of the
        refinement (``diverging``, ``energy``, ``acceptance_rate``, ``lp``, ``step_size``,
        ``n_steps``) in the same layout; ``observed_data`` ``y`` ``(image, *event)``.

        Args:
            var_names (Sequence[str] | str | None): ``"x"`` and/or ``"sigma"`` (default:
                both, ``x`` alone when sigma was known).

        Raises:
            InvalidValueError: no refinement (``num_samples=0`` keeps one draw per chain),
                or an unknown or unsampled variable.
            MissingDependencyError: ArviZ is not installed.
        """
        import warnings

        from energyflow.diagnostics import _arviz

        if self.refinement is None:
            raise InvalidValueError("no refinement (num_samples=0): the transport's final states are one draw per "
                                    "chain; diagnostics need the refinement's kept draws (num_samples > 0)")
        names = self._var_names(var_names, ("x", "sigma"))
        az = _arviz()
        n, c, s = self.sigma.shape[0], self.chains, self.draws_per_chain
        event = tuple(self.samples.shape[2:])
        event_dims = ["channel", "row", "col"] if len(event) == 3 else [f"dim_{k}" for k in range(len(event))]

        def per_image(v: Tensor) -> Any:  # (N, C * S, *rest) -> (C, S, N, *rest)
            v = v.detach().cpu().reshape(n, c, s, *v.shape[2:])
            return v.permute(1, 2, 0, *range(3, v.dim())).numpy()

        posterior = {}
        if "sigma" in names:
            posterior["sigma"] = per_image(self.sigma)
        if "x" in names:
            posterior["x"] = per_image(self.samples)
        stats = {k: per_image(v.reshape(n, c * s)) for k, v in self.refinement.sample_stats.items()}
        dims = {"sigma": ["image"], "x": ["image", *event_dims], "y": ["image", *event_dims],
                **{k: ["image"] for k in stats}}
        with warnings.catch_warnings():  # a few draws per chain are not a transposed array here
            warnings.filterwarnings("ignore", message="More chains")
            return az.from_dict(posterior=posterior, sample_stats=stats,
                                observed_data={"y": self.measurements.detach().cpu().numpy()}, dims=dims,
                                coords={"image": list(range(n))}, attrs={"inference_library": "energyflow"})

    def summary(self, var_names: Sequence[str] | str | None = None, *, warn: bool = True, **kwargs: Any):
        """ArviZ's summary table (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) per image.

        Args:
            var_names (Sequence[str] | str | None): default ``sigma`` alone (``x`` where
                sigma was known): ``x`` has ``prod(event)`` rows per image.
            warn (bool): warn of R-hat > 1.01 and ESS < 400 (:func:`energyflow.diagnostics.check`).
            **kwargs: passed to ``az.summary`` (``hdi_prob``, ``round_to``, ...).

        Returns:
            pandas.DataFrame: rows ``sigma[0]``, ``sigma[1]``, ... (one per image).
        """
        from energyflow.diagnostics import summary

        return summary(self.to_arviz(self._var_names(var_names, ("sigma",))), warn=warn, **kwargs)

    def plot_trace(self, var_names: Sequence[str] | str | None = None, **kwargs: Any):
        """Trace and rank plots per image (:func:`energyflow.diagnostics.plot_trace`; default
        ``sigma``; at most ``max_parameters=8`` rows: the first 8 images)."""
        from energyflow.diagnostics import plot_trace

        names = self._var_names(var_names, ("sigma",))
        return plot_trace(self.to_arviz(names), var_names=names, **kwargs)


def blind_denoise(
    potential: nn.Module | Energy | Callable[[Tensor], Tensor],
    measurements: Tensor,
    sampler: Langevin,
    *,
    chains: int = 8,
    sigma_scale: float = BLIND_SIGMA_SCALE,
    guidance: bool = True,
    num_warmup: int = 200,
    num_samples: int = 200,
    thin: int = 1,
    sigma_init: str = "measurement",
    prior_temperature: float | None = None,
    known_sigma: float | None = None,
    refine: str = "hmc",
    generator: torch.Generator | None = None,
    clamp: tuple[float, float] | None = (-1.0, 1.0),
) -> BlindDenoising:
    """Samples the joint posterior of (image, noise level) for measurements of unknown noise.

    The model is :func:`blind_denoising_model` through :func:`energyflow.model`: ``x ~
    Boltzmann(V)``, ``sigma ~ HalfNormal(sigma_scale)``, ``y ~ Normal(x, sigma)``, on the
    flat unconstrained state ``(x, log sigma)`` of ``D = prod(event) + 1`` coordinates.
    Its field at temperature eps is ``V(x) - eps * [log p(sigma) + log sigma + log p(y |
    x, sigma)]``, so at eps_max the stationary law is ``exp(-V/eps_max) p(sigma) p(y | x,
    sigma)``: the prior V is the Boltzmann density at eps_max it was trained as, and the
    observation and sigma's prior enter untempered. That is the posterior of sigma this
    reports. With ``prior_temperature`` the refinement's prior is ``exp(-V /
    prior_temperature)`` instead. A potential whose density at eps_max is sharper than
    its data (its own samples have a lower V than real images) makes the posterior
    explain the gap between the measurement and the prior's preferred images as noise,
    so sigma is overestimated; :func:`energyflow.likelihood.calibrate_temperature` fits
    the temperature to the training images by maximum likelihood (the samples' mean V
    equals the data's). That matches one statistic only: on the digits runs of issue 10
    the fitted prior is then too broad at the scale of single pixels, x absorbs part of
    the noise and sigma is underestimated at low noise (``benchmarks/blind_denoising.py``
    measures both settings). sigma's posterior is only as calibrated as the prior is at
    the noise's scale. With ``known_sigma`` the noise level is
    conditioned on (``pyro.poutine.condition``) instead of sampled: the same posterior
    of the image with sigma known, the comparison the blind posterior is measured
    against. The sampler, per measurement ``chains`` chains:

    1. **Transport** with the Energy Matching Langevin ``sampler`` (its dt and eps(t),
       ``t`` from ``sampler.t_start`` to its end), x started from the source noise
       N(0, I) and sigma from ``sigma_init`` (below). Before
       tau* eps(t) = 0 and the tempered model is inert; with ``guidance`` (default) the
       observation (weight eps_max) acts through the transport's predicted endpoint
       (:class:`~energyflow.samplers.guided.GuidedLangevin` on the prior ``model(blind,
       None)`` with the observation site as its observation term), which moves x towards
       the measured digit and sigma towards the residual's scale; after ``t = 1`` the
       drift is exactly the whole model's field at eps(t). ``guidance=False`` runs the
       plain sampler on ``model(blind, y)`` (the paper's conditional Langevin).
    2. **Refinement** (``num_samples > 0``): :class:`~energyflow.samplers.hmc.HMC`
       (``refine="hmc"``, default; :data:`BLIND_HMC_LEAPFROG` leapfrog steps) or
       :class:`~energyflow.samplers.mala.MALA` (``refine="mala"``) at temperature eps_max
       on the whole model (exact for the posterior: the Langevin's discretisation bias is
       corrected), ``num_warmup`` iterations adapting the step size and a diagonal mass
       matrix (sigma's coordinate and the pixels have very different posterior scales),
       then ``num_samples`` iterations, every ``thin``-th kept (the kernel's
       ``num_samples``/``thin``: ``refinement.draws``). The batch holds N posteriors,
       so the kernel gets the image index as ``chain_groups``: warm-up restarts a stuck
       chain only from another chain of its own image, judged against that image's
       chains, and the (shared) diagonal mass matrix is the within-image variance;
       ``refinement.info["num_restarted_per_group"]`` counts the restarts per image.
       On trained digit priors MALA's sigma was still drifting after 2,500 iterations (log sigma is strongly
       coupled to the residual, a direction random-walk proposals cross slowly); HMC's
       block means of sigma are flat after a few hundred, though where sigma's posterior
       piles up near 0 its split R-hat stays at 1.3-1.5 (``benchmarks/blind_denoising.py``
       reports both).

    Args:
        potential: the learned potential V, ``(N, *event) -> (N,)`` (e.g. ``Potential(net)``).
        measurements (Tensor): ``(N, *event)``, the noisy images ``y``.
        sampler (Langevin): the Energy Matching sampler (``sampler_for(cfg)``); its final
            temperature is eps_max (> 0).
        chains (int): chains per measurement.
        sigma_scale (float): scale of sigma's HalfNormal prior.
        guidance (bool): guide the transport by the observation (see above).
        num_warmup (int): refinement adaptation iterations (>= 0).
        num_samples (int): refinement iterations; 0 keeps the transport's final states
            as the draws (S = ``chains``).
        thin (int): keep every ``thin``-th refinement iteration.
        sigma_init (str): where sigma starts. ``"measurement"`` (default): at the
            measurement's root-mean-square ``rms(y)`` times ``exp(U(-0.5, 0.5))``, above
            the noise level, from which ``log sigma`` descends at the bounded rate
            ``dt * eps_max * prod(event)`` per step. ``"uniform"``: Stan's uniform(-2, 2)
            on ``log sigma``; a start far below the residual's scale ``r`` makes the first
            gradient step on ``log sigma`` of order ``dt * eps_max * |r|^2 / sigma^2`` (the
            coordinate is stiff there), which throws sigma far above the noise, and the
            transport's few dozen steps do not bring it back.
        prior_temperature (float | None): the prior's temperature in the refinement (the
            posterior the draws target), None for eps_max. The transport always runs the
            Energy Matching schedule on V itself.
        known_sigma (float | None): a known noise level (not sampled), or None.
        refine (str): the refinement kernel, a key of :data:`REFINERS` (``"hmc"``,
            ``"mala"``).
        generator (torch.Generator | None): randomness for the initial states and chains.
        clamp (tuple[float, float] | None): pixel range the image draws are clipped to.

    Returns:
        BlindDenoising: ``S = chains * (num_samples // thin)`` draws per measurement
        (``chains`` when ``num_samples == 0``); its :meth:`~BlindDenoising.summary`,
        :meth:`~BlindDenoising.to_arviz` and :meth:`~BlindDenoising.plot_trace` give
        R-hat, ESS and trace plots per image. The refinement warns (Python warnings) of
        divergences after warm-up and of a collapsed step size.

    Raises:
        InvalidValueError: measurements not ``(N, *event)`` with finite values, a bad
            count, a non-positive ``sigma_scale``, ``prior_temperature`` or
            ``known_sigma``, or a sampler whose final eps is 0.
    """
    from energyflow.energies.model import model as pyro_model

    if not callable(potential):
        raise InvalidValueError(f"potential must be a callable V(x), got {type(potential).__name__}")
    if refine not in REFINERS:
        raise InvalidValueError(f"refine must be one of {tuple(REFINERS)}, got {refine!r}")
    if not isinstance(measurements, Tensor) or measurements.dim() < 2 or measurements.shape[0] < 1:
        shape = tuple(measurements.shape) if isinstance(measurements, Tensor) else type(measurements).__name__
        raise InvalidValueError(f"measurements must be a tensor (N, *event) with N >= 1, got {shape}")
    if not measurements.is_floating_point() or not bool(torch.isfinite(measurements).all()):
        raise InvalidValueError("measurements must be finite floating-point values")
    if not isinstance(sampler, Langevin):
        raise InvalidValueError(f"sampler must be an energyflow Langevin (sampler_for(cfg)), got {type(sampler).__name__}")
    for label, value, low in (("chains", chains, 1), ("num_warmup", num_warmup, 0), ("num_samples", num_samples, 0),
                              ("thin", thin, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InvalidValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if num_samples and num_samples < thin:
        raise InvalidValueError(f"thin ({thin}) exceeds num_samples ({num_samples}): no draw would be kept")
    if sigma_init not in SIGMA_INITS:
        raise InvalidValueError(f"sigma_init must be one of {SIGMA_INITS}, got {sigma_init!r}")
    if not (isinstance(sigma_scale, (int, float)) and sigma_scale > 0 and sigma_scale < float("inf")):
        raise InvalidValueError(f"sigma_scale must be a finite number > 0, got {sigma_scale!r}")
    for label, value in (("prior_temperature", prior_temperature), ("known_sigma", known_sigma)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and 0 < value < float("inf")):
            raise InvalidValueError(f"{label} must be a finite number > 0 or None, got {value!r}")
    t_final = sampler.t_start + sampler.steps * sampler.step_size
    eps_max = float(sampler.schedule(t_final))
    if not eps_max > 0:
        raise InvalidValueError(f"the sampler ends at eps = {eps_max}; the posterior needs a temperature > 0 "
                                "(run the schedule past tau*)")

    n, event = measurements.shape[0], tuple(measurements.shape[1:])
    params = list(potential.parameters()) if isinstance(potential, nn.Module) else []
    device = params[0].device if params else measurements.device
    dtype = measurements.dtype
    b = n * chains
    y = measurements.to(device).repeat_interleave(chains, dim=0)

    def make_model(temperature: float | None):
        fn = blind_denoising_model(potential, event, float(sigma_scale), temperature)
        if known_sigma is None:
            return fn
        import pyro.poutine as poutine

        return poutine.condition(fn, data={"sigma": torch.tensor(float(known_sigma), dtype=dtype, device=device)})

    blind = make_model(None)
    full = pyro_model(blind, y)
    space = Euclidean((full.dim,))
    x_site = full.layout["x"]

    gen_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn((b, x_site.size), generator=generator, dtype=dtype, device=gen_device).to(device)
    box = 2.0 * torch.rand((b, 1), generator=generator, dtype=dtype, device=gen_device).to(device) - 1.0
    state = torch.empty((b, full.dim), dtype=dtype, device=device)
    state[:, x_site.offset:x_site.offset + x_site.size] = noise  # x: the source noise
    if known_sigma is None:
        if sigma_init == "uniform":
            log_sigma = 2.0 * box  # Stan's uniform(-2, 2)
        else:
            rms = y.reshape(b, -1).pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-3)
            log_sigma = rms.log() + 0.5 * box
        s_site = full.layout["sigma"]
        state[:, s_site.offset:s_site.offset + s_site.size] = log_sigma  # biject_to(positive) is exp

    if guidance:
        prior = pyro_model(blind, None)
        runner = GuidedLangevin(sampler, _NoiseLikelihood(prior, y, known_sigma), weight=eps_max)
        transport = runner.run(compile_field(prior, space), state, generator=generator)
    else:
        transport = sampler.run(compile_field(full, space), state, generator=generator)
    last = transport.samples.detach()

    refinement = None
    if num_samples:
        target = full if prior_temperature is None else pyro_model(make_model(float(prior_temperature)), y)
        kernel = REFINERS[refine](sampler.step_size, num_warmup, num_samples, thin, eps_max)
        # One batch holds N posteriors (one per measurement): warm-up restarts a chain only from a chain of
        # its own image, and the mass matrix is the within-image variance.
        image = torch.arange(n, device=device).repeat_interleave(chains)
        refinement = kernel.run(compile_field(target, space), last, generator=generator, chain_groups=image)
        draws = refinement.draws.detach().transpose(0, 1)  # kept draws (B, S', D) -> (S', B, D)
    else:
        draws = last.unsqueeze(0)
    steps = draws.shape[0]
    flat = draws.reshape(steps * b, full.dim)
    values = full.constrain(flat)
    imgs = values["x"].reshape(steps, n, chains, *event)
    if known_sigma is None:
        sig = values["sigma"].reshape(steps, n, chains)
    else:
        sig = torch.full((steps, n, chains), float(known_sigma), dtype=dtype, device=device)
    imgs = imgs.permute(1, 2, 0, *range(3, 3 + len(event))).reshape(n, chains * steps, *event)
    sig = sig.permute(1, 2, 0).reshape(n, chains * steps)
    if clamp is not None:
        imgs = imgs.clamp(*clamp)
    prior_t = eps_max if prior_temperature is None or not num_samples else float(prior_temperature)
    return BlindDenoising(imgs.cpu(), sig.cpu(), measurements.detach().cpu(), transport, refinement, eps_max, prior_t,
                          chains=chains, known_sigma=None if known_sigma is None else float(known_sigma))


def plot_blind_denoising(solution: BlindDenoising, truth: Tensor, true_sigma: float | Tensor | None = None,
                         max_images: int = 8):
    """Figures of a blind-denoising solution: an image grid and sigma's posterior.

    Args:
        solution (BlindDenoising): the posterior draws.
        truth (Tensor): ``(N, C, H, W)`` clean images.
        true_sigma (float | Tensor | None): the noise level the measurements were made
            with (a number or ``(N,)``), marked on the histograms; None marks nothing.
        max_images (int): images shown (the first ones).

    Returns:
        tuple[Figure, Figure]: the grid (rows: truth, measurement, posterior mean) and a
        histogram of sigma's posterior draws per image, with its posterior mean, its 90%
        interval and the true value.
    """
    import math

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from energyflow import plotting

    if truth.shape != solution.measurements.shape or truth.dim() != 4:
        raise InvalidValueError(f"truth must be (N, C, H, W) like the measurements {tuple(solution.measurements.shape)}, "
                                f"got {tuple(truth.shape)}")
    k = min(int(max_images), truth.shape[0])
    grid = torch.cat([truth[:k].cpu(), solution.measurements[:k], solution.mean[:k]]).clamp(-1, 1)
    fig_grid = plotting.plot_image_grid(grid, nrow=k, title="blind denoising: truth / measurement / posterior mean")
    if true_sigma is not None:
        true_sigma = torch.as_tensor(true_sigma, dtype=torch.float64).expand(truth.shape[0])
    cols = min(4, k)
    rows = math.ceil(k / cols)
    fig = Figure(figsize=(3.0 * cols, 2.6 * rows))
    FigureCanvasAgg(fig)
    interval = solution.sigma_interval(0.9)
    for i in range(k):
        ax = fig.add_subplot(rows, cols, i + 1)
        draws = solution.sigma[i].double().numpy()
        ax.hist(draws, bins=30, color=plotting.SAMPLE_COLOR, alpha=0.8, density=True, label="posterior draws")
        ax.axvspan(float(interval[i, 0]), float(interval[i, 1]), color="tab:gray", alpha=0.2, label="90% interval")
        ax.axvline(float(solution.sigma_mean[i]), color="tab:orange", linestyle="--", label="posterior mean")
        if true_sigma is not None:
            ax.axvline(float(true_sigma[i]), color=plotting.DATA_COLOR, linewidth=2, label="true sigma")
        ax.set_title(f"image {i}")
        ax.set_xlabel("noise std sigma")
        ax.set_ylabel("posterior density")
        if i == 0:
            ax.legend(fontsize="x-small")
    fig.suptitle("posterior of the noise level sigma per image")
    fig.tight_layout()
    return fig_grid, fig


PRIOR_TEMPERATURE_MODES = ("auto", "eps_max")


def parse_prior_temperature(value: float | str) -> float | str:
    """``"auto"``, ``"eps_max"`` (also spelled ``eps-max``) or a finite number > 0 (also as a string)."""
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key in PRIOR_TEMPERATURE_MODES:
            return key
        try:
            value = float(key)
        except ValueError:
            raise InvalidValueError(f"prior temperature must be one of {PRIOR_TEMPERATURE_MODES} or a number > 0, "
                                    f"got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise InvalidValueError(f"prior temperature must be one of {PRIOR_TEMPERATURE_MODES} or a finite number > 0, "
                                f"got {value!r}")
    return float(value)


def resolve_prior_temperature(mode: float | str, potential, domain, eps_max: float,
                              generator: torch.Generator | None = None):
    """The prior temperature a mode of :func:`parse_prior_temperature` asks for.

    Args:
        mode (float | str): ``"auto"``, ``"eps_max"`` or a number (strings are parsed).
        potential: the learned potential V.
        domain: the run's domain; ``"auto"`` fits to ``domain.train_data()``.
        eps_max (float): the run's eps_max, where the fit starts.
        generator (torch.Generator | None): randomness of the fit's chains.

    Returns:
        tuple[float | None, TemperatureFit | None]: the temperature for
        :func:`blind_denoise` (None: eps_max) and the fit when one was made.
    """
    from energyflow.likelihood import calibrate_temperature

    mode = parse_prior_temperature(mode)
    if mode == "auto":
        fit = calibrate_temperature(potential, domain.train_data().float(), start=eps_max, generator=generator)
        return fit.temperature, fit
    return (None if mode == "eps_max" else float(mode)), None


@attrs.frozen(eq=False)
class BlindReport:
    """What :func:`blind_condition_run` measured and wrote.

    Attributes:
        rows (list[dict]): per image: ``sigma_true``, ``sigma_mean``, ``sigma_low``,
            ``sigma_high`` (90% interval), ``covered``, the PSNR (dB, posterior mean
            against the truth) of ``psnr_blind``, ``psnr_known`` (the same posterior with
            sigma known) and ``psnr_solve`` (:func:`solve` with sigma known), and sigma's
            rank-normalised split R-hat and bulk and tail ESS over the image's chains
            (``sigma_rhat``, ``sigma_ess_bulk``, ``sigma_ess_tail``; None without
            diagnostics), and the chains of the image the refinement's warm-up restarted
            (from the image's own chains) in the blind and the known-sigma run
            (``warmup_restarted``, ``warmup_restarted_known``; None without warm-up).
        summary (dict): the means over images, coverage fraction and settings; the worst
            diagnostics (``sigma_rhat_max``, ``sigma_ess_bulk_min``, ``sigma_ess_tail_min``),
            ``diagnostics`` (None, or why there are none) and ``warnings``.
        files (list[Path]): the figures (a trace plot of sigma among them), samples and JSON
            written.
        sigma_summary (pandas.DataFrame | None): ArviZ's summary of sigma, one row per image
            (:meth:`BlindDenoising.summary`, unrounded); None without diagnostics.
        warnings (list[dict]): the energyflow warnings the runs raised (divergences, a
            collapsed step size, R-hat and ESS of sigma), ``{"category", "message"}``, each
            message prefixed with the run it is about; they are also raised as Python warnings.
    """

    rows: list
    summary: dict
    files: list
    sigma_summary: Any = None
    warnings: list = attrs.field(factory=list)


#: Fewer kept draws per chain than this give no diagnostics (ArviZ's minimum for split R-hat and ESS).
MIN_DIAGNOSTIC_DRAWS = 4


def _relabelled(label: str, log: list, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, re-raising each energyflow warning it raised as ``label: message``.

    The warnings keep their class, are appended to ``log`` as ``{"category", "message"}``
    and point at the first caller outside energyflow; other warnings pass through untouched.
    """
    import warnings

    from energyflow.diagnostics import EnergyflowWarning, _user_stacklevel

    caught: list = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", EnergyflowWarning)
            show = warnings.showwarning

            def keep(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, EnergyflowWarning):
                    caught.append((category, str(message)))
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = keep
            return fn(*args, **kwargs)
    finally:  # the caller's filters and showwarning are back: they decide what the warnings do
        for category, message in caught:
            message = f"{label}: {message}"
            log.append({"category": category.__name__, "message": message})
            warnings.warn(message, category, stacklevel=_user_stacklevel())


def _finite(v: Any) -> float | None:
    """A float for JSON, None where it is not finite (ArviZ's NaN for constant draws)."""
    v = float(v)
    return v if math.isfinite(v) else None


def _sigma_diagnostics(blind: BlindDenoising, log: list) -> tuple[Any, str | None]:
    """ArviZ's summary of sigma per image (unrounded) and None, or None and why there is none.

    Its R-hat and ESS warnings go through :func:`_relabelled` into ``log``."""
    from energyflow.diagnostics import MissingDependencyError

    if blind.refinement is None:
        return None, "no refinement (num_samples=0): one draw per chain"
    if blind.draws_per_chain < MIN_DIAGNOSTIC_DRAWS:
        return None, (f"{blind.draws_per_chain} draws kept per chain, fewer than the {MIN_DIAGNOSTIC_DRAWS} "
                      "that R-hat and ESS need")
    try:
        table = _relabelled("blind denoising, sigma per image", log, blind.summary, "sigma", round_to="none")
    except MissingDependencyError as err:
        return None, str(err)
    return table, None


def blind_condition_run(
    run: str,
    out_dir: str,
    *,
    num_images: int = 8,
    chains: int = 8,
    noise: float | None = None,
    t_end: float | None = None,
    num_warmup: int = 300,
    num_samples: int = 600,
    thin: int = 12,
    prior_temperature: float | str = "auto",
    refine: str = "hmc",
    seed: int = 0,
    device: str = "cpu",
) -> BlindReport:
    """Blind denoising of held-out images of a trained run, against the known-noise posterior.

    The first ``num_images`` held-out images are measured with Gaussian noise of std
    ``noise`` (default: the denoise task's 0.3) and reconstructed three times: by
    :func:`blind_denoise`, which is not told the noise level; by the same posterior and
    sampler with sigma conditioned on the true level (``known_sigma``); and by
    :func:`solve` on the ``denoise`` task with the true level (the known-noise path of
    :func:`condition_run`).

    Convergence of sigma is reported per image through :mod:`energyflow.diagnostics`
    (ArviZ): rank-normalised split R-hat and bulk and tail ESS over the image's chains, in
    :attr:`BlindReport.sigma_summary`, in each row and, worst over the images, in the
    summary; ``denoise_blind_sigma_trace.png`` holds sigma's trace and rank plots (the first
    8 images). R-hat above 1.01, ESS below 400, divergences after warm-up and a collapsed
    step size raise :class:`~energyflow.diagnostics.EnergyflowWarning` warnings naming the run
    they are about, also listed in :attr:`BlindReport.warnings` and the JSON. Without ArviZ,
    or with fewer than 4 draws per chain, the diagnostics are None and ``summary
    ["diagnostics"]`` says why.

    Args:
        prior_temperature (float | str): the prior's temperature: ``"auto"`` fits it to
            the run's training images (:func:`energyflow.likelihood.calibrate_temperature`,
            about a minute for 8x8 digits on one CPU thread), ``"eps_max"`` keeps the
            run's, a number fixes it.
        num_warmup, num_samples, thin, refine: the refinement (:func:`blind_denoise`).

    Raises:
        InvalidValueError: the run's domain has no held-out images, or bad arguments.
    """
    import json
    from pathlib import Path

    from energyflow import plotting
    from energyflow.training.build import resolve_device
    from energyflow.training.run import load_potential, sampler_for

    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise InvalidValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    temperature_mode = parse_prior_temperature(prior_temperature)
    potential, cfg, domain = load_potential(run, device=device)
    if not hasattr(domain, "test_data") or len(domain.space.event_shape) != 3:
        raise InvalidValueError(f"condition needs an image domain with held-out images; this run's domain is {cfg.domain!r}")
    task = make_task("denoise", tuple(domain.space.event_shape), noise)
    test = domain.test_data()
    if num_images > test.shape[0]:
        raise InvalidValueError(f"num_images ({num_images}) exceeds the {test.shape[0]} held-out images")
    truth = test[:num_images].float()
    dev = resolve_device(device)
    y = task.measure(truth, generator=torch.Generator().manual_seed(seed))
    sampler = sampler_for(cfg, t_end=t_end)
    temperature, fit = resolve_prior_temperature(temperature_mode, potential, domain, cfg.eps_max,
                                                 generator=torch.Generator(dev).manual_seed(seed))
    solved = solve(potential, task, y, sampler, chains=chains, generator=torch.Generator(dev).manual_seed(seed + 1))
    settings = dict(chains=chains, num_warmup=num_warmup, num_samples=num_samples, thin=thin,
                    prior_temperature=temperature, refine=refine)
    log: list = []  # the energyflow warnings of the runs, labelled
    blind = _relabelled("blind denoising (sigma sampled)", log, blind_denoise, potential, y, sampler,
                        generator=torch.Generator(dev).manual_seed(seed + 1), **settings)
    known = _relabelled("known-sigma posterior", log, blind_denoise, potential, y, sampler, known_sigma=task.noise,
                        generator=torch.Generator(dev).manual_seed(seed + 1), **settings)
    table, why = _sigma_diagnostics(blind, log)
    region = task.region
    psnr_blind = psnr(blind.mean, truth, mask=region)
    psnr_known = psnr(known.mean, truth, mask=region)
    psnr_solve = psnr(solved.mean, truth, mask=region)
    interval = blind.sigma_interval(0.9)

    def restarted(run: BlindDenoising, i: int) -> int | None:
        counts = None if run.refinement is None else run.refinement.info.get("num_restarted_per_group")
        return None if counts is None else int(counts[i])

    rows = []
    for i in range(num_images):
        low, high = float(interval[i, 0]), float(interval[i, 1])
        rows.append({"image": i, "sigma_true": task.noise, "sigma_mean": float(blind.sigma_mean[i]), "sigma_low": low,
                     "sigma_high": high, "covered": bool(low <= task.noise <= high),
                     "psnr_blind": float(psnr_blind[i]), "psnr_known": float(psnr_known[i]),
                     "psnr_solve": float(psnr_solve[i]), "warmup_restarted": restarted(blind, i),
                     "warmup_restarted_known": restarted(known, i)})
        for key, col in (("sigma_rhat", "r_hat"), ("sigma_ess_bulk", "ess_bulk"), ("sigma_ess_tail", "ess_tail")):
            rows[-1][key] = None if table is None else _finite(table[col].iloc[i])
    summary = {
        "sigma_true": task.noise, "sigma_mean": float(blind.sigma_mean.mean()),
        "sigma_low": float(interval[:, 0].mean()), "sigma_high": float(interval[:, 1].mean()),
        "coverage": sum(r["covered"] for r in rows) / num_images,
        "psnr_blind": float(psnr_blind.mean()), "psnr_known": float(psnr_known.mean()),
        "psnr_solve": float(psnr_solve.mean()), "prior_temperature": blind.prior_temperature,
        "prior_temperature_mode": temperature_mode if isinstance(temperature_mode, str) else "fixed",
        "temperature_fit": None if fit is None else fit.to_dict(),
        "num_images": num_images, "chains": chains, "draws_per_image": int(blind.sigma.shape[1]),
        "eps_max": blind.eps_max, "t_end": sampler.t_start + sampler.steps * sampler.step_size,
        "num_warmup": num_warmup, "num_samples": num_samples, "thin": thin, "refine": refine,
        "refinement_acceptance": blind.refinement.mean_acceptance if blind.refinement is not None else None,
        "sigma_rhat_max": None if table is None else _finite(table["r_hat"].max()),
        "sigma_ess_bulk_min": None if table is None else _finite(table["ess_bulk"].min()),
        "sigma_ess_tail_min": None if table is None else _finite(table["ess_tail"].min()),
        "diagnostics": why, "warnings": log,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_grid, fig_hist = plot_blind_denoising(blind, truth, task.noise)
    files = [plotting.save_figure(fig_grid, out / "denoise_blind.png"),
             plotting.save_figure(fig_hist, out / "denoise_blind_sigma.png")]
    if table is not None:
        shown = min(num_images, 8)
        title = (f"noise std sigma per image: {chains} chains x {blind.draws_per_chain} draws each, "
                 f"max R-hat {table['r_hat'].max():.3f}")
        if shown < num_images:
            title += f" (first {shown} of {num_images} images)"
        files.append(plotting.save_figure(blind.plot_trace("sigma", max_parameters=shown, title=title),
                                          out / "denoise_blind_sigma_trace.png"))
    path = out / "denoise_blind.pt"
    torch.save({"samples": blind.samples, "sigma": blind.sigma, "measurements": blind.measurements}, path)
    files.append(path)
    report = out / "denoise_blind_metrics.json"
    report.write_text(json.dumps({"task": "denoise", "noise": "unknown", "summary": summary, "images": rows},
                                 indent=2) + "\n")
    files.append(report)
    return BlindReport(rows, summary, files, sigma_summary=table, warnings=log)
