"""Energy terms and their algebra.

Every term is an ``nn.Module`` mapping a batch ``x`` of shape ``(B, *event)`` to
per-sample energies of shape ``(B,)``. Terms compose with ``+``, scalar ``*`` and
``sum(...)``; nested sums are flattened.

Each term declares how it couples to the temperature eps (DESIGN.md, section 2):

* ``"energy"`` terms (the learned potential) enter the total as they are; the density
  at temperature eps is ``exp(-V / eps)``.
* ``"tempered"`` terms are negative log-densities (likelihoods, priors, interactions)
  and enter multiplied by eps, so at every temperature the stationary density is
  ``exp(-V/eps) * p(y | x) * prior(x) * exp(-W)``.

``term.tempered()`` and ``term.fixed()`` override a term's coupling.

Example:
    >>> import torch
    >>> from energyflow.energies import GaussianPotential, Prior
    >>> V = GaussianPotential(torch.zeros(2), torch.eye(2))
    >>> prior = Prior(torch.distributions.Normal(0.0, 1.0))
    >>> U = V + 0.5 * prior
    >>> x = torch.ones(3, 2)
    >>> U.total(x, eps=2.0).shape
    torch.Size([3])
    >>> [type(t).__name__ for _, t in U.leaves()]
    ['GaussianPotential', 'Prior']
"""

from __future__ import annotations

import numbers
from typing import Iterator, Literal

import torch
from torch import Tensor, nn

from energyflow.errors import InvalidTypeError, InvalidValueError

Coupling = Literal["energy", "tempered"]


class Energy(nn.Module):
    """Base class of energy terms.

    Subclasses implement :meth:`forward` returning per-sample energies ``(B,)`` and set
    the class attribute ``coupling``.

    Attributes:
        coupling (str): ``"energy"`` or ``"tempered"`` (see the module docstring).
        name (str): label used in error messages and diagnostics.
    """

    coupling: Coupling = "energy"
    couples_batch: bool = False  # True for interaction terms (energy depends on other samples)

    @property
    def name(self) -> str:
        return getattr(self, "_label", None) or type(self).__name__

    def named(self, label: str) -> "Energy":
        """Sets the label used for this term in errors and diagnostics; returns self."""
        self._label = str(label)
        return self

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise InvalidTypeError(f"{type(self).__name__} is not a complete energy term: define forward(x) -> (B,)")

    # --- evaluation with temperature -------------------------------------------------
    def total(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        """Energy at temperature ``eps``: ``forward(x)`` times eps if tempered.

        Args:
            x (Tensor): shape ``(B, *event)``.
            eps (float | Tensor): temperature, a number or a 0-d tensor.

        Returns:
            Tensor: shape ``(B,)``.
        """
        e = self(x)
        return e * eps if self.coupling == "tempered" else e

    def leaves(self) -> Iterator[tuple[float, "Energy"]]:
        """Yields ``(weight, leaf_term)`` pairs; a leaf yields itself with weight 1."""
        yield 1.0, self

    # --- coupling overrides ---------------------------------------------------------
    def tempered(self) -> "Energy":
        """This term treated as a negative log-density (multiplied by eps)."""
        return Recoupled(self, "tempered")

    def fixed(self) -> "Energy":
        """This term treated as an energy (not multiplied by eps)."""
        return Recoupled(self, "energy")

    # --- algebra ----------------------------------------------------------------------
    def __add__(self, other: object) -> "Energy":
        if isinstance(other, numbers.Number) and other == 0:
            return self  # lets the builtin sum() start from 0
        if not isinstance(other, Energy):
            return NotImplemented
        return Sum([self, other])

    def __radd__(self, other: object) -> "Energy":
        if isinstance(other, numbers.Number) and other == 0:
            return self
        if not isinstance(other, Energy):
            return NotImplemented
        return Sum([other, self])

    def __mul__(self, weight: object) -> "Energy":
        if isinstance(weight, bool) or not isinstance(weight, (numbers.Real, Tensor)):
            return NotImplemented
        if isinstance(weight, Tensor) and weight.numel() != 1:
            raise InvalidValueError("an energy can only be scaled by a scalar")
        return Scaled(self, float(weight))

    __rmul__ = __mul__

    def __neg__(self) -> "Energy":
        return Scaled(self, -1.0)

    def __sub__(self, other: object) -> "Energy":
        if not isinstance(other, Energy):
            return NotImplemented
        return self + (-other)

    def extra_repr(self) -> str:
        return f"coupling={self.coupling}"


class Recoupled(Energy):
    """A term with its temperature coupling overridden (see :meth:`Energy.tempered`)."""

    def __init__(self, term: Energy, coupling: Coupling) -> None:
        super().__init__()
        if coupling not in ("energy", "tempered"):
            raise InvalidValueError(f"coupling must be 'energy' or 'tempered', got {coupling!r}")
        inner = term.term if isinstance(term, Recoupled) else term
        if isinstance(inner, (Sum, Scaled)):
            raise InvalidTypeError("recouple individual terms, not sums: (a + b).tempered() is ambiguous")
        self.term = inner
        self.coupling = coupling
        self.couples_batch = inner.couples_batch

    @property
    def name(self) -> str:
        return getattr(self, "_label", None) or self.term.name

    def forward(self, x: Tensor) -> Tensor:
        return self.term(x)


class Scaled(Energy):
    """``weight * term``; nested scalings multiply out."""

    def __init__(self, term: Energy, weight: float) -> None:
        super().__init__()
        if isinstance(term, Scaled):
            weight, term = weight * term.weight, term.term
        self.term = term
        self.weight = float(weight)

    def forward(self, x: Tensor) -> Tensor:
        return self.weight * self.term(x)

    def total(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        return self.weight * self.term.total(x, eps)

    def leaves(self) -> Iterator[tuple[float, Energy]]:
        for w, leaf in self.term.leaves():
            yield self.weight * w, leaf

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


class Sum(Energy):
    """A sum of terms; nested sums are flattened so ``(a + b) + c`` has three children."""

    def __init__(self, terms: list[Energy]) -> None:
        super().__init__()
        flat: list[Energy] = []
        for t in terms:
            if not isinstance(t, Energy):
                raise InvalidTypeError(f"can only add Energy terms, got {type(t).__name__}")
            flat.extend(t.terms if isinstance(t, Sum) else [t])
        self.terms = nn.ModuleList(flat)

    def forward(self, x: Tensor) -> Tensor:
        return sum(t(x) for t in self.terms)  # type: ignore[return-value]

    def total(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        out = self.terms[0].total(x, eps)
        for t in self.terms[1:]:
            out = out + t.total(x, eps)
        return out

    def leaves(self) -> Iterator[tuple[float, Energy]]:
        for t in self.terms:
            yield from t.leaves()

    def extra_repr(self) -> str:
        return f"{len(self.terms)} terms"


def flatten_event(x: Tensor) -> Tensor:
    """``(B, *event) -> (B, prod(event))``."""
    return x.reshape(x.shape[0], -1)
