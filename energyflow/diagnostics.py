"""MCMC diagnostics a Stan or NumPyro user trusts: R-hat, ESS, MCSE, ArviZ, trace plots.

The numbers are ArviZ's, not re-implemented: rank-normalised split R-hat, bulk and tail
effective sample size and Monte Carlo standard errors as defined by Vehtari, Gelman,
Simpson, Carpenter and Bürkner (2021), "Rank-normalization, folding, and localization:
an improved R-hat for assessing convergence of MCMC" (ArviZ 0.23, the extra
``energyflow-em[diagnostics]``). What energyflow adds is the bridge from a
:class:`~energyflow.samplers.base.SampleResult` that kept draws (``num_samples=...``) to
ArviZ, and the warnings users expect:

* :func:`to_arviz`: an ``InferenceData`` with ``posterior`` (constrained values, one
  variable per site of an ``ef.model``, deterministic sites included; ``x`` for a tensor
  state), ``unconstrained_posterior`` (the sampler's coordinates of the sites whose
  support is not the real line), ``sample_stats`` under ArviZ's names and, for an
  ``ef.model``, ``observed_data``;
* :func:`summary`: ArviZ's table (mean, sd, HDI, MCSE, bulk/tail ESS, R-hat) as a pandas
  ``DataFrame``; :func:`rhat`, :func:`ess`, :func:`mcse` for arrays
  ``(chains, draws, *shape)``, results and ``InferenceData``;
* :func:`check`: R-hat above 1.01 and bulk or tail ESS below 400 in total (the
  thresholds of Vehtari et al. 2021) raise a :class:`ConvergenceWarning`; divergences
  after warm-up a :class:`DivergenceWarning`; a step size that collapsed during
  adaptation a :class:`StepSizeWarning` (MALA and HMC runs that keep draws raise the last
  two themselves, :func:`warn_transitions`). All derive from :class:`EnergyflowWarning`,
  so ``warnings.simplefilter("error", EnergyflowWarning)`` makes them fatal;
* :func:`plot_trace`: trace and rank plots per parameter, through ArviZ where installed,
  plain matplotlib otherwise.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> draws = rng.normal(size=(4, 1000))                    # 4 independent chains
    >>> bool(abs(rhat(draws) - 1.0) < 0.01), bool(3000 < ess(draws) < 5000)
    (True, True)
    >>> stuck = draws + np.arange(4)[:, None]                 # chains in different places
    >>> bool(rhat(stuck) > 1.5)
    True
"""

from __future__ import annotations

import math
import sys
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import attrs
import numpy as np
import torch
from torch import Tensor

from energyflow.errors import EnergyflowError, InvalidTypeError, InvalidValueError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from energyflow.samplers.base import SampleResult

__all__ = [
    "ConvergenceWarning", "DivergenceWarning", "EnergyflowWarning", "MissingDependencyError", "Problem",
    "StepSizeWarning", "check", "ess", "mcse", "plot_trace", "rhat", "summary", "to_arviz", "warn_transitions",
]

#: R-hat above which chains have not mixed (Vehtari et al. 2021).
RHAT_MAX = 1.01
#: Bulk and tail ESS, in total over the chains, below which estimates are unreliable (ibid.).
ESS_MIN = 400
#: An adapted step size below this fraction of what warm-up's first search found has collapsed.
STEP_SIZE_COLLAPSE = 1e-3
#: Rows of a Pyro model's draws constrained per trace (bounds the memory of the trace).
CONSTRAIN_CHUNK = 4096


class EnergyflowWarning(UserWarning):
    """Base class of the warnings energyflow raises about a run's results."""


class ConvergenceWarning(EnergyflowWarning):
    """R-hat or the effective sample size says the draws are not yet to be trusted."""


class DivergenceWarning(EnergyflowWarning):
    """Transitions after warm-up diverged: the sampler may miss part of the posterior."""


class StepSizeWarning(EnergyflowWarning):
    """The step size collapsed during adaptation."""


class MissingDependencyError(EnergyflowError, ImportError):
    """An optional package that a feature needs is not installed; the message says how."""


def _arviz():
    """ArviZ, imported quietly (0.23 announces its 1.0 refactor with a FutureWarning)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import arviz as az
    except ImportError as err:
        raise MissingDependencyError(
            "MCMC diagnostics need ArviZ: pip install 'energyflow-em[diagnostics]'"
        ) from err
    return az


# --------------------------------------------------------------------------- conversion
def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _result_type():
    from energyflow.samplers.base import SampleResult

    return SampleResult


def _require_draws(result: "SampleResult") -> None:
    if result.draws is None:
        raise InvalidValueError(
            "this result kept no draws: run the sampler with num_samples=N (e.g. ef.HMC(num_warmup=500, "
            "num_samples=1000)) to keep them; diagnostics need (chains, draws)"
        )


def _leaf_arrays(draws: Any) -> dict[str, np.ndarray]:
    """The floating leaves of the kept draws by name: ``x`` for a tensor, the key path for a pytree."""
    if isinstance(draws, Tensor):
        return {"x": _numpy(draws)}
    import torch.utils._pytree as pytree

    out = {}
    for path, leaf in pytree.tree_flatten_with_path(draws)[0]:
        if isinstance(leaf, Tensor) and leaf.is_floating_point():  # masks and counts are carried, not sampled
            name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            out[name] = _numpy(leaf)
    return out


def _is_identity(transform) -> bool:
    """``biject_to(real)`` (an empty ``ComposeTransform``), possibly wrapped in ``IndependentTransform``s."""
    from torch.distributions import transforms as T

    while isinstance(transform, T.IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, T.ComposeTransform) and not transform.parts


def _model_groups(model, draws: Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Constrained values per site (deterministic ones included) and the unconstrained
    values of the sites whose map to the support is not the identity, ``(C, S, *shape)``."""
    C, S, D = draws.shape
    flat = draws.reshape(C * S, D)
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, C * S, CONSTRAIN_CHUNK):
        for name, v in model.constrain(flat[start:start + CONSTRAIN_CHUNK]).items():
            parts.setdefault(name, []).append(v)
    posterior = {name: _numpy(torch.cat(vs).reshape(C, S, *vs[0].shape[1:])) for name, vs in parts.items()}
    unconstrained = {}
    for site in model.layout.values():
        if not _is_identity(site.transform):
            u = draws[..., site.offset:site.offset + site.size].reshape(C, S, *site.unconstrained_shape)
            unconstrained[site.name] = _numpy(u)
    return posterior, unconstrained


def to_arviz(result: "SampleResult", *, coords: dict | None = None, dims: dict | None = None):
    """The kept draws of a run as an ArviZ ``InferenceData``.

    Groups: ``posterior`` (constrained site values for an ``ef.model``, deterministic sites
    included; otherwise ``x`` for a tensor state or one variable per floating leaf of a
    pytree state), ``unconstrained_posterior`` (``ef.model`` sites whose support is not
    the real line, in the sampler's coordinates), ``sample_stats`` (``diverging``,
    ``energy``, ``acceptance_rate``, ``lp``, ``step_size``, ``n_steps``, ``tree_depth``
    for NUTS) and ``observed_data`` (an ``ef.model``'s observed sites).

    Args:
        result (SampleResult): a run that kept draws (``num_samples=...``).
        coords (dict | None): ArviZ coordinates, passed on.
        dims (dict | None): ArviZ dimension names per variable, passed on.

    Returns:
        arviz.InferenceData: every array ``(chain, draw, *shape)``.

    Raises:
        InvalidValueError: the result kept no draws.
        MissingDependencyError: ArviZ is not installed.

    Example:
        >>> import torch, energyflow as ef
        >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
        >>> out = ef.MALA(num_warmup=100, num_samples=50).run(
        ...     field, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))
        >>> idata = to_arviz(out)
        >>> idata.posterior["x"].shape, sorted(idata.sample_stats.data_vars)[:3]
        ((4, 50, 2), ['acceptance_rate', 'diverging', 'energy'])
    """
    az = _arviz()
    if not isinstance(result, _result_type()):
        raise InvalidTypeError(f"to_arviz takes a SampleResult, got {type(result).__name__}")
    _require_draws(result)
    model = result.model
    unconstrained: dict[str, np.ndarray] = {}
    if model is not None and isinstance(result.draws, Tensor):
        posterior, unconstrained = _model_groups(model, result.draws)
    else:
        posterior = _leaf_arrays(result.draws)
    groups = {
        "posterior": az.dict_to_dataset(posterior, library=None, coords=coords, dims=dims,
                                        attrs={"inference_library": "energyflow"}),
        "sample_stats": az.dict_to_dataset({k: _numpy(v) for k, v in result.sample_stats.items()}, library=None),
    }
    if unconstrained:
        groups["unconstrained_posterior"] = az.dict_to_dataset(unconstrained, library=None, coords=coords, dims=dims)
    if model is not None:
        observed = {k: _numpy(v) for k, v in model.observed_data().items()}
        if observed:
            groups["observed_data"] = az.dict_to_dataset(observed, library=None, coords=coords, dims=dims,
                                                         default_dims=[])
    return az.InferenceData(**groups)


def _dataset(obj: Any, group: str = "posterior"):
    """An xarray Dataset of draws from a result, an ``InferenceData`` or an array."""
    az = _arviz()
    if isinstance(obj, _result_type()):
        return getattr(to_arviz(obj), group)
    if isinstance(obj, az.InferenceData):
        return getattr(obj, group)
    if hasattr(obj, "data_vars"):  # an xarray Dataset already
        return obj
    arr = _numpy(obj)
    if arr.ndim < 2:
        raise InvalidValueError(f"draws must be (chains, draws, *shape), got shape {arr.shape}")
    return az.convert_to_dataset(arr)


def _stat(fn_name: str, obj: Any, **kwargs: Any):
    az = _arviz()
    is_array = not isinstance(obj, (_result_type(), az.InferenceData)) and not hasattr(obj, "data_vars")
    out = getattr(az, fn_name)(_dataset(obj), **kwargs)
    if is_array:
        value = out["x"].values
        return float(value) if value.ndim == 0 else value
    return out


def rhat(draws: Any, method: str = "rank") -> Any:
    """Rank-normalised split R-hat (ArviZ's ``az.rhat``; Vehtari et al. 2021).

    Args:
        draws: an array ``(chains, draws, *shape)`` (numpy or torch), a result that kept
            draws, or an ``InferenceData``.
        method (str): ArviZ's method (``"rank"``, the default, is the 2021 definition).

    Returns:
        float | ndarray | xarray.Dataset: ``shape``-shaped values for an array (a float for
        scalar draws), ArviZ's Dataset otherwise.
    """
    return _stat("rhat", draws, method=method)


def ess(draws: Any, method: str = "bulk") -> Any:
    """Effective sample size in total over the chains, ``"bulk"`` or ``"tail"`` (ArviZ's
    ``az.ess``); same arguments and returns as :func:`rhat`."""
    return _stat("ess", draws, method=method)


def mcse(draws: Any, method: str = "mean") -> Any:
    """Monte Carlo standard error of the mean (``"mean"``), sd (``"sd"``) or a quantile
    (``"quantile"`` with ``prob=``) (ArviZ's ``az.mcse``); returns as :func:`rhat`."""
    return _stat("mcse", draws, method=method)


def summary(obj: Any, *, warn: bool = True, **kwargs: Any):
    """ArviZ's summary table: mean, sd, HDI, MCSE, bulk and tail ESS, R-hat per parameter.

    Exactly ``az.summary(to_arviz(result), **kwargs)`` (an ``InferenceData`` passes
    through); with ``warn`` it also raises the convergence warnings of :func:`check`.

    Args:
        obj: a result that kept draws, or an ``InferenceData``.
        warn (bool): warn of R-hat > 1.01 and ESS < 400 (:class:`ConvergenceWarning`).
        **kwargs: passed to ``az.summary`` (``var_names``, ``hdi_prob``, ``round_to``, ...).

    Returns:
        pandas.DataFrame: one row per scalar parameter (``theta[0]``, ...).

    Example:
        >>> import torch, energyflow as ef
        >>> field = ef.compile(ef.GaussianPotential(torch.zeros(2), torch.eye(2)))
        >>> out = ef.HMC(num_leapfrog=5, num_warmup=200, num_samples=200).run(
        ...     field, torch.zeros(8, 2), generator=torch.Generator().manual_seed(0))
        >>> table = summary(out)
        >>> list(table.index), list(table.columns)[-3:]
        (['x[0]', 'x[1]'], ['ess_bulk', 'ess_tail', 'r_hat'])
    """
    az = _arviz()
    idata = to_arviz(obj) if isinstance(obj, _result_type()) else obj
    if not isinstance(idata, az.InferenceData):
        raise InvalidTypeError(f"summary takes a SampleResult or an InferenceData, got {type(obj).__name__}")
    if warn:
        check(idata, kinds=("rhat", "ess"))
    return az.summary(idata, **kwargs)


# --------------------------------------------------------------------------- warnings
def _user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside energyflow."""
    frame, level = sys._getframe(1), 1  # the function that warns is level 1
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] == "energyflow":
        frame, level = frame.f_back, level + 1
    return level


@attrs.frozen
class Problem:
    """One thing a user should know before trusting the draws.

    Attributes:
        kind (str): ``"rhat"``, ``"ess"``, ``"divergences"`` or ``"step_size"``.
        message (str): what happened and what to do.
        category (type[EnergyflowWarning]): the warning class it raises.
    """

    kind: str
    message: str
    category: type


def _scalar_names(ds) -> list[tuple[str, np.ndarray]]:
    """``(parameter name, value)`` per scalar element of every variable of a Dataset."""
    out = []
    for name, da in ds.data_vars.items():
        values = np.asarray(da.values)
        if values.ndim == 0:
            out.append((str(name), values))
            continue
        for idx in np.ndindex(values.shape):
            out.append((f"{name}[{','.join(map(str, idx))}]", values[idx]))
    return out


def _worst(pairs: list[tuple[str, float]], bad, reverse: bool, fmt: str, limit: int = 5) -> tuple[list[str], int]:
    """The names (with values) of the ``limit`` worst parameters for which ``bad`` holds, and their count."""
    hits = sorted([(v, n) for n, v in pairs if bad(v)], reverse=reverse)
    return [f"{n} ({v:{fmt}})" for v, n in hits[:limit]], len(hits)


def transition_problems(result: "SampleResult") -> list[Problem]:
    """Divergences after warm-up and a collapsed step size of one run (no ArviZ needed)."""
    problems = []
    n = result.num_divergences
    if n:
        total = result.info.get("num_transitions")  # chains x post-warm-up iterations
        share = f" of {total} ({100.0 * n / total:.2g} %)" if total else ""
        problems.append(Problem("divergences", (
            f"{n}{share} transitions after warm-up were divergent: the sampler cannot follow the posterior's "
            "curvature there and may miss part of it; raise target_accept (a smaller step size) or reparameterise "
            "(e.g. non-centred hierarchical models)"), DivergenceWarning))
    initial, final = result.info.get("step_size_initial"), result.info.get("step_size")
    if initial is not None and final is not None and (not math.isfinite(final) or final < STEP_SIZE_COLLAPSE * initial):
        problems.append(Problem("step_size", (
            f"the step size collapsed during adaptation: {final:.3g}, below {STEP_SIZE_COLLAPSE:g} x the "
            f"{initial:.3g} warm-up's first search found; proposals were rejected almost always, so the chains "
            "barely move: look for a discontinuity, a hard constraint or a scale far off the others"),
            StepSizeWarning))
    return problems


def warn_transitions(result: "SampleResult", sampler: str = "sampler") -> list[Problem]:
    """Warns of divergences after warm-up and of a collapsed step size; returns them.

    The warnings point at the caller's line outside energyflow (the ``run`` call)."""
    problems = transition_problems(result)
    for p in problems:
        warnings.warn(f"{sampler}: {p.message}", p.category, stacklevel=_user_stacklevel())
    return problems


def check(
    obj: Any,
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
    kinds: Sequence[str] = ("rhat", "ess", "divergences", "step_size"),
    warn: bool = True,
) -> list[Problem]:
    """What a user should know before trusting the draws, raised as warnings.

    * R-hat above ``rhat_max`` (1.01) for any parameter: :class:`ConvergenceWarning`;
    * bulk or tail ESS below ``ess_min`` (400, in total over the chains) for any
      parameter: :class:`ConvergenceWarning`;
    * divergent transitions after warm-up: :class:`DivergenceWarning` (results; for an
      ``InferenceData``, from its ``sample_stats.diverging``);
    * a step size that collapsed during adaptation: :class:`StepSizeWarning` (results).

    Args:
        obj: a result that kept draws, or an ``InferenceData``.
        rhat_max (float): the R-hat threshold.
        ess_min (float): the ESS threshold (total over chains).
        kinds (Sequence[str]): which checks to run.
        warn (bool): raise the warnings (else only return the problems); they point at
            the caller's line outside energyflow.

    Returns:
        list[Problem]: the problems found (empty when all is well).

    Example:
        >>> import numpy as np, warnings
        >>> az = _arviz()
        >>> draws = np.random.default_rng(0).normal(size=(2, 100)) + np.array([[0.0], [5.0]])
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     problems = check(az.from_dict(posterior={"mu": draws}))
        >>> [p.kind for p in problems], caught[0].category.__name__      # R-hat, bulk and tail ESS
        (['rhat', 'ess', 'ess'], 'ConvergenceWarning')
    """
    az = _arviz()
    problems: list[Problem] = []
    is_result = isinstance(obj, _result_type())
    if is_result:
        _require_draws(obj)
    if "rhat" in kinds or "ess" in kinds:
        ds = _dataset(obj)
        chains = ds.sizes.get("chain", 1)
        if "rhat" in kinds and chains > 1:
            values = [(n, float(v)) for n, v in _scalar_names(az.rhat(ds))]
            worst, n = _worst(values, lambda v: not v <= rhat_max, reverse=True, fmt=".3f")
            if n:
                problems.append(Problem("rhat", (
                    f"R-hat above {rhat_max:g} for {n} of {len(values)} parameters, worst {', '.join(worst)}: the "
                    f"{chains} chains have not mixed (they disagree about the posterior); run longer, or check for "
                    "multiple modes and reparameterise"), ConvergenceWarning))
        if "ess" in kinds:
            for method in ("bulk", "tail"):
                values = [(n, float(v)) for n, v in _scalar_names(az.ess(ds, method=method))]
                worst, n = _worst(values, lambda v: not v >= ess_min, reverse=False, fmt=".0f")
                if n:
                    problems.append(Problem("ess", (
                        f"{method} ESS below {ess_min:g} (in total over {chains} chains) for {n} of {len(values)} "
                        f"parameters, lowest {', '.join(worst)}: the {'means' if method == 'bulk' else 'quantiles'} "
                        "and their MCSE are unreliable; keep more draws or chains"), ConvergenceWarning))
    if is_result:
        problems += [p for p in transition_problems(obj) if p.kind in kinds]
    elif "divergences" in kinds and "diverging" in getattr(obj, "sample_stats", {}):
        n = int(np.asarray(obj.sample_stats["diverging"].values).sum())
        if n:
            problems.append(Problem("divergences", f"{n} transitions after warm-up were divergent",
                                    DivergenceWarning))
    if warn:
        for p in problems:
            warnings.warn(p.message, p.category, stacklevel=_user_stacklevel())
    return problems


# --------------------------------------------------------------------------- plots
def _scalar_columns(ds, var_names: Sequence[str] | None, max_parameters: int) -> list[tuple[str, np.ndarray]]:
    """``(name, (chains, draws))`` per scalar parameter, at most ``max_parameters``."""
    names = list(ds.data_vars) if var_names is None else list(var_names)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise InvalidValueError(f"no variable {missing[0]!r} in the draws; there are {list(ds.data_vars)}")
    out = []
    for name in names:
        v = np.asarray(ds[name].values)  # (chain, draw, *shape)
        if v.ndim == 2:
            out.append((str(name), v))
        else:
            for idx in np.ndindex(v.shape[2:]):
                out.append((f"{name}[{','.join(map(str, idx))}]", v[(slice(None), slice(None), *idx)]))
    return out[:max_parameters]


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks of all draws pooled over chains (0-based, ties broken by order), ``(chains, draws)``."""
    flat = v.reshape(-1)
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
    return ranks.reshape(v.shape)


def plot_trace(
    obj: Any,
    var_names: Sequence[str] | None = None,
    *,
    max_parameters: int = 8,
    title: str | None = None,
    backend: str = "auto",
) -> "Figure":
    """Trace and rank plots: one row per scalar parameter with each chain's density, its
    draws over the iterations, and the histogram of each chain's ranks among all draws
    (flat when the chains mix; Vehtari et al. 2021).

    Args:
        obj: a result that kept draws, or an ``InferenceData`` (its posterior).
        var_names (Sequence[str] | None): variables to plot (default: all, in order).
        max_parameters (int): at most this many scalar parameters (rows).
        title (str | None): the figure's title (default: chains, draws, worst R-hat).
        backend (str): ``"arviz"`` (``az.plot_trace`` and ``az.plot_rank`` on the figure's
            axes), ``"matplotlib"`` (the same panels drawn directly, no ArviZ needed) or
            ``"auto"`` (ArviZ where installed).

    Returns:
        matplotlib.figure.Figure: an Agg figure (save it with
        :func:`energyflow.plotting.save_figure`).

    Example:
        >>> import numpy as np
        >>> az = _arviz()
        >>> idata = az.from_dict(posterior={"mu": np.random.default_rng(0).normal(size=(4, 200))})
        >>> fig = plot_trace(idata)
        >>> [ax.get_title() for ax in fig.axes], fig.axes[2].get_xlabel()
        (['mu (density per chain)', 'mu (trace)', 'mu (ranks)'], 'rank of the draw among all chains')
    """
    from energyflow.plotting import new_figure

    if backend not in ("auto", "arviz", "matplotlib"):
        raise InvalidValueError(f"backend must be 'auto', 'arviz' or 'matplotlib', got {backend!r}")
    try:
        az = _arviz()
    except MissingDependencyError:
        if backend == "arviz":
            raise
        az = None  # results and arrays are drawn with matplotlib alone
    use_arviz = az is not None and backend != "matplotlib"
    if az is not None:
        ds = _dataset(obj)
    else:  # a result without ArviZ: its leaves, or an array
        if isinstance(obj, _result_type()):
            _require_draws(obj)
            arrays = _leaf_arrays(obj.draws) if obj.model is None else _model_groups(obj.model, obj.draws)[0]
        else:
            arrays = {"x": _numpy(obj)}
        ds = _ArrayDataset(arrays)
    columns = _scalar_columns(ds, var_names, max_parameters)
    if not columns:
        raise InvalidValueError("nothing to plot: no scalar parameter in the draws")
    rows = len(columns)
    fig, _ = new_figure(figsize=(12.0, 2.2 * rows + 0.6))
    fig.clear()
    axes = fig.subplots(rows, 3, squeeze=False)
    chains, draws = columns[0][1].shape
    if use_arviz:
        flat = az.from_dict(posterior={name: v for name, v in columns})
        names = [name for name, _ in columns]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            az.plot_trace(flat, var_names=names, axes=axes[:, :2], compact=False, show=False)
            az.plot_rank(flat, var_names=names, kind="bars", ax=axes[:, 2], show=False)
    else:
        for (name, v), (a_density, a_trace, a_rank) in zip(columns, axes):
            for c in range(chains):
                a_density.hist(v[c], bins=30, density=True, histtype="step", color=f"C{c % 10}")
                a_trace.plot(np.arange(draws), v[c], lw=0.6, alpha=0.8, color=f"C{c % 10}")
            ranks = _ranks(v)
            bins = np.linspace(0, v.size, min(20, max(2, draws // 5)) + 1)
            expected = draws / (len(bins) - 1)  # per chain and bin when the chains mix
            for c in range(chains):  # chain c's band is [c, c + 1); a uniform histogram fills 0.4 of it
                counts, _ = np.histogram(ranks[c], bins=bins)
                a_rank.bar(bins[:-1], 0.4 * counts / expected, width=np.diff(bins), bottom=c, align="edge",
                           alpha=0.8, color=f"C{c % 10}")
                a_rank.axhline(c + 0.4, ls="--", lw=0.6, color="k")
            a_rank.set_yticks([c + 0.2 for c in range(chains)], [str(c) for c in range(chains)])
            a_rank.set_ylim(0.0, chains)
    for (name, _), (a_density, a_trace, a_rank) in zip(columns, axes):
        a_density.set_title(f"{name} (density per chain)")
        a_density.set_xlabel(name)
        a_density.set_ylabel("density")
        a_trace.set_title(f"{name} (trace)")
        a_trace.set_xlabel("draw (after warm-up)")
        a_trace.set_ylabel(name)
        a_rank.set_title(f"{name} (ranks)")
        a_rank.set_xlabel("rank of the draw among all chains", fontsize="medium")
        a_rank.set_ylabel("chain", fontsize="medium")
    if title is None:
        title = f"{chains} chains x {draws} draws"
        if az is not None and chains > 1:
            worst = max(float(np.asarray(az.rhat(az.convert_to_dataset(v)).x.values)) for _, v in columns)
            title += f", max R-hat {worst:.3f}"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


class _ArrayDataset:
    """The two things :func:`_scalar_columns` reads of a Dataset, for plain arrays."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.data_vars = {k: _Values(v) for k, v in arrays.items()}

    def __getitem__(self, name: str):
        return self.data_vars[name]


class _Values:
    def __init__(self, values: np.ndarray) -> None:
        self.values = values
