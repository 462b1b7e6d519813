"""Plots: energy landscapes, samples, trajectories, image grids and loss curves.

Figures are built directly as :class:`matplotlib.figure.Figure` objects with an Agg
canvas attached, without ``pyplot``: nothing here opens a window or changes the global
matplotlib backend, so plotting is safe on headless machines and inside training
loops. Every function returns the Figure it drew on (the one owning ``ax`` when an
axes is passed in); write it with :func:`save_figure`.

Example:
    >>> import torch
    >>> from energyflow.plotting import plot_energy_landscape
    >>> fig = plot_energy_landscape(lambda x: 0.5 * (x ** 2).sum(1), resolution=20)
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

from energyflow.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "new_figure",
    "plot_energy_landscape",
    "plot_graph_grid",
    "plot_image_grid",
    "plot_loss_curves",
    "plot_samples",
    "plot_trajectories",
    "save_figure",
]

SAMPLE_COLOR = "tab:orange"
DATA_COLOR = "tab:blue"
PHASE2_LABEL = "phase 2 (contrastive divergence) begins at step {step}"


def _color_name(color: str) -> str:
    """``"tab:orange"`` -> ``"orange"``: the colour as a word for titles."""
    return color.removeprefix("tab:")


def _check_axis_labels(axis_labels: tuple[str, str]) -> None:
    if isinstance(axis_labels, str) or not isinstance(axis_labels, Sequence) or len(axis_labels) != 2:
        raise InvalidValueError(f"axis_labels must be a pair of strings (x, y), got {axis_labels!r}")


def _label_axes(ax: Axes, title: str | None, default_title: str, axis_labels: tuple[str, str]) -> None:
    """Sets the title (``None``: ``default_title``; ``""``: none) and the x/y axis labels."""
    ax.set_title(default_title if title is None else title)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])


def new_figure(figsize: tuple[float, float] = (5.0, 5.0), dpi: int = 100) -> tuple[Figure, Axes]:
    """A new Figure with one Axes and an Agg canvas (no pyplot, no window).

    Example:
        >>> fig, ax = new_figure()
        >>> fig.canvas.__class__.__name__
        'FigureCanvasAgg'
    """
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _figure_and_axes(ax: Axes | None, figsize: tuple[float, float] = (5.0, 5.0)) -> tuple[Figure, Axes]:
    if ax is None:
        return new_figure(figsize)
    if not isinstance(ax, Axes):
        raise InvalidTypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    fig = ax.get_figure(root=True) if _GET_FIGURE_HAS_ROOT else ax.figure
    return fig, ax


_GET_FIGURE_HAS_ROOT = "root" in inspect.signature(Axes.get_figure).parameters  # matplotlib >= 3.10


def _to_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _points(x: Any, name: str) -> np.ndarray:
    a = _to_numpy(x, name)
    if a.ndim != 2 or a.shape[1] != 2:
        raise InvalidValueError(f"{name} must have shape (N, 2) (2-D points), got {tuple(a.shape)}")
    return a


def _scatter(ax: Axes, pts: np.ndarray, color: str, label: str, max_points: int = 5000) -> None:
    pts = pts[:max_points]
    size = 4.0 if pts.shape[0] > 500 else 10.0
    ax.scatter(pts[:, 0], pts[:, 1], s=size, c=color, alpha=0.6, linewidths=0, label=label)


def plot_energy_landscape(
    energy_fn: Callable[[Tensor], Tensor],
    ax: Axes | None = None,
    lim: float = 4.0,
    resolution: int = 200,
    samples: Tensor | None = None,
    data: Tensor | None = None,
    chunk_size: int = 65536,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("x1", "x2"),
) -> Figure:
    """Heat map and contours of a 2-D energy ``V`` on ``[-lim, lim]^2``.

    ``energy_fn`` is evaluated under ``torch.no_grad()`` on a ``resolution x resolution``
    grid, in chunks of ``chunk_size`` points. If it is an ``nn.Module`` with parameters,
    the grid is built on the device and in the dtype of its first parameter. Energies
    are shifted so that the minimum on the grid is 0.

    Args:
        energy_fn (Callable[[Tensor], Tensor]): maps points ``(N, 2)`` to energies
            ``(N,)`` (or ``(N, 1)``).
        ax (Axes | None): axes to draw on; a new figure if ``None``.
        lim (float): half-width of the square window.
        resolution (int): grid points per axis (>= 2).
        samples (Tensor | None): generated points ``(M, 2)`` to overlay.
        data (Tensor | None): data points ``(K, 2)`` to overlay.
        chunk_size (int): grid points per call of ``energy_fn``.
        title (str | None): axes title; ``None`` gives ``"energy landscape"``, followed by
            e.g. ``" with samples (orange) and data (blue)"`` for the overlays, ``""`` none.
        axis_labels (tuple[str, str]): labels of the x and y axes.

    Returns:
        Figure: the figure drawn on.

    Raises:
        ValueError: bad ``lim``/``resolution``, overlay points not ``(N, 2)``, or
            ``energy_fn`` not returning one finite-shaped energy per point.

    Example:
        >>> fig = plot_energy_landscape(lambda x: x.norm(dim=1), resolution=16, samples=torch.zeros(3, 2))
        >>> len(fig.axes) >= 1
        True
        >>> fig.axes[0].get_title(), fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
        ('energy landscape with samples (orange)', 'x1', 'x2')
    """
    if not callable(energy_fn):
        raise InvalidTypeError(f"energy_fn must be callable (N, 2) -> (N,), got {type(energy_fn).__name__}")
    if not (lim > 0 and math.isfinite(lim)):
        raise InvalidValueError(f"lim must be a positive finite number, got {lim}")
    if int(resolution) < 2:
        raise InvalidValueError(f"resolution must be at least 2, got {resolution}")
    resolution = int(resolution)
    _check_axis_labels(axis_labels)
    sample_pts = _points(samples, "samples") if samples is not None else None
    data_pts = _points(data, "data") if data is not None else None

    device, dtype = torch.device("cpu"), torch.get_default_dtype()
    if isinstance(energy_fn, nn.Module):
        p = next(iter(energy_fn.parameters()), None)
        if p is not None:
            device, dtype = p.device, p.dtype
    axis = torch.linspace(-lim, lim, resolution, device=device, dtype=dtype)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    values = []
    with torch.no_grad():
        for chunk in grid.split(max(int(chunk_size), 1)):
            v = energy_fn(chunk)
            if not isinstance(v, Tensor):
                raise InvalidValueError(f"energy_fn must return a Tensor, got {type(v).__name__}")
            if v.dim() == 2 and v.shape[1] == 1:
                v = v.squeeze(1)
            if v.shape != (chunk.shape[0],):
                raise InvalidValueError(
                    f"energy_fn must map points (N, 2) to energies (N,), got {tuple(v.shape)} for N={chunk.shape[0]}"
                )
            values.append(v.detach().to("cpu", torch.float64))
    energy = torch.cat(values).reshape(resolution, resolution).numpy()
    finite = np.isfinite(energy)
    if finite.any():
        energy = energy - energy[finite].min()

    fig, ax = _figure_and_axes(ax)
    extent = (-lim, lim, -lim, lim)
    image = ax.imshow(energy, origin="lower", extent=extent, cmap="viridis", aspect="equal")
    if finite.all() and np.ptp(energy) > 0:
        ax.contour(axis.cpu().numpy(), axis.cpu().numpy(), energy, levels=12, colors="white",
                   linewidths=0.5, alpha=0.5)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="V - min V")
    if data_pts is not None:
        _scatter(ax, data_pts, DATA_COLOR, "data")
    if sample_pts is not None:
        _scatter(ax, sample_pts, SAMPLE_COLOR, "samples")
    if data_pts is not None or sample_pts is not None:
        ax.legend(loc="upper right", fontsize="small", markerscale=2)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    overlays = [f"{name} ({_color_name(color)})" for name, color, pts in
                (("samples", SAMPLE_COLOR, sample_pts), ("data", DATA_COLOR, data_pts)) if pts is not None]
    default_title = "energy landscape" + (" with " + " and ".join(overlays) if overlays else "")
    _label_axes(ax, title, default_title, axis_labels)
    return fig


def plot_samples(
    samples: Tensor,
    reference: Tensor | None = None,
    ax: Axes | None = None,
    lim: float | None = 4.0,
    title: str | None = None,
    reference_label: str = "reference",
    axis_labels: tuple[str, str] = ("x1", "x2"),
) -> Figure:
    """Scatter plot of 2-D samples (orange), optionally over reference data (blue).

    Args:
        samples (Tensor): shape ``(N, 2)``.
        reference (Tensor | None): shape ``(M, 2)``, drawn underneath.
        ax (Axes | None): axes to draw on; a new figure if ``None``.
        lim (float | None): axis limits ``[-lim, lim]``; ``None`` autoscales.
        title (str | None): axes title; ``None`` gives ``"samples (orange) vs <reference_label>
            (blue)"`` (just ``"samples"`` without ``reference``), ``""`` none.
        reference_label (str): name of ``reference`` in the legend and default title
            (e.g. ``"data"``).
        axis_labels (tuple[str, str]): labels of the x and y axes.

    Returns:
        Figure: the figure drawn on.

    Example:
        >>> fig = plot_samples(torch.randn(10, 2, generator=torch.Generator().manual_seed(0)),
        ...                    reference=torch.zeros(5, 2), reference_label="data")
        >>> len(fig.axes), fig.axes[0].get_title()
        (1, 'samples (orange) vs data (blue)')
    """
    pts = _points(samples, "samples")
    ref = _points(reference, "reference") if reference is not None else None
    _check_axis_labels(axis_labels)
    fig, ax = _figure_and_axes(ax)
    if ref is not None:
        _scatter(ax, ref, DATA_COLOR, reference_label)
    _scatter(ax, pts, SAMPLE_COLOR, "samples")
    if ref is not None:
        ax.legend(loc="upper right", fontsize="small", markerscale=2)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    default_title = "samples"
    if ref is not None:
        default_title = (f"samples ({_color_name(SAMPLE_COLOR)}) vs {reference_label} "
                         f"({_color_name(DATA_COLOR)})")
    _label_axes(ax, title, default_title, axis_labels)
    return fig


def plot_trajectories(
    trajectory: Tensor,
    ax: Axes | None = None,
    max_paths: int = 200,
    lim: float | None = 4.0,
    title: str | None = None,
    axis_labels: tuple[str, str] = ("x1", "x2"),
) -> Figure:
    """Paths of 2-D particles through time, with start and end points marked.

    Args:
        trajectory (Tensor): shape ``(T, B, 2)``: ``T`` recorded times of ``B`` particles
            (the layout of ``SampleResult.trajectory``).
        ax (Axes | None): axes to draw on; a new figure if ``None``.
        max_paths (int): draw at most the first ``max_paths`` particles.
        lim (float | None): axis limits ``[-lim, lim]``; ``None`` autoscales.
        title (str | None): axes title; ``None`` gives ``"sampler trajectories (N paths)"``,
            ``""`` none.
        axis_labels (tuple[str, str]): labels of the x and y axes.

    Returns:
        Figure: the figure drawn on.

    Raises:
        ValueError: ``trajectory`` is not ``(T, B, 2)`` or ``max_paths < 1``.

    Example:
        >>> traj = torch.linspace(0, 1, 5).reshape(5, 1, 1) * torch.ones(5, 3, 2)
        >>> fig = plot_trajectories(traj)
        >>> len(fig.axes), fig.axes[0].get_title()
        (1, 'sampler trajectories (3 paths)')
    """
    traj = _to_numpy(trajectory, "trajectory")
    if traj.ndim != 3 or traj.shape[2] != 2 or traj.shape[0] < 1:
        raise InvalidValueError(
            f"trajectory must have shape (T, B, 2) (times, particles, 2-D), got {tuple(traj.shape)}"
        )
    if int(max_paths) < 1:
        raise InvalidValueError(f"max_paths must be at least 1, got {max_paths}")
    _check_axis_labels(axis_labels)
    traj = traj[:, : int(max_paths)]
    fig, ax = _figure_and_axes(ax)
    from matplotlib.collections import LineCollection

    segments = np.transpose(traj, (1, 0, 2))  # (B, T, 2)
    ax.add_collection(LineCollection(list(segments), colors="0.4", linewidths=0.5, alpha=0.5))
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=6, c="black", alpha=0.7, linewidths=0, label="start")
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=6, c=SAMPLE_COLOR, alpha=0.9, linewidths=0, label="end")
    ax.legend(loc="upper right", fontsize="small", markerscale=2)
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    else:
        ax.autoscale_view()
    ax.set_aspect("equal")
    n_paths = traj.shape[1]
    _label_axes(ax, title, f"sampler trajectories ({n_paths} path{'s' if n_paths != 1 else ''})", axis_labels)
    return fig


def plot_image_grid(images: Tensor, nrow: int = 8, padding: int = 2, title: str | None = None) -> Figure:
    """A grid of images with pixel values in ``[-1, 1]`` (clipped outside).

    Args:
        images (Tensor): shape ``(B, C, H, W)`` with ``C`` in ``{1, 3}``.
        nrow (int): images per row.
        padding (int): pixels between images.
        title (str | None): figure title.

    Returns:
        Figure: a new figure showing the grid.

    Raises:
        ValueError: bad shape, channel count or ``nrow``.

    Example:
        >>> fig = plot_image_grid(torch.zeros(6, 1, 8, 8), nrow=3)
        >>> len(fig.axes)
        1
    """
    img = _to_numpy(images, "images")
    if img.ndim != 4 or img.shape[1] not in (1, 3) or img.shape[0] < 1:
        raise InvalidValueError(
            f"images must have shape (B, C, H, W) with B >= 1 and C in (1, 3), got {tuple(img.shape)}"
        )
    if int(nrow) < 1:
        raise InvalidValueError(f"nrow must be at least 1, got {nrow}")
    if padding < 0:
        raise InvalidValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = img.shape
    ncol = min(int(nrow), b)
    nrows = math.ceil(b / ncol)
    img = (np.clip(np.nan_to_num(img, nan=-1.0), -1.0, 1.0) + 1.0) / 2.0
    grid = np.ones((nrows * (h + padding) + padding, ncol * (w + padding) + padding, c))
    for i in range(b):
        r, q = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[top : top + h, left : left + w] = np.transpose(img[i], (1, 2, 0))
    width = min(12.0, max(2.0, 0.8 * ncol))
    fig, ax = new_figure(figsize=(width, max(1.0, width * grid.shape[0] / grid.shape[1])))
    if c == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return fig


def plot_graph_grid(rows: Sequence[tuple[str, Sequence[Any]]], ncol: int = 8, seed: int = 0) -> Figure:
    """Drawn graphs in labelled blocks of rows (samples above, data below, ...).

    Each graph is drawn with a spring layout (seeded, so a figure is reproducible), its
    node and edge counts in the panel's title.

    Args:
        rows: ``(label, graphs)`` pairs; each block of ``networkx`` graphs starts a new
            row and is labelled on its first panel.
        ncol (int): panels per row.
        seed (int): seed of the spring layouts.

    Returns:
        Figure: the grid.

    Example:
        >>> import networkx as nx
        >>> fig = plot_graph_grid([("a", [nx.path_graph(3)]), ("b", [nx.cycle_graph(4), nx.star_graph(3)])], ncol=2)
        >>> len([ax for ax in fig.axes if ax.get_visible()])
        3
    """
    import networkx as nx

    if int(ncol) < 1:
        raise InvalidValueError(f"ncol must be at least 1, got {ncol}")
    blocks = [(str(label), list(graphs)) for label, graphs in rows]
    if not blocks or not any(graphs for _, graphs in blocks):
        raise InvalidValueError("plot_graph_grid needs at least one graph")
    ncol = min(int(ncol), max(len(g) for _, g in blocks))
    lines = [math.ceil(len(g) / ncol) for _, g in blocks]
    total = sum(lines)
    fig = Figure(figsize=(1.6 * ncol, 1.7 * total))
    FigureCanvasAgg(fig)
    axes = fig.subplots(total, ncol, squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)  # panels without a graph stay blank
    row = 0
    for (label, graphs), nlines in zip(blocks, lines):
        for k, g in enumerate(graphs):
            ax = axes[row + k // ncol, k % ncol]
            ax.set_visible(True)
            pos = nx.spring_layout(g, seed=seed) if g.number_of_nodes() else {}
            nx.draw_networkx(g, pos=pos, ax=ax, with_labels=False, node_size=12, width=0.6,
                             node_color=SAMPLE_COLOR if row == 0 else DATA_COLOR)
            ax.set_axis_off()
            title = f"n={g.number_of_nodes()} m={g.number_of_edges()}"
            ax.set_title(f"{label}\n{title}" if k == 0 else title, fontsize=7, loc="left" if k == 0 else "center")
        row += nlines
    fig.tight_layout()
    return fig


def plot_loss_curves(
    records: Sequence[dict[str, Any]],
    keys: Sequence[str] | None = None,
    x_key: str = "step",
    ax: Axes | None = None,
    log_y: bool = False,
    title: str | None = None,
    ylabel: str | None = None,
    phase2_step: int | None = None,
) -> Figure:
    """Curves of logged scalars (one line per key) against a step counter.

    Energy Matching trains in two phases: phase 1 (OT flow matching only) for the first
    ``warmup_steps`` steps, then phase 2 adds contrastive divergence. The start of phase 2
    is marked by a vertical dashed line labelled ``"phase 2 (contrastive divergence) begins
    at step N"`` in the legend, at ``x = N``, where ``N`` is

    * ``phase2_step`` when it is given, or else
    * inferred from a ``"phase"`` key in the records (as the trainer logs it, ``1`` or
      ``2``): the ``x_key`` value of the last phase-1 record right before the first
      phase-2 record. The trainer logs ``step`` after the update, so with every step
      logged (or ``log_every`` dividing ``warmup_steps``) this is exactly
      ``warmup_steps``; otherwise it is the last logged phase-1 step, and the line still
      separates the phase-1 points (left of or on it) from the phase-2 points (right).
      Records whose phase is not 1 or 2 (e.g. a string) are ignored; without a switch
      from 1 to 2 nothing is inferred.

    The line is only drawn when ``N`` lies within the plotted x range (from the smallest to
    the largest x of the drawn points, inclusive).

    Args:
        records (Sequence[dict]): one dict per logging event, e.g.
            ``{"step": 10, "phase": 1, "loss": 0.3, "flow": 0.3, "cd": nan}``. A record
            missing a key (or holding a non-finite value) is skipped for that key.
        keys (Sequence[str] | None): which keys to plot; ``None`` plots every numeric key
            except ``x_key`` and ``"phase"``.
        x_key (str): key of the x axis; if a record lacks it, its index is used.
        ax (Axes | None): axes to draw on; a new figure if ``None``.
        log_y (bool): logarithmic y axis (non-positive values are then skipped).
        title (str | None): axes title; ``None`` gives ``"training loss"``, ``""`` none.
        ylabel (str | None): y-axis label; ``None`` gives ``"loss"``, or
            ``"loss (log scale)"`` with ``log_y``.
        phase2_step (int | None): the step (in units of ``x_key``) at which phase 2 begins,
            e.g. the training config's ``warmup_steps``; ``None`` infers it from the
            records' ``"phase"`` key when they show a switch (see above), else no line.

    Returns:
        Figure: the figure drawn on.

    Raises:
        ValueError: ``records`` is empty or not dicts, or no asked-for key is present.
        TypeError: ``phase2_step`` is neither an int nor ``None``.

    Example:
        >>> records = [{"step": s, "phase": 1 if s <= 30 else 2, "loss": 1.0 / s} for s in range(10, 101, 10)]
        >>> fig = plot_loss_curves(records, ["loss"])
        >>> ax = fig.axes[0]
        >>> ax.get_lines()[0].get_label(), ax.get_title(), ax.get_xlabel(), ax.get_ylabel()
        ('loss', 'training loss', 'step', 'loss')
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['loss', 'phase 2 (contrastive divergence) begins at step 30']
    """
    if isinstance(records, dict) or not isinstance(records, Sequence) or len(records) == 0:
        raise InvalidValueError("records must be a non-empty list of dicts, e.g. [{'step': 0, 'loss': 1.2}, ...]")
    if not all(isinstance(r, dict) for r in records):
        raise InvalidValueError("every record must be a dict of logged scalars")
    if phase2_step is not None and (isinstance(phase2_step, bool)
                                    or not isinstance(phase2_step, numbers.Integral)):
        raise InvalidTypeError(
            f"phase2_step must be an int step (e.g. warmup_steps) or None, got {type(phase2_step).__name__}"
        )

    def scalar(v: Any, positive: bool = log_y) -> float | None:
        if isinstance(v, Tensor):
            if v.numel() != 1:
                return None
            v = v.item()
        if isinstance(v, (bool, str)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return None
        v = float(v)
        return v if math.isfinite(v) and (v > 0 or not positive) else None

    def x_of(i: int, r: dict[str, Any]) -> float:
        x = scalar(r.get(x_key), positive=False) if x_key in r else None
        return float(i) if x is None else x

    if keys is None:
        seen: dict[str, None] = {}
        for r in records:
            for k, v in r.items():
                if k not in (x_key, "phase") and scalar(v) is not None:
                    seen.setdefault(k)
        keys = list(seen)
    elif isinstance(keys, str):
        keys = [keys]
    fig, ax = _figure_and_axes(ax, figsize=(6.0, 4.0))
    drawn = 0
    x_min, x_max = math.inf, -math.inf
    for key in keys:
        xs, ys = [], []
        for i, r in enumerate(records):
            y = scalar(r.get(key))
            if y is None:
                continue
            xs.append(x_of(i, r))
            ys.append(y)
        if ys:
            ax.plot(xs, ys, label=key, linewidth=1.0)
            drawn += 1
            x_min, x_max = min(x_min, *xs), max(x_max, *xs)
    if drawn == 0:
        present = sorted({k for r in records for k in r})
        raise InvalidValueError(f"none of the keys {list(keys)} holds a numeric value; the records have: {present}")

    marker: float | None = float(phase2_step) if phase2_step is not None else None
    if marker is None:
        last_phase1: float | None = None
        for i, r in enumerate(records):
            phase = scalar(r.get("phase"), positive=False)
            if phase == 1.0:
                last_phase1 = x_of(i, r)
            elif phase == 2.0:
                marker = last_phase1  # None when phase 2 came first: no switch seen
                break
    if marker is not None and x_min <= marker <= x_max:
        step_text = str(int(marker)) if marker.is_integer() else f"{marker:g}"
        ax.axvline(marker, color="0.25", linestyle="--", linewidth=1.0,
                   label=PHASE2_LABEL.format(step=step_text))

    if log_y:
        ax.set_yscale("log")
    ax.set_title("training loss" if title is None else title)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel if ylabel is not None else ("loss (log scale)" if log_y else "loss"))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Writes ``fig`` to ``path`` atomically and returns the path.

    Parent directories are created. The figure is first written to a temporary file in
    the same directory and then moved over ``path`` with ``os.replace``, so a reader
    never sees a half-written file. The format follows the suffix (``.png``, ``.pdf``,
    ``.svg``, ...).

    Args:
        fig (Figure): the figure to write.
        path (str | PathLike): destination file.
        dpi (int): resolution for raster formats.

    Returns:
        Path: the destination path.

    Raises:
        ValueError: ``path`` has no suffix to infer the format from.

    Example:
        >>> import tempfile, pathlib
        >>> fig, _ = new_figure()
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_figure(fig, pathlib.Path(d) / "sub" / "f.png")
        ...     p.stat().st_size > 0
        True
    """
    if not isinstance(fig, Figure):
        raise InvalidTypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise InvalidValueError(f"cannot infer the image format of {str(path)!r}: add a suffix such as .png or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
