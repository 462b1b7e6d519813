"""Whole Pyro models as energies: latent sites, constrained supports, plates.

``ef.model(fn, *args, **kwargs)`` turns a Pyro model written for **one** parameter set
into an energy on a flat unconstrained state ``x`` of shape ``(B, D)``, one row per
chain:

* every latent site (``pyro.sample`` without ``obs``) owns a slice of ``x``
  (:attr:`Model.layout`: site name -> offset, unconstrained shape, support), mapped to
  its support with ``torch.distributions.biject_to`` (positive, interval, simplex,
  ordered, correlation-Cholesky, ...); the log-Jacobian of that map is added, so the
  state's density is the posterior pushed to unconstrained space;
* observed sites, ``pyro.factor``, masks and scales are the likelihood, exactly as Pyro
  scores them; ``pyro.deterministic`` sites are recorded by :meth:`Model.constrain`;
* the model runs **vectorised over chains** inside an outer ``pyro.plate`` to the left of
  the model's own plates (as Pyro's vectorised particles do): no loop over chains.

The energy is ``-log p(x, y)`` (unnormalised), a *tempered* term like ``observe``: at
temperature ``eps`` a sampler's stationary law is the posterior itself. A learned
potential can be a prior site inside the model: ``pyro.sample("img", ef.Boltzmann(V,
event_shape))`` scores ``-V(img) / eps`` with ``eps`` the sampler's temperature, so ``V``
enters the field as an energy term, as a learned potential does.

Example:
    >>> import torch, pyro, pyro.distributions as dist
    >>> import energyflow as ef
    >>> def coin(flips):
    ...     p = pyro.sample("p", dist.Beta(2.0, 2.0))
    ...     with pyro.plate("flips", len(flips)):
    ...         pyro.sample("y", dist.Bernoulli(p), obs=flips)
    >>> m = ef.model(coin, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    >>> m.layout["p"].size, m.dim
    (1, 1)
    >>> x = m.init(8, torch.Generator().manual_seed(0))
    >>> m(x).shape, bool(((m.constrain(x)["p"] > 0) & (m.constrain(x)["p"] < 1)).all())
    (torch.Size([8]), True)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import attrs
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.autoguide.initialization import InitMessenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import biject_to, constraints

from energyflow.energies.base import Energy
from energyflow.errors import InvalidTypeError, InvalidValueError

CHAIN_PLATE = "_energyflow_chains"
INIT_STRATEGIES = ("uniform", "prior", "value")


class ModelError(InvalidValueError):
    """A Pyro model that cannot become an energy (a discrete latent site, a subsampled plate...)."""


@attrs.frozen(eq=False)
class Site:
    """Where one latent site lives in the flat unconstrained state.

    Attributes:
        name (str): the site's name.
        offset (int): first column of its slice of ``x``.
        size (int): number of unconstrained coordinates.
        unconstrained_shape (tuple[int, ...]): shape of its unconstrained value (one chain).
        shape (tuple[int, ...]): shape of its constrained value (one chain).
        batch_dims (int): how many of ``shape``'s leading dimensions are plate dimensions.
        support (constraints.Constraint): the distribution's support.
    """

    name: str
    offset: int
    size: int
    unconstrained_shape: tuple[int, ...]
    shape: tuple[int, ...]
    batch_dims: int
    support: Any

    @property
    def transform(self):
        return biject_to(self.support)


def _sum_per_chain(t: Tensor, chains: int) -> Tensor:
    """Sums everything but the chain dimension; ``t`` is ``(B, ...)`` or broadcastable to it."""
    if t.dim() == 0:
        return t.expand(chains)
    flat = t.reshape(t.shape[0], -1).sum(1)
    return flat.expand(chains) if flat.shape[0] == 1 else flat


class Model(Energy):
    """``-log p(latents, observations)`` of a Pyro model, on a flat unconstrained state.

    Args:
        fn (Callable): the Pyro model, written for one parameter set.
        *args, **kwargs: passed to ``fn`` on every evaluation (data, covariates).

    Attributes:
        layout (dict[str, Site]): the latent sites in the order they are sampled.
        deterministic (dict[str, tuple[int, ...]]): ``pyro.deterministic`` sites and the
            shape of their value for one parameter set.
        dim (int): D, the length of the unconstrained state.
        max_plate_nesting (int): the model's plate depth (the chain plate sits left of it).

    Shapes:
        x: ``(B, D)`` -> ``(B,)``
    """

    coupling = "tempered"

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if not callable(fn):
            raise InvalidTypeError(f"model() needs a Pyro model (a function), got {type(fn).__name__}")
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self._label = f"model({getattr(fn, '__name__', 'fn')})"
        self.layout, self.max_plate_nesting, self.deterministic = self._discover()
        self.dim = sum(s.size for s in self.layout.values())
        if self.dim == 0:
            raise ModelError(f"{self._label}: the model has no latent sites; use ef.observe for a likelihood alone")

    # --- structure ---------------------------------------------------------------------------
    def _discover(self) -> tuple[dict[str, Site], int, dict[str, tuple[int, ...]]]:
        """One trace at a feasible point (no random draws) gives the sites and their shapes."""
        with torch.no_grad(), InitMessenger(self._feasible):
            trace = poutine.trace(self.fn).get_trace(*self.args, **self.kwargs)
        nesting = 0
        layout: dict[str, Site] = {}
        deterministic: dict[str, tuple[int, ...]] = {}
        offset = 0
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["infer"].get("_deterministic"):
                deterministic[name] = tuple(site["value"].shape)
            for frame in site["cond_indep_stack"]:
                if frame.vectorized:
                    nesting = max(nesting, -frame.dim)
                    if frame.size != (frame.full_size or frame.size):
                        raise ModelError(f"{self._label}: plate {frame.name!r} subsamples; energies need the full data")
            if site["is_observed"]:
                continue
            d = site["fn"]
            if d.support.is_discrete:
                raise ModelError(
                    f"{self._label}: latent site {name!r} is discrete ({type(d).__name__}); gradient samplers need "
                    "continuous latents: marginalise it out (sum over its values with pyro.factor or a mixture)"
                )
            try:
                transform = biject_to(d.support)
            except NotImplementedError as err:
                raise ModelError(f"{self._label}: site {name!r} has support {d.support}, which biject_to cannot map "
                                 "from unconstrained space") from err
            shape = tuple(site["value"].shape)
            ushape = tuple(transform.inverse_shape(torch.Size(shape)))
            size = math.prod(ushape)
            layout[name] = Site(name, offset, size, ushape, shape, len(d.batch_shape), d.support)
            offset += size
        return layout, nesting, deterministic

    def _feasible(self, site: dict) -> Tensor:
        """A point of a latent site's support without drawing from it: the image of 0."""
        d = site["fn"]
        if d.support.is_discrete:
            raise ModelError(
                f"{self._label}: latent site {site['name']!r} is discrete ({type(d).__name__}); gradient samplers "
                "need continuous latents: marginalise it out (sum over its values with pyro.factor or a mixture)"
            )
        try:
            transform = biject_to(d.support)
        except NotImplementedError as err:
            raise ModelError(f"{self._label}: site {site['name']!r} has support {d.support}, which biject_to "
                             "cannot map from unconstrained space") from err
        shape = d.batch_shape + d.event_shape
        return transform(torch.zeros(transform.inverse_shape(shape)))

    def _batched(self, flat: Tensor, site: Site) -> Tensor:
        """A site's slice of ``x`` shaped for the chain plate: ``(B, 1.., *unconstrained_shape)``."""
        pad = self.max_plate_nesting - site.batch_dims
        return flat[:, site.offset:site.offset + site.size].reshape(flat.shape[0], *([1] * pad), *site.unconstrained_shape)

    def unpack(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """Constrained values per site (chain-plate shaped) and the summed log-Jacobian ``(B,)``."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InvalidValueError(f"{self.name}: x must have shape (B, {self.dim}) (see model.layout), got {shape}")
        values, log_det = {}, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for site in self.layout.values():
            u = self._batched(x, site)
            t = site.transform
            z = t(u)
            log_det = log_det + _sum_per_chain(t.log_abs_det_jacobian(u, z), x.shape[0])
            values[site.name] = z
        return values, log_det

    def _trace(self, values: dict[str, Tensor], chains: int):
        # Without argument validation: a proposal far out in the tails (a scale that
        # underflows to 0) scores NaN/inf and is rejected by the sampler, instead of
        # raising and costing a bisection of the batch. The discovery trace validates.
        conditioned = poutine.condition(self.fn, data=values)
        with pyro.validation_enabled(False), pyro.plate(CHAIN_PLATE, chains, dim=-(self.max_plate_nesting + 1)):
            return poutine.trace(conditioned).get_trace(*self.args, **self.kwargs)

    # --- energy ------------------------------------------------------------------------------
    #: Add log|dT/du| of the maps to the supports (always, except to demonstrate what
    #: leaving it out does: the negative control of the tests).
    include_jacobian: bool = True

    def log_joint(self, x: Tensor, include_jacobian: bool | None = None) -> tuple[Tensor, Tensor]:
        """``(log p(x, y) without learned-potential sites, sum of those sites' V)``, each ``(B,)``.

        ``log p`` includes every site's log-probability (masks and scales as Pyro applies
        them) and, unless ``include_jacobian`` is False (default: the attribute of the same
        name), the log-Jacobian of the map to the
        supports. Learned-potential sites (:class:`Boltzmann` with ``eps=None``) are
        returned separately as energies ``V``, because their temperature is the field's.
        """
        values, log_det = self.unpack(x)
        trace = self._trace(values, x.shape[0])
        jacobian = self.include_jacobian if include_jacobian is None else include_jacobian
        log_p = log_det if jacobian else torch.zeros_like(log_det)
        energy = torch.zeros_like(log_det)
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or site["infer"].get("_deterministic") or site_is_subsample(site):
                continue
            d = site["fn"]
            if len(d.batch_shape) > self.max_plate_nesting + 1:
                raise ModelError(
                    f"{self._label}: site {name!r} has batch shape {tuple(d.batch_shape)} for {x.shape[0]} chains: the "
                    f"model broadcasts one chain's values against another's. Under the chain plate a global site's "
                    f"value has shape (B, {', '.join(['1'] * self.max_plate_nesting) or ''}, *event); write the model "
                    "with right-aligned shapes as for Pyro's vectorised particles (e.g. (w * X).sum(-1), not "
                    "X @ w.unsqueeze(-2) tricks)"
                )
            base = getattr(d, "base_dist", d)
            if isinstance(base, Boltzmann) and base.eps is None:
                energy = energy + _sum_per_chain(_masked_scaled(site, base.potential_energy(site["value"])), x.shape[0])
                continue
            lp = _masked_scaled(site, d.log_prob(site["value"]))
            log_p = log_p + _sum_per_chain(lp, x.shape[0])
        return log_p, energy

    def forward(self, x: Tensor) -> Tensor:
        """``-log p(x, y)`` per chain (learned-potential sites at temperature 1)."""
        log_p, energy = self.log_joint(x)
        return energy - log_p

    def total(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        """``eps * (-log p) + V``: the model is a log-density (tempered); a learned-potential
        site contributes its energy ``V`` as it stands (its density is ``exp(-V / eps)``)."""
        log_p, energy = self.log_joint(x)
        return energy - eps * log_p

    # --- user helpers ------------------------------------------------------------------------
    def constrain(self, x: Tensor) -> dict[str, Tensor]:
        """Constrained values per chain: ``{site: (B, *shape)}``, deterministic sites included."""
        values, _ = self.unpack(x)
        with torch.no_grad():
            trace = self._trace({k: v.detach() for k, v in values.items()}, x.shape[0])
        out = {}
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            if name in self.layout:
                out[name] = values[name].detach().reshape(x.shape[0], *self.layout[name].shape)
            elif site["infer"].get("_deterministic"):
                v, shape = site["value"].detach(), self.deterministic.get(name, ())
                # Under the chain plate a deterministic value is (B, 1.., *shape), or has no
                # chain dimension when it does not depend on the latents.
                out[name] = (v.reshape(x.shape[0], *shape) if v.numel() == x.shape[0] * math.prod(shape)
                             else v.reshape(shape).expand(x.shape[0], *shape))
        return out

    def observed_data(self) -> dict[str, Tensor]:
        """The observed sites' values, ``{site: value}`` as the model received them (for
        ArviZ's ``observed_data`` group); one trace at a feasible point, no random draws."""
        with torch.no_grad(), InitMessenger(self._feasible):
            trace = poutine.trace(self.fn).get_trace(*self.args, **self.kwargs)
        return {name: torch.as_tensor(site["value"]).detach() for name, site in trace.nodes.items()
                if site["type"] == "sample" and site["is_observed"] and not site["infer"].get("_deterministic")
                and not site_is_subsample(site)}

    def unconstrain(self, values: dict[str, Tensor | float]) -> Tensor:
        """The unconstrained state ``(1, D)`` of one parameter set ``{site: constrained value}``."""
        missing = [k for k in self.layout if k not in values]
        if missing:
            raise InvalidValueError(f"{self.name}: no value for latent site {missing[0]!r}; sites: {list(self.layout)}")
        parts = []
        for site in self.layout.values():
            z = torch.as_tensor(values[site.name], dtype=torch.get_default_dtype())
            if tuple(z.shape) != site.shape:
                raise InvalidValueError(f"{self.name}: site {site.name!r} has shape {site.shape}, got {tuple(z.shape)}")
            if not bool(site.support.check(z).all()):
                raise InvalidValueError(f"{self.name}: the value of {site.name!r} lies outside its support {site.support}")
            parts.append(site.transform.inv(z).reshape(-1))
        return torch.cat(parts).unsqueeze(0)

    def init(
        self,
        num_chains: int,
        generator: torch.Generator | None = None,
        strategy: str = "uniform",
        value: dict[str, Tensor | float] | None = None,
        radius: float = 2.0,
    ) -> Tensor:
        """Initial chains ``(num_chains, D)``.

        Args:
            num_chains (int): B.
            generator (torch.Generator | None): random stream.
            strategy (str): ``"uniform"`` (Stan's default: uniform in ``(-radius, radius)``
                unconstrained), ``"prior"`` (a draw of each latent site from its prior,
                given the others) or ``"value"`` (every chain at ``value``, a dict of
                constrained values).
            value (dict | None): the constrained values for ``strategy="value"``.
            radius (float): half-width of the uniform box.
        """
        if isinstance(num_chains, bool) or not isinstance(num_chains, int) or num_chains < 1:
            raise InvalidValueError(f"num_chains must be a positive integer, got {num_chains!r}")
        if strategy not in INIT_STRATEGIES:
            raise InvalidValueError(f"strategy must be one of {INIT_STRATEGIES}, got {strategy!r}")
        dtype = torch.get_default_dtype()
        if strategy == "value":
            if value is None:
                raise InvalidValueError("strategy='value' needs value={site: constrained value}")
            return self.unconstrain(value).expand(num_chains, self.dim).clone()
        if strategy == "uniform":
            u = torch.rand((num_chains, self.dim), generator=generator, dtype=dtype)
            return (2.0 * u - 1.0) * radius
        return self._from_prior(num_chains, generator)

    def _from_prior(self, num_chains: int, generator: torch.Generator | None) -> Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            try:
                with pyro.plate(CHAIN_PLATE, num_chains, dim=-(self.max_plate_nesting + 1)):
                    trace = poutine.trace(self.fn).get_trace(*self.args, **self.kwargs)
            except NotImplementedError as err:
                raise InvalidValueError(f"{self.name}: a site cannot be drawn from its prior ({err}); "
                                        "use strategy='uniform'") from err
        parts = []
        for site in self.layout.values():
            z = trace.nodes[site.name]["value"].expand(num_chains, *([1] * (self.max_plate_nesting - site.batch_dims)),
                                                       *site.shape)
            parts.append(site.transform.inv(z).reshape(num_chains, -1))
        return torch.cat(parts, 1)

    def extra_repr(self) -> str:
        return f"{len(self.layout)} latent sites, dim={self.dim}"


def _masked_scaled(site: dict, lp: Tensor) -> Tensor:
    """A site's log-probability with Pyro's mask and scale applied (as ``Trace.compute_log_prob``)."""
    mask = site.get("mask")
    if mask is not None and mask is not True:
        lp = torch.where(torch.as_tensor(mask, device=lp.device), lp, torch.zeros_like(lp))
    scale = site.get("scale", 1.0)
    return lp * scale if not (isinstance(scale, float) and scale == 1.0) else lp


def model(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Model:
    """An energy from a whole Pyro model (see the module docstring).

    Args:
        fn (Callable): a Pyro model for one parameter set; latent sites are sampled,
            observed ones carry ``obs=``.
        *args, **kwargs: the model's arguments (data).

    Returns:
        Model: a tempered energy on ``(B, model.dim)`` unconstrained states.
    """
    return Model(fn, *args, **kwargs)




class Boltzmann(dist.TorchDistribution):
    """A learned potential as a distribution: unnormalised density ``exp(-V(x) / eps)``.

    Use it as a prior site inside a Pyro model passed to :func:`model`:
    ``pyro.sample("image", ef.Boltzmann(V, event_shape=(1, 8, 8)))``. With ``eps=None``
    (the default) its temperature is the sampler's: the model's energy gains ``V(x)``
    itself, exactly how a learned potential enters a field, so the Energy Matching
    schedule applies to it. A number fixes ``eps``. It has no normaliser and cannot be
    sampled (initialise chains with ``strategy="uniform"``).

    Args:
        potential (Callable): ``V``, ``(N, *event_shape) -> (N,)`` or ``(N, 1)``.
        event_shape (tuple[int, ...] | int): the shape of one state.
        eps (float | None): a fixed temperature, or None for the sampler's.

    Example:
        >>> import torch
        >>> b = Boltzmann(lambda x: 0.5 * x.pow(2).sum(-1), event_shape=2, eps=0.5)
        >>> b.log_prob(torch.ones(3, 2)).tolist()
        [-2.0, -2.0, -2.0]
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, potential: Callable[[Tensor], Tensor], event_shape, eps: float | None = None,
                 batch_shape=torch.Size(), validate_args=None) -> None:
        if not callable(potential):
            raise InvalidTypeError(f"Boltzmann needs a potential V (callable), got {type(potential).__name__}")
        if eps is not None and not (float(eps) > 0 and math.isfinite(float(eps))):
            raise InvalidValueError(f"Boltzmann eps must be a finite number > 0 or None, got {eps}")
        self.potential, self.eps = potential, (None if eps is None else float(eps))
        event_shape = torch.Size((event_shape,) if isinstance(event_shape, int) else event_shape)
        super().__init__(torch.Size(batch_shape), event_shape, validate_args=False)

    @property
    def support(self):
        return constraints.independent(constraints.real, len(self.event_shape))

    def expand(self, batch_shape, _instance=None) -> "Boltzmann":
        return Boltzmann(self.potential, self.event_shape, self.eps, batch_shape)

    def potential_energy(self, value: Tensor) -> Tensor:
        """``V(value)`` over the leading (batch) dimensions: shape ``value.shape[:-len(event)]``."""
        k = len(self.event_shape)
        lead = value.shape[: value.dim() - k]
        flat = value.reshape(-1, *self.event_shape)
        v = self.potential(flat)
        if v.dim() == 2 and v.shape[1] == 1:
            v = v.squeeze(1)
        if v.shape != (flat.shape[0],):
            raise InvalidValueError(f"Boltzmann: V returned {tuple(v.shape)} for {flat.shape[0]} states; "
                                    "it must return one energy per state")
        return v.reshape(lead)

    def log_prob(self, value: Tensor) -> Tensor:
        eps = 1.0 if self.eps is None else self.eps
        return -self.potential_energy(value) / eps

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        raise NotImplementedError("Boltzmann (a learned potential) cannot be drawn from directly; sample it with "
                                  "energyflow's samplers")
