"""Log-likelihoods of energy models: log p(x) up to log Z, AIS for log Z, and LID.

An energy model at temperature ``T`` has the Boltzmann density

    p_T(x) = exp(-U(x, T) / T) / Z(T),     Z(T) = integral of exp(-U(x, T) / T) dx,

where ``U(x, T)`` is the compiled field (``Field.energy(x, T)``: "energy" terms as they
are, "tempered" terms multiplied by ``T``). An Energy Matching model's density is the
Boltzmann density of its potential at ``T = eps_max`` (DESIGN.md, section 3).

* :func:`log_density` evaluates ``log p_T(x)``, normalised when ``log Z`` is given.
* :func:`log_partition` estimates ``log Z(T)`` by annealed importance sampling (AIS)
  from a normalised Gaussian proposal, with a standard error and an effective sample
  size.
* :func:`negative_log_likelihood` combines both into the mean NLL of a data set with
  an error bar that includes the uncertainty of the AIS estimate.
* :func:`calibrate_temperature` fits the temperature ``T`` of the family
  ``exp(-V/T) / Z(T)`` to data by maximum likelihood (a trained potential's Boltzmann
  density at ``eps_max`` can be sharper or broader than its data).
* :func:`hessian_eigenvalues` and :func:`local_intrinsic_dimension` implement the
  paper's local intrinsic dimension: the number of small eigenvalues of the Hessian of
  ``V`` at a data point (flat directions along the data manifold, steep ones across).

Example:
    >>> import math, torch, energyflow as ef
    >>> A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    >>> class Quadratic(ef.Energy):
    ...     def forward(self, x):
    ...         return 0.5 * ((x @ A) * x).sum(-1)
    >>> est = log_partition(Quadratic(), dim=2, num_chains=512, num_steps=50,
    ...                     dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    >>> exact = math.log(2 * math.pi) - 0.5 * math.log(torch.linalg.det(A).item())
    >>> abs(est.log_z - exact) < 4 * est.stderr + 0.01
    True
"""

from __future__ import annotations

import math
from typing import Callable, Union

import attrs
import torch
from torch import Tensor

from energyflow.energies.base import Energy
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.field import Field
from energyflow.samplers import kernel as K
from energyflow.samplers import mala
from energyflow.spaces import Euclidean

EnergyLike = Union[Field, Energy, Callable[[Tensor], Tensor]]

__all__ = [
    "LogZEstimate",
    "log_density",
    "log_partition",
    "negative_log_likelihood",
    "TemperatureFit",
    "calibrate_temperature",
    "hessian_eigenvalues",
    "local_intrinsic_dimension",
]


# --- helpers ----------------------------------------------------------------------------------
def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as err:
        raise InvalidValueError(f"{name} must be a finite number > 0, got {value!r}") from err
    if not (math.isfinite(value) and value > 0):
        raise InvalidValueError(f"{name} must be a finite number > 0, got {value}")
    return value


def _check_count(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise InvalidValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise InvalidValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def _expr_of(obj: EnergyLike) -> Energy | None:
    if isinstance(obj, Field):
        return obj.expr
    if isinstance(obj, Energy):
        return obj
    return None


def _forbid_batch_coupling(obj: EnergyLike, what: str) -> None:
    expr = _expr_of(obj)
    if expr is None:
        return
    coupled = [leaf.name for _, leaf in expr.leaves() if leaf.couples_batch]
    if coupled:
        raise InvalidValueError(
            f"{what} needs an energy that is a sum over independent samples, but "
            f"{', '.join(coupled)} couples the samples of a batch; leave interaction terms out"
        )


def _energy_fn(obj: EnergyLike) -> Callable[[Tensor, float], Tensor]:
    """``(x, T) -> U(x, T)`` for a Field, an Energy term or a plain callable ``x -> (B,)``."""
    if isinstance(obj, Field):
        return lambda x, t: obj.energy(x, t)
    if isinstance(obj, Energy):
        return lambda x, t: obj.total(x, t)
    if callable(obj):
        return lambda x, t: obj(x)
    raise InvalidTypeError(
        "expected a Field, an Energy term or a callable mapping (B, *event) to (B,), "
        f"got {type(obj).__name__}"
    )


def _raw_energy_fn(obj: EnergyLike) -> Callable[[Tensor], Tensor]:
    """``x -> U(x, 1)`` without the Field's Python-side checks (usable under ``torch.func``)."""
    if isinstance(obj, Field):
        return lambda x: obj.expr.total(x, 1.0)
    if isinstance(obj, Energy):
        return lambda x: obj.total(x, 1.0)
    if callable(obj):
        return obj
    raise InvalidTypeError(
        "expected a Field, an Energy term or a callable mapping (B, *event) to (B,), "
        f"got {type(obj).__name__}"
    )


def _device_dtype(obj: EnergyLike) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the first parameter or buffer, else CPU / default."""
    module = _expr_of(obj)
    if module is None and isinstance(obj, torch.nn.Module):
        module = obj
    if module is not None:
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _check_points(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise InvalidValueError(f"{name} must be a tensor of shape (B, *event), got {type(x).__name__}")
    if x.dim() < 2:
        raise InvalidValueError(
            f"{name} must have a batch dimension: shape (B, *event), got {tuple(x.shape)}; "
            "use x.unsqueeze(0) for one point"
        )
    if not x.is_floating_point():
        raise InvalidValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0:
        raise InvalidValueError(f"{name} is empty (batch size 0)")
    if not torch.isfinite(x).all():
        raise InvalidValueError(f"{name} contains NaN or inf")


def _log_z_value(log_z: "float | LogZEstimate | None") -> tuple[float, float]:
    """(log Z, its standard error) from a number, an estimate or None (0, 0)."""
    if log_z is None:
        return 0.0, 0.0
    if isinstance(log_z, LogZEstimate):
        return log_z.log_z, log_z.stderr
    try:
        value = float(log_z)
    except (TypeError, ValueError) as err:
        raise InvalidValueError(
            f"log_z must be a number, a LogZEstimate or None, got {type(log_z).__name__}"
        ) from err
    if not math.isfinite(value):
        raise InvalidValueError(f"log_z must be finite, got {value}")
    return value, 0.0


# --- log density --------------------------------------------------------------------------------
def log_density(
    field_or_energy: EnergyLike,
    x: Tensor,
    temperature: float = 1.0,
    log_z: "float | LogZEstimate | None" = None,
) -> Tensor:
    """``log p_T(x) = -U(x, T) / T - log Z(T)`` per sample.

    Args:
        field_or_energy (Field | Energy | Callable): the model; a plain callable is
            treated as an energy term ``x -> U(x)`` that does not depend on ``T``.
        x (Tensor): points, shape ``(B, *event)``.
        temperature (float): T (> 0). An Energy Matching model's density is at ``eps_max``.
        log_z (float | LogZEstimate | None): ``log Z(T)``; None gives the unnormalised
            log-density ``-U(x, T) / T``.

    Returns:
        Tensor: shape ``(B,)``, in the dtype of the energy.

    Raises:
        ValueError: bad temperature, non-finite or badly shaped ``x``, non-finite log_z.

    Example:
        >>> import math, torch, energyflow as ef
        >>> V = ef.GaussianPotential(torch.zeros(2), torch.eye(2))    # normalised: log Z = 0
        >>> round(log_density(V, torch.zeros(1, 2)).item(), 4) == round(-math.log(2 * math.pi), 4)
        True
    """
    temperature = _check_positive("temperature", temperature)
    _check_points(x)
    value, _ = _log_z_value(log_z)
    _forbid_batch_coupling(field_or_energy, "log_density")
    u = _energy_fn(field_or_energy)(x, temperature)
    if not isinstance(u, Tensor) or u.shape != (x.shape[0],):
        shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
        raise InvalidValueError(f"the energy returned {shape} for a batch of {x.shape[0]}; it must return (B,)")
    return -u / temperature - value


# --- AIS -----------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class LogZEstimate:
    """An AIS estimate of ``log Z(T)`` and its diagnostics.

    Attributes:
        log_z (float): ``log mean exp(log_weights)`` (the proposal is normalised).
        stderr (float): delta-method standard error of ``log_z``:
            ``sd(w) / (sqrt(N) * mean(w))`` over the N chains' weights.
        ess (float): effective sample size ``(sum w)^2 / sum w^2`` (between 1 and N); a
            small ESS means the weights are dominated by a few chains and the stderr is
            not to be trusted.
        log_weights (Tensor): per-chain log importance weights, shape ``(N,)`` float64.
        betas (Tensor): the annealing schedule, ``(num_steps + 2,)`` from 0 to 1.
        acceptance_rate (Tensor): mean MALA acceptance at each intermediate level,
            ``(num_steps,)`` (empty for plain importance sampling).
        step_sizes (Tensor): the MALA step size used at each level, ``(num_steps,)``.
        samples (Tensor): the chains' final states ``(N, *event)``: approximate draws
            from the target, to be weighted by ``exp(log_weights)``.
        temperature (float): T.
        num_grad_evals (int): gradient evaluations of the field (per chain batch).
    """

    log_z: float
    stderr: float
    ess: float
    log_weights: Tensor
    betas: Tensor
    acceptance_rate: Tensor
    step_sizes: Tensor
    samples: Tensor
    temperature: float
    num_grad_evals: int

    @property
    def num_chains(self) -> int:
        return int(self.log_weights.shape[0])


def sigmoid_schedule(num_steps: int, sharpness: float = 4.0) -> Tensor:
    """Annealing schedule ``0 = beta_0 < ... < beta_{K+1} = 1`` with ``K = num_steps`` levels.

    Sigmoid-spaced (Grosse et al., 2015): ``sigmoid(sharpness * (2u - 1))`` on a uniform
    grid ``u``, rescaled to [0, 1], so levels are dense at both ends, where the bridge
    densities change fastest in log-space.

    Example:
        >>> b = sigmoid_schedule(3)
        >>> b.shape, float(b[0]), float(b[-1])
        (torch.Size([5]), 0.0, 1.0)
    """
    u = torch.linspace(0.0, 1.0, num_steps + 2, dtype=torch.float64)
    s = torch.sigmoid(sharpness * (2.0 * u - 1.0))
    s = (s - s[0]) / (s[-1] - s[0])
    s[0], s[-1] = 0.0, 1.0
    return s


def linear_schedule(num_steps: int) -> Tensor:
    """Uniformly spaced ``beta`` in [0, 1], shape ``(num_steps + 2,)``."""
    return torch.linspace(0.0, 1.0, num_steps + 2, dtype=torch.float64)


SCHEDULES: dict[str, Callable[[int], Tensor]] = {"sigmoid": sigmoid_schedule, "linear": linear_schedule}


def _event_shape(field: EnergyLike, dim: int | tuple[int, ...] | None) -> tuple[int, ...]:
    space_shape = None
    if isinstance(field, Field) and field.space is not None:
        if not isinstance(field.space, Euclidean):
            raise InvalidValueError(
                f"log_partition integrates over plain R^d, but the field's space is {field.space!r}; "
                "a constrained space needs a proposal on its constraint set, which is not supported"
            )
        space_shape = tuple(field.space.event_shape)
    if dim is None:
        if space_shape is None:
            raise InvalidValueError(
                "log_partition needs the event shape of a state: pass dim=d (or a shape tuple), "
                "or compile the field with a space"
            )
        return space_shape
    shape = (dim,) if isinstance(dim, int) and not isinstance(dim, bool) else dim
    try:
        shape = tuple(shape)  # type: ignore[arg-type]
    except TypeError as err:
        raise InvalidValueError(f"dim must be a positive int or a tuple of them, got {dim!r}") from err
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in shape):
        raise InvalidValueError(f"dim must be a positive int or a tuple of them, got {dim!r}")
    if space_shape is not None and shape != space_shape and math.prod(shape) != math.prod(space_shape):
        raise InvalidValueError(f"dim={dim!r} does not match the field's space event shape {space_shape}")
    return space_shape if space_shape is not None else shape


def _randn(shape: tuple[int, ...], generator, device, dtype) -> Tensor:
    gdev = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gdev, dtype=dtype).to(device)


def _sqnorm(v: Tensor) -> Tensor:
    return (v * v).sum(-1)


def log_partition(
    field: EnergyLike,
    dim: int | tuple[int, ...] | None = None,
    *,
    temperature: float = 1.0,
    num_chains: int = 512,
    num_steps: int = 200,
    mcmc_steps_per_level: int = 1,
    step_size: float | None = None,
    target_acceptance: float = 0.6,
    schedule: str = "sigmoid",
    proposal: str = "gaussian",
    proposal_scale: float = 1.0,
    dtype: torch.dtype | None = None,
    generator: torch.Generator | None = None,
) -> LogZEstimate:
    """Estimates ``log Z(T) = log integral exp(-U(x, T) / T) dx`` by annealed importance sampling.

    The chains start from the normalised proposal ``f_0 = N(0, s^2 I)`` on the flattened
    state (``d = prod(event)``) and move through the geometric bridges
    ``log f_b = (1 - b) log f_0 + b (-U / T)`` for ``0 < beta_1 < ... < beta_K < 1``
    (``K = num_steps``). Before level ``k`` every chain's log-weight gains
    ``(beta_k - beta_{k-1}) (-U(x)/T - log f_0(x))``; then ``mcmc_steps_per_level``
    exact MALA steps (Metropolis-Hastings on the bridge density) leave ``f_{beta_k}``
    invariant. Finally ``log Z = log mean exp(log w)`` (``log Z_0 = 0``).

    ``num_steps=0`` is plain importance sampling from the proposal.

    The standard error is the delta method on the weights, ``sd(w) / (sqrt(N) mean(w))``;
    it is reliable when the ESS is a sizeable fraction of N and optimistic when a few
    weights dominate. ``log mean exp`` is biased low by about ``stderr^2 / 2``.

    Args:
        field (Field | Energy | Callable): the energy ``U``; a Field's space (if set)
            gives the event shape. Interaction terms are refused.
        dim (int | tuple[int, ...] | None): the event shape of one state (``d`` or a
            shape like ``(1, 8, 8)``); needed unless the field has a space.
        temperature (float): T (> 0); the target is ``exp(-U(x, T) / T)``.
        num_chains (int): N independent AIS chains (>= 2).
        num_steps (int): K intermediate annealing levels (>= 0).
        mcmc_steps_per_level (int): MALA steps at each intermediate level (>= 0).
        step_size (float | None): MALA step ``h`` in units of the log-density (proposal
            ``y = x + h grad log f_b(x) + sqrt(2 h) xi``). None adapts it after each step
            towards ``target_acceptance`` (starting from ``0.5 s^2``); a number keeps it fixed.
        target_acceptance (float): acceptance rate the adaptation aims for, in (0, 1).
        schedule (str): ``"sigmoid"`` (default) or ``"linear"`` spacing of the betas.
        proposal (str): the initial distribution; only ``"gaussian"`` is supported.
        proposal_scale (float): s (> 0), the proposal's standard deviation; it should
            cover the target (too narrow is much worse than too wide).
        dtype (torch.dtype | None): dtype of the chains; the energy's parameter dtype by default.
        generator (torch.Generator | None): random stream (the global one if None).

    Returns:
        LogZEstimate: the estimate, its standard error, ESS, log-weights and diagnostics.

    Raises:
        ValueError: bad settings, an unknown dim, a constrained space, interaction terms,
            or an energy that is non-finite at the proposal's draws.
    """
    temperature = _check_positive("temperature", temperature)
    num_chains = _check_count("num_chains", num_chains, 2)
    num_steps = _check_count("num_steps", num_steps, 0)
    mcmc_steps_per_level = _check_count("mcmc_steps_per_level", mcmc_steps_per_level, 0)
    s = _check_positive("proposal_scale", proposal_scale)
    if step_size is not None:
        step_size = _check_positive("step_size", step_size)
    if not 0.0 < float(target_acceptance) < 1.0:
        raise InvalidValueError(f"target_acceptance must lie in (0, 1), got {target_acceptance}")
    if proposal != "gaussian":
        raise InvalidValueError(f"proposal must be 'gaussian' (N(0, proposal_scale^2 I)), got {proposal!r}")
    if schedule not in SCHEDULES:
        raise InvalidValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {schedule!r}")
    _forbid_batch_coupling(field, "log_partition")
    event = _event_shape(field, dim)
    d = math.prod(event)
    device, param_dtype = _device_dtype(field)
    dtype = dtype or param_dtype
    energy = _energy_fn(field)
    T = temperature
    log_norm0 = -0.5 * d * math.log(2.0 * math.pi * s * s)

    num_evals = 0

    def target_and_grad(x: Tensor) -> tuple[Tensor, Tensor]:
        """log f_1 = -U(x, T)/T and its gradient, on flat x (N, d)."""
        nonlocal num_evals
        xr = x.detach().reshape(x.shape[0], *event).requires_grad_(True)
        with torch.enable_grad():
            u = energy(xr, T)
            if not isinstance(u, Tensor) or u.shape != (x.shape[0],):
                shape = tuple(u.shape) if isinstance(u, Tensor) else type(u).__name__
                raise InvalidValueError(f"the energy returned {shape} for a batch of {x.shape[0]}; need (B,)")
            (g,) = torch.autograd.grad(u.sum(), xr)
        num_evals += 1
        return (-u.detach() / T).to(torch.float64), (-g / T).reshape(x.shape[0], d)

    x = s * _randn((num_chains, d), generator, device, dtype)
    lf1, g1 = target_and_grad(x)
    if not torch.isfinite(lf1).all():
        raise InvalidValueError(
            "the energy is NaN/inf at some of the proposal's draws; check the energy or narrow proposal_scale"
        )
    lf0 = -0.5 * _sqnorm(x.to(torch.float64)) / (s * s) + log_norm0

    betas = SCHEDULES[schedule](num_steps)
    log_w = torch.zeros(num_chains, dtype=torch.float64, device=device)
    h = step_size if step_size is not None else 0.5 * s * s
    acceptance = torch.zeros(num_steps, dtype=torch.float64)
    step_sizes = torch.zeros(num_steps, dtype=torch.float64)

    space = Euclidean(d)

    def bridge(b: float):
        """The MALA target of level b: phi = -((1 - b) log f0 + b log f1), with both log-densities kept."""

        def from_parts(x: Tensor, lf0: Tensor, lf1: Tensor, g1: Tensor) -> tuple[Tensor, Tensor]:
            phi = -((1.0 - b) * lf0 + b * lf1)
            grad = -((1.0 - b) * (-x / (s * s)) + b * g1)
            return phi, grad

        def potential(x: Tensor) -> tuple[Tensor, Tensor, dict]:
            lf1, g1 = target_and_grad(x)
            lf0 = -0.5 * _sqnorm(x.to(torch.float64)) / (s * s) + log_norm0
            phi, grad = from_parts(x, lf0, lf1, g1)
            return phi, grad, {"lf0": lf0, "lf1": lf1, "g1": g1}

        return potential, from_parts

    for k in range(1, num_steps + 2):
        b_prev, b = float(betas[k - 1]), float(betas[k])
        log_w = log_w + (b - b_prev) * (lf1 - lf0)
        if k == num_steps + 1:
            break  # the last increment reaches the target; no transition is needed after it
        step_sizes[k - 1] = h
        acc_level = 0.0
        potential, from_parts = bridge(b)
        phi, grad = from_parts(x, lf0, lf1, g1)
        state = K.State(x, phi, grad, {"lf0": lf0, "lf1": lf1, "g1": g1})
        for _ in range(mcmc_steps_per_level):
            # MALA on log f_b = (1 - b) log f0 + b log f1 (the samplers' kernel, exact MH correction).
            state, info = mala.kernel(state, potential, h, generator, space=space)
            rate = float(info.is_accepted.to(torch.float64).mean())
            acc_level += rate / mcmc_steps_per_level
            if step_size is None:
                # Adapt between steps (the kernel of each step is fixed given the past).
                h = h * math.exp(2.0 * (rate - target_acceptance))
        x, lf0, lf1, g1 = state.position, state.aux["lf0"], state.aux["lf1"], state.aux["g1"]
        acceptance[k - 1] = acc_level

    lw = log_w.detach()
    n = lw.shape[0]
    log_z = float(torch.logsumexp(lw, 0) - math.log(n))
    r = torch.exp(lw - lw.max())  # weights scaled so the largest is 1
    mean_r = r.mean()
    sd_r = r.std(unbiased=True)
    stderr = float(sd_r / (math.sqrt(n) * mean_r))
    ess = float(r.sum() ** 2 / (r * r).sum())
    return LogZEstimate(
        log_z=log_z,
        stderr=stderr,
        ess=ess,
        log_weights=lw.cpu(),
        betas=betas,
        acceptance_rate=acceptance,
        step_sizes=step_sizes,
        samples=x.detach().reshape(n, *event),
        temperature=T,
        num_grad_evals=num_evals,
    )


# --- NLL -----------------------------------------------------------------------------------------
def negative_log_likelihood(
    field: EnergyLike,
    data: Tensor,
    log_z_estimate: "LogZEstimate | float | None" = None,
    *,
    temperature: float = 1.0,
    **ais_kwargs,
) -> tuple[float, float]:
    """Mean negative log-likelihood ``-1/n sum_i log p_T(x_i)`` in nats, with a standard error.

    Args:
        field (Field | Energy | Callable): the model ``U``.
        data (Tensor): data points, shape ``(n, *event)``, n >= 2.
        log_z_estimate (LogZEstimate | float | None): ``log Z(T)``: an AIS estimate, an
            exact number (no uncertainty), or None to run :func:`log_partition` here with
            ``ais_kwargs`` (``dim`` defaults to the data's event shape). An estimate made
            at another temperature is refused.
        temperature (float): T; an Energy Matching model's density is at ``eps_max``.
        **ais_kwargs: passed to :func:`log_partition` when it runs here.

    Returns:
        tuple[float, float]: ``(nll_mean, stderr)``, where ``stderr^2`` is the variance
        of the data mean (sample variance of ``U/T`` over n) plus ``stderr(log Z)^2``.

    Example:
        >>> import math, torch, energyflow as ef
        >>> V = ef.GaussianPotential(torch.zeros(2), torch.eye(2))
        >>> data = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
        >>> nll, se = negative_log_likelihood(V, data, 0.0)          # log Z = 0 exactly
        >>> abs(nll - math.log(2 * math.pi * math.e)) < 4 * se
        True
    """
    temperature = _check_positive("temperature", temperature)
    _check_points(data, "data")
    if data.shape[0] < 2:
        raise InvalidValueError("data needs at least 2 points for a standard error")
    if log_z_estimate is None:
        ais_kwargs.setdefault("dim", tuple(data.shape[1:]))
        log_z_estimate = log_partition(field, temperature=temperature, **ais_kwargs)
    elif ais_kwargs:
        raise InvalidValueError(f"AIS settings {sorted(ais_kwargs)} are only used when log_z_estimate is None")
    if isinstance(log_z_estimate, LogZEstimate) and not math.isclose(
        log_z_estimate.temperature, temperature, rel_tol=1e-9
    ):
        raise InvalidValueError(
            f"log_z_estimate was made at temperature {log_z_estimate.temperature:g}, "
            f"but the NLL is asked at {temperature:g}"
        )
    log_z, se_z = _log_z_value(log_z_estimate)
    with torch.no_grad():
        lp = log_density(field, data, temperature, None).to(torch.float64)
    nll = -lp
    n = nll.shape[0]
    mean = float(nll.mean()) + log_z
    se_data = float(nll.std(unbiased=True)) / math.sqrt(n)
    return mean, math.sqrt(se_data**2 + se_z**2)


# --- temperature calibration ------------------------------------------------------------------
@attrs.frozen
class TemperatureFit:
    """The maximum-likelihood temperature of ``exp(-V/T) / Z(T)`` for a data set.

    Attributes:
        temperature (float): the fitted ``T`` (the geometric midpoint of the final bracket).
        bracket (tuple[float, float]): the final bracket ``(low, high)``: chains at ``low``
            ended below the data's mean energy, chains at ``high`` above it.
        data_energy (float): ``mean_i V(x_i)`` over the data.
        evaluations (list[tuple[float, float, float]]): every evaluation made, in order:
            ``(T, mean V of the chains at T, their MALA acceptance rate)``.
        num_chains (int): chains per evaluation.
    """

    temperature: float
    bracket: tuple[float, float]
    data_energy: float
    evaluations: list
    num_chains: int

    def to_dict(self) -> dict:
        """The fit as JSON-ready values (what reports store beside their results)."""
        return {"temperature": self.temperature, "bracket": list(self.bracket), "data_energy": self.data_energy,
                "evaluations": [list(e) for e in self.evaluations], "num_chains": self.num_chains}


def calibrate_temperature(
    field: Field | Energy,
    data: Tensor,
    *,
    start: float = 1.0,
    num_bisections: int = 6,
    num_chains: int = 128,
    num_warmup: int = 100,
    num_steps: int = 100,
    max_doublings: int = 12,
    generator: torch.Generator | None = None,
) -> TemperatureFit:
    """Fits the temperature of a potential's Boltzmann family to data by maximum likelihood.

    For the family ``p_T(x) = exp(-V(x)/T) / Z(T)`` the log-likelihood of data
    ``x_1..x_n`` has derivative ``d/d(1/T) = n (E_T[V] - mean_i V(x_i))`` (``d log Z /
    d(1/T) = -E_T[V]``), and ``E_T[V]`` increases with ``T`` (its derivative is
    ``Var_T(V) / T^2``). The maximum-likelihood temperature is therefore the unique root
    of ``g(T) = E_T[V] - mean_i V(x_i)``: the temperature at which the model's own
    samples have the data's mean energy. An Energy Matching potential is trained so that
    ``T = eps_max`` holds approximately; a short training run (or short-run Langevin
    negatives) can leave its Boltzmann density much sharper than the data (samples of
    lower energy than real points), which a posterior with that prior then pays for
    (e.g. an unknown noise level overestimated to absorb the mismatch).

    Algorithm: ``E_T[V]`` is estimated by ``num_chains`` MALA chains started at data
    points (drawn with ``generator``), ``num_warmup`` iterations adapting the step size,
    then the mean of ``V`` over the next ``num_steps``. Chains started at the data's
    energy drift towards ``E_T[V]``, so the sign of ``g`` is read correctly even before
    they settle. From ``start`` the temperature is doubled (or halved) until ``g``
    changes sign, then the bracket is bisected ``num_bisections`` times in ``log T``;
    its final width is a factor ``2 ** (2 ** -num_bisections)``.

    Args:
        field (Field | Energy): ``V``: a field or term whose energy does not depend on
            the temperature (a learned potential; tempered terms are refused).
        data (Tensor): ``(n, *event)``, the points the density should fit (e.g. the
            training set).
        start (float): the first temperature tried (e.g. the run's eps_max).
        num_bisections (int): bisection steps after the bracket is found (>= 0).
        num_chains (int): chains per evaluation (>= 2).
        num_warmup (int): MALA adaptation iterations per evaluation (>= 0).
        num_steps (int): MALA iterations averaged per evaluation (>= 1).
        max_doublings (int): how far the bracket search may go (a factor ``2 **
            max_doublings`` either way) before giving up.
        generator (torch.Generator | None): randomness for the chains' starts and moves.

    Returns:
        TemperatureFit: the temperature, its bracket and every evaluation.

    Raises:
        InvalidValueError: bad data or settings, an energy that changes with the
            temperature, or no sign change within ``max_doublings`` (the message names
            the energies seen).

    Example:
        >>> import torch, energyflow as ef
        >>> V = ef.GaussianPotential(torch.zeros(2), torch.eye(2))   # p_T = N(0, T I)
        >>> data = 0.5 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
        >>> fit = calibrate_temperature(V, data, num_chains=256, generator=torch.Generator().manual_seed(1))
        >>> 0.2 < fit.temperature < 0.3                               # variance 0.25
        True
    """
    from energyflow.field import compile as compile_field
    from energyflow.samplers.mala import MALA

    _check_points(data, "data")
    start = _check_positive("start", start)
    num_bisections = _check_count("num_bisections", num_bisections, 0)
    num_chains = _check_count("num_chains", num_chains, 2)
    num_warmup = _check_count("num_warmup", num_warmup, 0)
    num_steps = _check_count("num_steps", num_steps, 1)
    max_doublings = _check_count("max_doublings", max_doublings, 1)
    if isinstance(field, Field):
        compiled = field
    elif isinstance(field, Energy):
        compiled = compile_field(field, Euclidean(tuple(data.shape[1:])))
    else:
        raise InvalidTypeError(f"calibrate_temperature needs a Field or an Energy term, got {type(field).__name__}")
    device, dtype = _device_dtype(compiled)
    data = data.to(device=device, dtype=dtype)
    probe = data[: min(8, data.shape[0])]
    with torch.no_grad():
        v_data = torch.cat([compiled.energy(chunk, 1.0) for chunk in data.split(1024)]).to(torch.float64)
        if not torch.allclose(compiled.energy(probe, 1.0), compiled.energy(probe, 2.0), rtol=1e-5, atol=1e-6):
            raise InvalidValueError("calibrate_temperature needs an energy that does not change with the temperature "
                                    "(a learned potential); this one has tempered terms")
    if not bool(torch.isfinite(v_data).all()):
        raise InvalidValueError("the energy is NaN or inf at some data points")
    target = float(v_data.mean())
    gen_device = generator.device if generator is not None else torch.device("cpu")
    evaluations: list[tuple[float, float, float]] = []

    def excess(temperature: float) -> float:
        idx = torch.randint(0, data.shape[0], (num_chains,), generator=generator, device=gen_device).to(device)
        mala_run = MALA(step_size=0.1, num_warmup=num_warmup, num_steps=num_steps, temperature=temperature)
        result = mala_run.run(compiled, data[idx], generator=generator, record_every=1)
        with torch.no_grad():
            states = result.trajectory[1:]
            v = compiled.energy(states.reshape(-1, *states.shape[2:]), 1.0).to(torch.float64)
        mean_v = float(v.mean())
        evaluations.append((temperature, mean_v, float(result.mean_acceptance)))
        return mean_v - target

    t = start
    g = excess(t)
    factor = 2.0 if g < 0 else 0.5  # below the data's energy: too cold, warm up
    low, high = (t, None) if g < 0 else (None, t)
    for _ in range(max_doublings):
        if low is not None and high is not None:
            break
        t *= factor
        if excess(t) < 0:
            low = t
        else:
            high = t
    if low is None or high is None:
        seen = ", ".join(f"T={e[0]:.3g}: {e[1]:.4g}" for e in evaluations)
        raise InvalidValueError(f"no temperature within a factor 2**{max_doublings} of start={start:g} gives the data's "
                                f"mean energy {target:.4g} (chains' mean energy {seen})")
    for _ in range(num_bisections):
        mid = math.sqrt(low * high)
        if excess(mid) < 0:
            low = mid
        else:
            high = mid
    return TemperatureFit(math.sqrt(low * high), (low, high), target, evaluations, num_chains)


# --- Hessian spectrum and LID ---------------------------------------------------------------------
def _hessians_vmap(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    def single(p: Tensor) -> Tensor:
        return fn(p.unsqueeze(0)).squeeze(0)

    # reverse-over-reverse: no forward-mode AD (whose first use imports jit decompositions)
    return torch.func.vmap(torch.func.jacrev(torch.func.jacrev(single)))(x)


def _hessians_loop(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    b = x.shape[0]
    d = x[0].numel()
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        e = fn(xr)
        (g,) = torch.autograd.grad(e.sum(), xr, create_graph=True)
        g = g.reshape(b, d)
        rows = []
        for i in range(d):
            (row,) = torch.autograd.grad(g[:, i].sum(), xr, retain_graph=i < d - 1, allow_unused=True)
            rows.append(torch.zeros_like(xr) if row is None else row)
    return torch.stack([r.reshape(b, d) for r in rows], dim=1).detach()


def hessian_eigenvalues(energy: EnergyLike, points: Tensor, *, batch_size: int = 64) -> Tensor:
    """Eigenvalues of the Hessian of ``V`` at each point, ascending.

    The Hessian is taken in the flattened coordinates (``d = prod(event)``), by
    ``torch.func.vmap(hessian(V))``, falling back to one backward pass per row when the
    energy cannot run under ``vmap`` (e.g. data-dependent checks); it is symmetrised
    before ``eigvalsh``. A Field is evaluated at ``eps = 1``.

    Args:
        energy (Field | Energy | Callable): ``V``, mapping ``(B, *event)`` to ``(B,)``.
        points (Tensor): shape ``(N, *event)``.
        batch_size (int): points per Hessian batch (memory is ``batch_size * d^2``).

    Returns:
        Tensor: shape ``(N, d)``, each row sorted ascending.

    Raises:
        ValueError: non-finite or badly shaped points, bad batch size, interaction terms.

    Example:
        >>> import torch, energyflow as ef
        >>> V = ef.GaussianPotential(torch.zeros(2), torch.diag(torch.tensor([1.0, 0.25])))
        >>> hessian_eigenvalues(V, torch.zeros(3, 2))[0]
        tensor([1., 4.])
    """
    _check_points(points, "points")
    batch_size = _check_count("batch_size", batch_size, 1)
    _forbid_batch_coupling(energy, "hessian_eigenvalues")
    if isinstance(energy, Field):
        energy.check(points[: min(points.shape[0], batch_size)])  # shape/dtype/finiteness, with term names
    fn = _raw_energy_fn(energy)
    n, d = points.shape[0], points[0].numel()
    out = []
    use_vmap = True
    for start in range(0, n, batch_size):
        x = points[start : start + batch_size].detach()
        h = None
        if use_vmap:
            try:
                h = _hessians_vmap(fn, x)
            except (RuntimeError, ValueError, NotImplementedError):
                use_vmap = False
        if h is None:
            h = _hessians_loop(fn, x)
        h = h.reshape(x.shape[0], d, d)
        if not torch.isfinite(h).all():
            raise InvalidValueError("the Hessian of the energy is NaN/inf at some points")
        h = 0.5 * (h + h.transpose(-1, -2))
        out.append(torch.linalg.eigvalsh(h))
    return torch.cat(out)


def local_intrinsic_dimension(
    energy: EnergyLike,
    points: Tensor,
    *,
    threshold: float | None = None,
    relative_threshold: float = 0.1,
    batch_size: int = 64,
) -> Tensor:
    """Local intrinsic dimension: the number of small Hessian eigenvalues of ``V`` at each point.

    Near a data manifold of dimension k a trained potential is steep across it (large
    positive curvature in the ``d - k`` normal directions) and flat along it (curvature
    near zero, or negative, in the k tangent directions). With ``lambda_1 <= ... <=
    lambda_d`` the eigenvalues of the Hessian at a point, the estimate is

    * ``#{i : lambda_i < threshold}`` when an absolute ``threshold`` is given;
    * otherwise ``#{i : lambda_i < relative_threshold * lambda_d}`` (a fraction of the
      largest curvature at that point, so it is independent of the scale of ``V`` and of
      the temperature), and ``d`` where ``lambda_d <= 0`` (no steep direction at all).
      Being scale-free, it assumes at least one normal direction: where all curvatures
      are alike (a full-dimensional region) it reads 0, so pass an absolute
      ``threshold`` (a curvature, in units of V per squared unit of x) to detect ``k = d``.

    Negative eigenvalues count as flat: they are not normal directions. The default
    ``relative_threshold=0.1`` calls a direction normal when it is at least a tenth as
    steep as the steepest one; a trained potential usually separates the two groups by
    orders of magnitude, and the estimate is insensitive to the exact fraction then.

    Args:
        energy (Field | Energy | Callable): ``V``, mapping ``(B, *event)`` to ``(B,)``.
        points (Tensor): points on (or near) the data, shape ``(N, *event)``.
        threshold (float | None): absolute curvature threshold (finite), or None.
        relative_threshold (float): in (0, 1); used when ``threshold`` is None.
        batch_size (int): points per Hessian batch.

    Returns:
        Tensor: int64, shape ``(N,)``, values in ``[0, d]``.

    Raises:
        ValueError: bad thresholds, non-finite or badly shaped points.

    Example:
        >>> import torch, energyflow as ef
        >>> cov = torch.diag(torch.tensor([1.0, 1.0, 1e-3]))      # a flat 2-D sheet in R^3
        >>> V = ef.GaussianPotential(torch.zeros(3), cov)
        >>> local_intrinsic_dimension(V, torch.zeros(4, 3)).tolist()
        [2, 2, 2, 2]
    """
    if threshold is not None:
        is_number = isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
        if not is_number or not math.isfinite(threshold):
            raise InvalidValueError(f"threshold must be a finite number or None, got {threshold!r}")
    else:
        if (
            isinstance(relative_threshold, bool)
            or not isinstance(relative_threshold, (int, float))
            or not 0.0 < relative_threshold < 1.0
        ):
            raise InvalidValueError(
                f"relative_threshold must lie in (0, 1) (a fraction of the largest eigenvalue), "
                f"got {relative_threshold!r}"
            )
    eig = hessian_eigenvalues(energy, points, batch_size=batch_size)
    d = eig.shape[1]
    if threshold is not None:
        return (eig < threshold).sum(-1).to(torch.int64)
    top = eig[:, -1:]
    steep = (eig > 0) & (eig >= relative_threshold * top)
    return (d - steep.sum(-1)).to(torch.int64)
