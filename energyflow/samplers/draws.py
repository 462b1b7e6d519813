"""Kept draws: the post-warm-up states of every chain and their per-draw sample stats.

A run that keeps draws (``num_samples=...`` on MALA and HMC) stores every ``thin``-th
state after warm-up in preallocated buffers, ``(chains, draws, *event)`` per leaf of the
state, beside the sample stats of the same iterations, ``(chains, draws)`` each, named
as ArviZ names them:

==================  =======================================================================
``acceptance_rate``  Metropolis acceptance probability ``min(1, alpha)`` of the transition
``diverging``        bool: the proposal was non-finite, raised, or exceeded the energy bound
``energy``           the Hamiltonian after the transition (HMC; ``phi`` for MALA)
``lp``               ``log pi`` of the kept state (``-U / T`` up to a constant)
``step_size``        the step size of the transition (shared by the chains)
``n_steps``          leapfrog steps of that chain's trajectory (1 for MALA)
==================  =======================================================================

Memory is the product of the sizes: one draw of all chains costs
:func:`bytes_per_draw` bytes (the state's leaves at their dtypes, plus three floats, one
bool and one int32 per chain), allocated once at the start of sampling. A request larger
than half the memory the device has free is refused before any sampling with
:class:`DrawsMemoryError`, naming the size (half: converting to ArviZ or constraining an
``ef.model``'s draws needs room of the same order). Keeping 1,000 draws of 256 chains of
a 100-dimensional float64 state costs ``1000 * (256 * 100 * 8 + 256 * 29 + 8)`` bytes =
212.2 MB (float32: 106.8 MB).

Example:
    >>> import torch
    >>> bytes_per_draw(torch.zeros(256, 100, dtype=torch.float64))   # 204,800 state + 7,424 stats + 8
    212232
    >>> format_bytes(1000 * bytes_per_draw(torch.zeros(256, 100, dtype=torch.float64)))
    '212.2 MB'
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from energyflow import tree
from energyflow.errors import EnergyflowError, InvalidValueError
from energyflow.tree import State

if TYPE_CHECKING:  # pragma: no cover
    from energyflow.samplers.kernel import Info

__all__ = ["DrawBuffer", "DrawsMemoryError", "available_memory", "bytes_per_draw", "format_bytes"]

#: Sample stats stored per chain and draw, besides ``step_size`` (one per draw).
FLOAT_STATS = ("acceptance_rate", "energy", "lp")

#: The fraction of the device's free memory kept draws may take.
MEMORY_FRACTION = 0.5


class DrawsMemoryError(EnergyflowError, MemoryError):
    """Keeping the requested draws would not fit in memory; the message names the size.

    Attributes:
        required (int): bytes the draws and their sample stats would take.
        available (int): bytes free on the device when the run started.
    """

    def __init__(self, message: str, required: int, available: int) -> None:
        super().__init__(message)
        self.required = required
        self.available = available


def format_bytes(n: float) -> str:
    """Bytes in decimal units: ``'212.2 MB'``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000.0 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns


def _leaves(x: State) -> list[Tensor]:
    return [leaf for leaf in pytree.tree_flatten(x)[0] if isinstance(leaf, Tensor)]


def bytes_per_draw(like: State) -> int:
    """Bytes one kept draw of every chain costs: the state's leaves and the sample stats.

    Args:
        like (Tensor | dict): a batch of states, ``(B, *event)`` or a batch-first pytree.

    Returns:
        int: ``sum of the leaves' bytes + B * (3 * float size + 1 + 4) + 8``.
    """
    lead = tree.first(like)
    chains = lead.shape[0]
    states = sum(leaf.numel() * leaf.element_size() for leaf in _leaves(like))
    stats = chains * (len(FLOAT_STATS) * lead.element_size() + 1 + 4)  # + diverging (bool), n_steps (int32)
    return states + stats + 8  # step_size: one float64 per draw


def available_memory(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None where it cannot be read).

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else physical pages free.
    CUDA: ``torch.cuda.mem_get_info``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


class DrawBuffer:
    """Preallocated storage of every ``thin``-th post-warm-up state and its sample stats.

    Args:
        like (Tensor | dict): the chains' states at the start of sampling (shapes, dtypes,
            device).
        num_samples (int): post-warm-up iterations; ``num_samples // thin`` draws are kept
            (iterations ``thin - 1, 2 thin - 1, ...``, 0-based: every ``thin``-th).
        thin (int): keep every ``thin``-th iteration (>= 1).
        max_bytes (int | None): refuse more than this; default: half the device's free
            memory (nothing is refused where it cannot be read).

    Raises:
        InvalidValueError: ``thin`` < 1 or larger than ``num_samples``.
        DrawsMemoryError: the draws would not fit.

    Shapes:
        draws: ``(B, num_samples // thin, *event)`` per leaf; stats ``(B, num_samples // thin)``.
    """

    def __init__(self, like: State, num_samples: int, thin: int = 1, *, max_bytes: int | None = None) -> None:
        if thin < 1 or thin > num_samples:
            raise InvalidValueError(f"thin must lie in [1, num_samples={num_samples}], got {thin}")
        lead = tree.first(like)
        self.chains, self.thin = lead.shape[0], int(thin)
        self.size = num_samples // thin
        self.nbytes = self.size * bytes_per_draw(like)
        if max_bytes is None:
            free = available_memory(lead.device)
            max_bytes = None if free is None else int(MEMORY_FRACTION * free)
            where = f"half of the {format_bytes(free)} free on {lead.device}" if free is not None else ""
        else:
            free, where = max_bytes, f"the limit of {format_bytes(max_bytes)}"
        if max_bytes is not None and self.nbytes > max_bytes:
            raise DrawsMemoryError(
                f"keeping {self.size} draws of {self.chains} chains needs {format_bytes(self.nbytes)} "
                f"({format_bytes(bytes_per_draw(like))} per draw: states and sample stats), more than {where}: "
                "keep fewer draws (num_samples), thin them (thin=k), or run fewer chains",
                self.nbytes, free,
            )
        leaves, self._spec = pytree.tree_flatten(like)
        self._leaves = [torch.empty((self.chains, self.size, *leaf.shape[1:]), dtype=leaf.dtype, device=leaf.device)
                        if isinstance(leaf, Tensor) else leaf for leaf in leaves]
        float_kw = {"dtype": lead.dtype, "device": lead.device}
        self.stats: dict[str, Tensor] = {name: torch.empty(self.chains, self.size, **float_kw) for name in FLOAT_STATS}
        self.stats["diverging"] = torch.empty(self.chains, self.size, dtype=torch.bool, device=lead.device)
        self.stats["n_steps"] = torch.empty(self.chains, self.size, dtype=torch.int32, device=lead.device)
        self._step_size = torch.empty(self.size, dtype=torch.float64)
        self.count = 0

    def add(self, k: int, position: State, potential: Tensor, info: "Info") -> None:
        """Keeps iteration ``k`` (0-based) if it falls on the thinning grid.

        Args:
            k (int): the post-warm-up iteration.
            position (Tensor | dict): the chains after it.
            potential (Tensor): their ``phi = -log pi``, ``(B,)``.
            info (Info): what the transition did (see :class:`~energyflow.samplers.kernel.Info`).
        """
        if (k + 1) % self.thin or self.count >= self.size:
            return
        j = self.count
        for buf, leaf in zip(self._leaves, pytree.tree_flatten(position)[0]):
            if isinstance(buf, Tensor):
                buf[:, j] = leaf
        s = self.stats
        s["acceptance_rate"][:, j] = info.acceptance_prob
        s["energy"][:, j] = info.energy
        s["lp"][:, j] = -potential
        s["diverging"][:, j] = info.is_divergent
        steps = getattr(info, "steps_per_chain", None)
        s["n_steps"][:, j] = steps if steps is not None else info.num_integration_steps
        self._step_size[j] = info.step_size
        self.count += 1

    def draws(self) -> State:
        """The kept states, ``(B, draws, *event)`` per leaf, in the structure of the state."""
        return pytree.tree_unflatten([leaf[:, : self.count] if isinstance(leaf, Tensor) else leaf
                                      for leaf in self._leaves], self._spec)

    def sample_stats(self, scale: float = 1.0) -> dict[str, Tensor]:
        """The kept sample stats, ``(B, draws)`` each (``step_size`` expanded, no copy).

        Args:
            scale (float): the kernel's step size over the reported one (MALA's ``T``).
        """
        out = {k: v[:, : self.count] for k, v in self.stats.items()}
        step = (self._step_size[: self.count] / scale).to(self.stats["energy"].device)
        out["step_size"] = step.unsqueeze(0).expand(self.chains, self.count)
        return out
