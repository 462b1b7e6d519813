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

from typing import Callable

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
