"""Compile energy terms into one differentiable scalar field.

``compile(expr)`` returns a :class:`Field` whose ``energy``, ``grad`` and
``energy_and_grad`` evaluate the whole sum (with each term coupled to the temperature
as it declares) in one autograd pass. On first use the field checks every term's output
shape, dtype and finiteness and raises errors that name the term at fault.

Example:
    >>> import torch
    >>> import energyflow as ef
    >>> V = ef.GaussianPotential(torch.zeros(2), torch.eye(2))
    >>> field = ef.compile(V + ef.Repulsion(sigma=2.0))
    >>> e, g = field.energy_and_grad(torch.randn(8, 2), eps=0.5)
    >>> e.shape, g.shape
    (torch.Size([8]), torch.Size([8, 2]))
"""

from __future__ import annotations

import torch
from torch import Tensor

from energyflow import tree
from energyflow.energies.base import Energy
from energyflow.errors import InvalidTypeError, InvalidValueError
from energyflow.spaces import Euclidean, ProductSpace, Space
from energyflow.tree import State


def default_space(x: State) -> Space:
    """The space a state lives in when none is given: Euclidean, per coordinate leaf for dicts."""
    if isinstance(x, Tensor):
        return Euclidean(tuple(x.shape[1:]))
    return ProductSpace({k: Euclidean(tuple(v.shape[1:])) for k, v in x.items() if tree.is_coordinate(v)})


class FieldError(InvalidValueError):
    """A term of a field misbehaved (wrong shape or dtype, NaN/inf) or the input is bad."""


class Field:
    """The compiled scalar field ``U(x, eps) = sum_energy V + eps * sum_tempered W``.

    Args:
        expr (Energy): the energy expression.
        space (Space | None): the state space; inferred as Euclidean on first use if None.

    Attributes:
        expr (Energy): the expression (an ``nn.Module``: move it with ``field.to(device)``).
        num_grad_evals (int): gradient evaluations so far (for cost accounting).
    """

    def __init__(self, expr: Energy, space: Space | None = None) -> None:
        if not isinstance(expr, Energy):
            raise InvalidTypeError(f"compile() needs an Energy expression, got {type(expr).__name__}")
        self.expr = expr
        self.space = space
        self._checked: set[tuple] = set()
        self.num_grad_evals = 0

    # --- checks ---------------------------------------------------------------------------
    def _check_input(self, x: State) -> None:
        if isinstance(x, dict):
            return self._check_tree_input(x)
        if not isinstance(x, Tensor):
            raise FieldError(
                f"x must be a tensor of shape (B, *event) or a dict of such tensors, got {type(x).__name__}"
            )
        if x.dim() < 2:
            raise FieldError(
                f"x must have a batch dimension: shape (B, *event), got {tuple(x.shape)}; "
                "use x.unsqueeze(0) for one sample or x.unsqueeze(-1) for scalar states"
            )
        if x.shape[0] == 0:
            raise FieldError(f"x is an empty batch (shape {tuple(x.shape)}); give at least one state")
        if not x.is_floating_point():
            raise FieldError(f"x must be a floating-point tensor, got {x.dtype}")
        if self.space is not None and tuple(x.shape[1:]) != tuple(self.space.event_shape):
            raise FieldError(
                f"x has event shape {tuple(x.shape[1:])} but the field's space expects "
                f"{tuple(self.space.event_shape)}"
            )
        if not torch.isfinite(x).all():
            raise FieldError("x contains NaN or inf; check the initial states or the step size")

    def _check_tree_input(self, x: dict) -> None:
        """A pytree state: a dict of batch-first tensors with at least one floating-point leaf."""
        bad = [k for k, v in x.items() if not isinstance(v, Tensor)]
        if bad:
            raise FieldError(f"every leaf of a dict state must be a tensor; {bad[0]!r} is {type(x[bad[0]]).__name__}")
        if not tree.coordinates(x):
            raise FieldError("a dict state needs at least one floating-point leaf (the coordinates)")
        try:
            n = tree.batch_size(x)
        except InvalidValueError as err:
            raise FieldError(str(err)) from err
        if n == 0:
            raise FieldError("x is an empty batch; give at least one state")
        if self.space is not None:
            shapes = self.space.event_shape
            if not isinstance(shapes, dict):
                raise FieldError(f"the field's space {self.space!r} takes tensor states, got a dict")
            for k, shape in shapes.items():
                if k not in x:
                    raise FieldError(f"the state has no leaf {k!r}; the field's space expects {sorted(shapes)}")
                if tuple(x[k].shape[1:]) != tuple(shape):
                    raise FieldError(f"leaf {k!r} has event shape {tuple(x[k].shape[1:])}, the space expects {tuple(shape)}")
            extra = [k for k, v in x.items() if k not in shapes and v.is_floating_point()]
            if extra:
                raise FieldError(f"floating-point leaf {extra[0]!r} is not in the field's space {self.space!r}")
        if not bool(tree.isfinite(x).all()):
            raise FieldError("x contains NaN or inf; check the initial states or the step size")

    def check(self, x: State, eps: float | Tensor = 1.0) -> None:
        """Evaluates every term on ``x`` and raises :class:`FieldError` naming a bad one."""
        self._check_input(x)
        n, lead = tree.batch_size(x), tree.first(x)
        with torch.no_grad():
            for weight, leaf in self.expr.leaves():
                try:
                    e = leaf(x)
                except FieldError:
                    raise
                except (ValueError, TypeError) as err:
                    raise FieldError(f"term {leaf.name}: {err}") from err
                except RuntimeError as err:
                    raise FieldError(
                        f"term {leaf.name} failed on input of shape {tree.describe(x)} ({lead.device}): {err}"
                    ) from err
                if not isinstance(e, Tensor) or e.shape != (n,):
                    shape = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                    raise FieldError(
                        f"term {leaf.name} returned {shape} for a batch of {n}; every "
                        "energy term must return one energy per sample, shape (B,)"
                    )
                if e.dtype != lead.dtype:
                    raise FieldError(
                        f"term {leaf.name} returned {e.dtype} for {lead.dtype} input; keep the term's "
                        "parameters in the input's dtype (field.to(dtype))"
                    )
                bad = ~torch.isfinite(e)
                if bad.any():
                    idx = bad.nonzero()[:5].flatten().tolist()
                    raise FieldError(f"term {leaf.name} (weight {weight:g}) is NaN or inf at samples {idx}")
        if self.space is None:
            self.space = default_space(x)

    def nonfinite_terms(self, x: State, eps: float | Tensor = 1.0) -> list[str]:
        """Names of the terms whose energy or gradient is NaN/inf somewhere on ``x``."""
        names = []
        for _, leaf in self.expr.leaves():
            xr, coords = tree.requires_grad(x)
            with torch.enable_grad():
                try:
                    e = leaf(xr)
                    grads = torch.autograd.grad(e.sum(), coords, allow_unused=True)
                except RuntimeError:
                    names.append(leaf.name)
                    continue
            if not torch.isfinite(e).all() or any(g is not None and not torch.isfinite(g).all() for g in grads):
                names.append(leaf.name)
        if not bool(tree.isfinite(x).all()):
            names.append("<the state itself>")
        return names

    def _maybe_check(self, x: State, eps) -> None:
        if isinstance(x, Tensor):
            key = (tuple(x.shape[1:]), x.dtype, x.device)
        elif isinstance(x, dict) and all(isinstance(v, Tensor) for v in x.values()):
            key = tuple((k, tuple(v.shape[1:]), v.dtype, v.device) for k, v in x.items())
        else:
            self._check_input(x)  # raises the FieldError that explains what x must be
            return
        if key not in self._checked:
            self.check(x, eps)
            self._checked.add(key)

    # --- evaluation -----------------------------------------------------------------------
    def energy(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        """U(x, eps) per sample.

        Args:
            x (Tensor): shape ``(B, *event)``.
            eps (float | Tensor): temperature; tempered terms are multiplied by it.

        Returns:
            Tensor: shape ``(B,)``.
        """
        self._maybe_check(x, eps)
        return self.expr.total(x, eps)

    def energy_and_grad(
        self, x: Tensor, eps: float | Tensor = 1.0, create_graph: bool = False
    ) -> tuple[Tensor, Tensor]:
        """U(x, eps) and its gradient in x, one forward and one backward pass.

        Args:
            x (Tensor): shape ``(B, *event)``.
            eps (float | Tensor): temperature.
            create_graph (bool): keep the graph of the gradient (for losses on -grad V).

        Returns:
            tuple[Tensor, Tensor]: energies ``(B,)`` and the gradient on the field's space
            ``(B, *event)``: the ambient gradient projected onto the directions the space
            allows (``space.tangent``; unchanged on Euclidean spaces), which is the drift
            under which samplers on a constrained space have the right stationary law.
        """
        self._maybe_check(x, eps)
        if not isinstance(x, Tensor):
            return self._tree_energy_and_grad(x, eps, create_graph)
        xr = x if (create_graph and x.requires_grad) else x.detach().requires_grad_(True)
        with torch.enable_grad():
            e = self.expr.total(xr, eps)
            (g,) = torch.autograd.grad(e.sum(), xr, create_graph=create_graph)
            g = self.space.tangent(g)
        self.num_grad_evals += 1
        return (e if create_graph else e.detach()), g

    def _tree_energy_and_grad(self, x: dict, eps, create_graph: bool) -> tuple[Tensor, dict]:
        if create_graph and all(c.requires_grad for c in tree.coordinates(x)):
            xr, coords = x, tree.coordinates(x)
        else:
            xr, coords = tree.requires_grad(x)
        with torch.enable_grad():
            e = self.expr.total(xr, eps)
            g = self.space.tangent(tree.grad(e.sum(), x, coords, create_graph))
        self.num_grad_evals += 1
        return (e if create_graph else e.detach()), g

    def grad(self, x: Tensor, eps: float | Tensor = 1.0, create_graph: bool = False) -> Tensor:
        """Gradient of U(x, eps) on the field's space, shape ``(B, *event)`` (see :meth:`energy_and_grad`)."""
        return self.energy_and_grad(x, eps, create_graph)[1]

    def __call__(self, x: Tensor, eps: float | Tensor = 1.0) -> Tensor:
        return self.energy(x, eps)

    def to(self, *args, **kwargs) -> "Field":
        """Moves the terms' parameters and buffers (device or dtype); returns self."""
        self.expr.to(*args, **kwargs)
        self._checked.clear()
        return self

    def __repr__(self) -> str:
        return f"Field(space={self.space!r}, expr={self.expr!r})"


def compile(expr: Energy, space: Space | None = None) -> Field:  # noqa: A001 - the DSL's verb
    """Compiles an energy expression into a :class:`Field`.

    Args:
        expr (Energy): a term or a sum of weighted terms.
        space (Space | None): state space; Euclidean by default.

    Returns:
        Field: the differentiable scalar field samplers consume.
    """
    return Field(expr, space)
