"""Observation likelihoods written the Pyro way.

``observe(fn)`` traces ``fn(x)`` with ``pyro.poutine.trace``, sums the log-probabilities
of its observed sites and returns ``-log p(y | x)`` per sample. The term is
``"tempered"``: inside a sampler it is multiplied by eps(t), as in the paper's
conditional sampler.

Example:
    >>> import torch, pyro
    >>> import pyro.distributions as dist
    >>> A = torch.tensor([[1.0, 0.0]])
    >>> y = torch.tensor([0.5])
    >>> def likelihood(x):                      # x: (B, 2)
    ...     pyro.sample("y", dist.Normal(x @ A.T, 0.1).to_event(1), obs=y)
    >>> term = observe(likelihood)
    >>> term(torch.zeros(4, 2)).shape
    torch.Size([4])
    >>> same = observe(y, forward=A, noise=0.1)  # the Gaussian shortcut
    >>> bool(torch.allclose(term(torch.ones(4, 2)), same(torch.ones(4, 2))))
    True
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from energyflow.energies.base import Energy
from energyflow.errors import InvalidTypeError, InvalidValueError


class ObservationError(InvalidValueError):
    """An observation's likelihood cannot be reduced to one number per sample."""


class Observation(Energy):
    """``-log p(y | x)`` from a Pyro model ``fn(x)`` with observed sample sites.

    Args:
        fn (Callable[[Tensor], None]): calls ``pyro.sample(name, dist, obs=y)`` for each
            observation; its distributions must have batch shape ``(B,)`` (use
            ``.to_event(k)`` for the event dimensions).
        name (str | None): label for errors.

    Shapes:
        x: ``(B, *event)`` -> ``(B,)``
    """

    coupling = "tempered"

    def __init__(self, fn: Callable[[Tensor], object], name: str | None = None) -> None:
        super().__init__()
        if not callable(fn):
            raise InvalidTypeError(f"observe() needs a function of x, got {type(fn).__name__}")
        self.fn = fn
        self._label = name or f"observe({getattr(fn, '__name__', 'fn')})"

    def forward(self, x: Tensor) -> Tensor:
        from pyro import poutine
        from pyro.poutine.util import site_is_subsample

        trace = poutine.trace(self.fn).get_trace(x)
        total: Tensor | None = None
        batch = x.shape[0]
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):  # a pyro.plate's own site
                continue
            if not site["is_observed"]:
                raise ObservationError(
                    f"{self.name}: site {site['name']!r} is not observed; an observation model "
                    "may only sample observed sites (pass obs=...); for latent sites use ef.model"
                )
            plates = [f for f in site["cond_indep_stack"] if f.vectorized]
            if not plates:
                _check_observed_shape(self.name, site["name"], site["fn"], site["value"])
            lp = site["fn"].log_prob(site["value"])
            if site.get("mask") is not None:
                lp = lp * site["mask"]
            scale = site.get("scale", 1.0)
            if plates and lp.dim() > 1 and lp.shape[0] == batch:
                # Inside pyro.plate the data dimensions are batch dimensions of the site:
                # sum them, keeping one value per sample (the leading dimension).
                lp = lp.reshape(batch, -1).sum(1)
            if lp.shape != (batch,):
                raise ObservationError(
                    f"{self.name}: site {site['name']!r} has log-prob of shape {tuple(lp.shape)}, "
                    f"expected ({batch},), one value per sample. Declare the observation's "
                    f"dimensions as events, e.g. dist.Normal(...).to_event({max(lp.dim() - 1, 1)}), "
                    "or put them in a pyro.plate to the right of the sample dimension"
                )
            lp = lp * scale
            total = lp if total is None else total + lp
        if total is None:
            raise ObservationError(f"{self.name}: the function observed nothing (no pyro.sample(..., obs=y))")
        return -total


def _check_observed_shape(term: str, site: str, distribution, value: Tensor) -> None:
    """``y`` must have the distribution's event shape exactly; leading dimensions may be
    missing or 1 (one ``y`` shared by all samples), never more than the batch holds.

    ``log_prob`` would broadcast anything else without a word: three measurements
    scored against one prediction, or one measurement against five.
    """
    event, batch = tuple(distribution.event_shape), tuple(distribution.batch_shape)
    shape = tuple(value.shape) if isinstance(value, Tensor) else ()
    lead = len(shape) - len(event)
    fits = (
        lead >= 0
        and shape[lead:] == event
        and lead <= len(batch)
        and all(a in (1, b) for a, b in zip(reversed(shape[:lead]), reversed(batch)))
    )
    if not fits:
        raise ObservationError(
            f"{term}: site {site!r} observes y of shape {shape}, but its distribution has batch shape {batch} "
            f"and event shape {event}; y must have shape {event} (one observation shared by every sample) or "
            f"{batch + event}, else log_prob broadcasts the two silently"
        )


def observe(
    fn_or_y: Callable[[Tensor], object] | Tensor,
    forward: Callable[[Tensor], Tensor] | Tensor | None = None,
    noise: float | Tensor | None = None,
    *,
    name: str | None = None,
) -> Observation:
    """Builds an observation term, ``-log p(y | x)`` per sample.

    Two forms:

    * ``observe(fn)``: ``fn(x)`` is a Pyro model that observes data with
      ``pyro.sample(..., obs=y)``.
    * ``observe(y, forward=A, noise=sigma)``: the Gaussian case
      ``y ~ Normal(A(x), sigma)``; ``A`` is a matrix applied to flattened ``x``
      (``(m, d)``) or a function ``(B, *event) -> (B, *y.shape)``.

    Args:
        fn_or_y: a Pyro model of ``x``, or the observed data ``y`` (shape ``y.shape``).
        forward: the forward operator (Gaussian shortcut only).
        noise: the noise standard deviation (Gaussian shortcut only).
        name: label for errors and diagnostics.

    Returns:
        Observation: a tempered energy term.
    """
    if forward is None and noise is None:
        return Observation(fn_or_y, name=name)  # type: ignore[arg-type]
    if forward is None or noise is None:
        raise InvalidTypeError("the Gaussian shortcut needs both forward= and noise=")
    y = torch.as_tensor(fn_or_y)
    if not torch.isfinite(y).all():
        raise InvalidValueError("observed data y contains NaN or inf")
    sigma = torch.as_tensor(noise, dtype=y.dtype)
    if (sigma <= 0).any():
        raise InvalidValueError(f"noise must be > 0, got {noise}")
    if isinstance(forward, Tensor):
        matrix = forward
        if matrix.dim() != 2 or matrix.shape[0] != y.numel():
            raise InvalidValueError(
                f"forward matrix must be (m, d) with m = y.numel() = {y.numel()}, got {tuple(matrix.shape)}"
            )

        def apply(x: Tensor) -> Tensor:
            return (x.reshape(x.shape[0], -1) @ matrix.to(x.dtype).T).reshape(x.shape[0], *y.shape)

    elif callable(forward):
        apply = forward
    else:
        raise InvalidTypeError("forward must be a matrix or a function of x")

    event_dims = max(y.dim(), 1)

    def gaussian_likelihood(x: Tensor) -> None:
        import pyro
        import pyro.distributions as dist

        mean = apply(x)
        if mean.dim() == 1:
            mean = mean.unsqueeze(-1)
        obs = y.to(device=mean.device, dtype=mean.dtype).reshape(mean.shape[1:])
        pyro.sample("y", dist.Normal(mean, sigma.to(mean.device, mean.dtype)).to_event(event_dims), obs=obs)

    gaussian_likelihood.__name__ = "gaussian"
    return Observation(gaussian_likelihood, name=name)
