"""Plotting: every function writes a non-empty PNG; bad shapes raise ValueError."""

from __future__ import annotations

import sys

import matplotlib
import pytest
import torch
from torch import nn

from energyflow.plotting import (
    new_figure,
    plot_energy_landscape,
    plot_image_grid,
    plot_loss_curves,
    plot_samples,
    plot_trajectories,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_png(path) -> None:
    assert path.exists() and path.stat().st_size > 100
    assert path.read_bytes()[:8] == PNG_MAGIC
    # no temporary files are left next to it
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_energy_landscape_function_and_module(tmp_path):
    pts = torch.randn(50, 2, generator=gen(0))
    fig = plot_energy_landscape(lambda x: 0.5 * x.pow(2).sum(1), resolution=30, samples=pts, data=pts + 1)
    assert_png(save_figure(fig, tmp_path / "quadratic.png"))
    torch.manual_seed(0)  # nn.Linear initialisation only; plotting itself is deterministic
    net = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))  # returns (N, 1)
    fig = plot_energy_landscape(net, lim=3.0, resolution=25, chunk_size=100)
    assert_png(save_figure(fig, tmp_path / "net.png"))


def test_energy_landscape_bad_inputs():
    with pytest.raises(ValueError, match=r"energies \(N,\)"):
        plot_energy_landscape(lambda x: x, resolution=10)  # returns (N, 2)
    with pytest.raises(ValueError, match=r"samples must have shape \(N, 2\)"):
        plot_energy_landscape(lambda x: x.sum(1), resolution=10, samples=torch.zeros(5, 3))
    with pytest.raises(ValueError, match="resolution"):
        plot_energy_landscape(lambda x: x.sum(1), resolution=1)
    with pytest.raises(ValueError, match="lim"):
        plot_energy_landscape(lambda x: x.sum(1), lim=-1.0)


def test_plot_samples(tmp_path):
    x = torch.randn(100, 2, generator=gen(1))
    assert_png(save_figure(plot_samples(x, reference=x + 2), tmp_path / "samples.png"))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plot_samples(torch.zeros(10))
    with pytest.raises(ValueError, match="reference"):
        plot_samples(torch.zeros(10, 2), reference=torch.zeros(10, 2, 1))


def test_plot_on_given_axes(tmp_path):
    fig, ax = new_figure()
    out = plot_samples(torch.zeros(4, 2), ax=ax)
    assert out is fig
    with pytest.raises(TypeError, match="Axes"):
        plot_samples(torch.zeros(4, 2), ax="not an axes")


def test_plot_trajectories(tmp_path):
    x0 = torch.randn(300, 2, generator=gen(2))
    t = torch.linspace(0, 1, 11).view(-1, 1, 1)
    traj = (1 - t) * x0 + t * (x0 + 1)  # (11, 300, 2)
    fig = plot_trajectories(traj, max_paths=50)
    assert_png(save_figure(fig, tmp_path / "traj.png"))
    with pytest.raises(ValueError, match=r"\(T, B, 2\)"):
        plot_trajectories(torch.zeros(10, 2))
    with pytest.raises(ValueError, match="max_paths"):
        plot_trajectories(traj, max_paths=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_plot_image_grid(tmp_path, channels):
    images = torch.rand(10, channels, 8, 8, generator=gen(3)) * 2 - 1
    fig = plot_image_grid(images, nrow=4, title="digits")
    assert_png(save_figure(fig, tmp_path / f"grid{channels}.png"))


def test_plot_image_grid_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        plot_image_grid(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="C in"):
        plot_image_grid(torch.zeros(4, 2, 8, 8))
    with pytest.raises(ValueError, match="nrow"):
        plot_image_grid(torch.zeros(4, 1, 8, 8), nrow=0)


def test_plot_loss_curves(tmp_path):
    records = [{"step": i, "loss": 1.0 / (i + 1), "loss_cd": torch.tensor(0.1 * i), "phase": "warmup"}
               for i in range(20)]
    records.append({"step": 20, "loss": float("nan")})  # skipped, not an error
    fig = plot_loss_curves(records, keys=["loss", "loss_cd"], log_y=False)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss", "loss_cd"]
    assert_png(save_figure(fig, tmp_path / "loss.png"))
    auto = plot_loss_curves(records)  # every numeric key but the step
    assert {line.get_label() for line in auto.axes[0].get_lines()} == {"loss", "loss_cd"}
    assert_png(save_figure(plot_loss_curves(records, ["loss"], log_y=True), tmp_path / "log.png"))
    with pytest.raises(ValueError, match="non-empty"):
        plot_loss_curves([])
    with pytest.raises(ValueError, match="the records have"):
        plot_loss_curves(records, keys=["missing"])


def em_records(steps=range(10, 101, 10), warmup: int | None = None) -> list[dict]:
    """Trainer-like records; with ``warmup``, a ``"phase"`` key switching from 1 to 2 after it."""
    out = []
    for s in steps:
        r = {"step": s, "loss": 1.0 / s, "flow": 0.5 / s, "cd": float("nan")}
        if warmup is not None:
            r["phase"] = 1 if s <= warmup else 2
            r["cd"] = 0.1 / s if s > warmup else float("nan")
        out.append(r)
    return out


def vertical_lines(ax) -> list:
    """The lines of ``ax`` that are vertical (both x data points equal)."""
    return [line for line in ax.get_lines() if len(set(map(float, line.get_xdata()))) == 1
            and len(line.get_xdata()) == 2]


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def test_loss_curves_have_title_and_axis_labels():
    ax = plot_loss_curves(em_records(), ["loss", "flow", "cd"]).axes[0]
    assert ax.get_title() == "training loss"
    assert ax.get_xlabel() == "step"
    assert ax.get_ylabel() == "loss"
    log_ax = plot_loss_curves(em_records(), ["loss"], log_y=True).axes[0]
    assert log_ax.get_ylabel() == "loss (log scale)" and log_ax.get_yscale() == "log"
    custom = plot_loss_curves(em_records(), ["loss"], title="run 7", ylabel="objective").axes[0]
    assert (custom.get_title(), custom.get_ylabel()) == ("run 7", "objective")


def test_loss_curves_mark_phase2_start(tmp_path):
    fig = plot_loss_curves(em_records(), ["loss", "flow", "cd"], phase2_step=50)
    ax = fig.axes[0]
    (line,) = vertical_lines(ax)
    assert [float(x) for x in line.get_xdata()] == [50.0, 50.0]
    assert line.get_linestyle() == "--"
    assert "phase 2" in line.get_label() and "step 50" in line.get_label()
    phase2_texts = [t for t in legend_texts(ax) if "phase 2" in t]
    assert phase2_texts == ["phase 2 (contrastive divergence) begins at step 50"]
    assert_png(save_figure(fig, tmp_path / "loss_phase2.png"))
    # also on a log axis (the line spans the axes whatever the y scale)
    assert len(vertical_lines(plot_loss_curves(em_records(), ["loss"], log_y=True, phase2_step=50).axes[0])) == 1


def test_loss_curves_no_phase2_marker_without_phase_info():
    ax = plot_loss_curves(em_records(), ["loss", "flow", "cd"]).axes[0]
    assert vertical_lines(ax) == []
    assert not any("phase 2" in t for t in legend_texts(ax))
    assert legend_texts(ax) == ["loss", "flow"]  # "cd" is all NaN: no line
    # outside the plotted step range (10..100): no line either
    for outside in (5, 101):
        assert vertical_lines(plot_loss_curves(em_records(), ["loss"], phase2_step=outside).axes[0]) == []
    with pytest.raises(TypeError, match="phase2_step"):
        plot_loss_curves(em_records(), ["loss"], phase2_step=50.5)
    with pytest.raises(TypeError, match="phase2_step"):
        plot_loss_curves(em_records(), ["loss"], phase2_step=True)


def test_loss_curves_infer_phase2_from_records():
    # the trainer logs the step after the update: phase 2 steps are > warmup_steps
    ax = plot_loss_curves(em_records(warmup=50), ["loss", "flow", "cd"]).axes[0]
    (line,) = vertical_lines(ax)
    assert [float(x) for x in line.get_xdata()] == [50.0, 50.0]
    assert "phase 2 (contrastive divergence) begins at step 50" in legend_texts(ax)
    # an explicit phase2_step wins over the records
    (line,) = vertical_lines(plot_loss_curves(em_records(warmup=50), ["loss"], phase2_step=70).axes[0])
    assert float(line.get_xdata()[0]) == 70.0
    # no switch from 1 to 2 (all phase 1, all phase 2, non-numeric phase): no line
    for records in (em_records(warmup=1000), em_records(warmup=0),
                    [dict(r, phase="warmup") for r in em_records()]):
        assert vertical_lines(plot_loss_curves(records, ["loss"]).axes[0]) == []
    # "phase" is a label, not a curve: automatic keys leave it out
    auto = plot_loss_curves(em_records(warmup=50))
    assert {line.get_label() for line in auto.axes[0].get_lines()} == {
        "loss", "flow", "cd", "phase 2 (contrastive divergence) begins at step 50"}


def test_2d_plots_have_titles_and_axis_labels():
    pts = torch.randn(40, 2, generator=gen(4))
    samples = plot_samples(pts).axes[0]
    assert (samples.get_title(), samples.get_xlabel(), samples.get_ylabel()) == ("samples", "x1", "x2")
    versus = plot_samples(pts, reference=pts + 1).axes[0]
    # the title says which colour is which: samples are orange, the reference blue
    assert versus.get_title() == "samples (orange) vs reference (blue)"
    data = plot_samples(pts, reference=pts + 1, reference_label="data").axes[0]
    assert data.get_title() == "samples (orange) vs data (blue)"
    assert legend_texts(data) == ["data", "samples"]
    assert plot_samples(pts, title="").axes[0].get_title() == ""

    landscape = plot_energy_landscape(lambda x: x.pow(2).sum(1), resolution=10).axes[0]
    assert (landscape.get_title(), landscape.get_xlabel(), landscape.get_ylabel()) == (
        "energy landscape", "x1", "x2")
    overlaid = plot_energy_landscape(lambda x: x.pow(2).sum(1), resolution=10, samples=pts, data=pts).axes[0]
    assert overlaid.get_title() == "energy landscape with samples (orange) and data (blue)"
    custom = plot_energy_landscape(lambda x: x.pow(2).sum(1), resolution=10, title="V after 5k steps",
                                   axis_labels=("a", "b")).axes[0]
    assert (custom.get_title(), custom.get_xlabel(), custom.get_ylabel()) == ("V after 5k steps", "a", "b")

    t = torch.linspace(0, 1, 5).view(-1, 1, 1)
    traj = plot_trajectories((1 - t) * pts + t * (pts + 1), max_paths=10).axes[0]
    assert traj.get_title() == "sampler trajectories (10 paths)"
    assert (traj.get_xlabel(), traj.get_ylabel()) == ("x1", "x2")
    assert plot_trajectories((1 - t) * pts, title="paths").axes[0].get_title() == "paths"
    with pytest.raises(ValueError, match="axis_labels"):
        plot_samples(pts, axis_labels="x1")


def test_save_figure_atomic_and_creates_dirs(tmp_path):
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    target = tmp_path / "a" / "b" / "fig.png"
    assert save_figure(fig, target) == target
    assert_png(target)
    ax.plot([0, 1], [1, 0])
    save_figure(fig, str(target))  # overwrite in place through os.replace
    assert_png(target)
    with pytest.raises(ValueError, match="suffix"):
        save_figure(fig, tmp_path / "nosuffix")
    with pytest.raises(TypeError, match="Figure"):
        save_figure("fig", tmp_path / "x.png")


def test_failed_save_leaves_no_partial_file(tmp_path):
    fig, _ = new_figure()
    with pytest.raises(ValueError):
        save_figure(fig, tmp_path / "fig.unknownformat")
    assert list(tmp_path.iterdir()) == []


def test_no_window_and_backend_untouched():
    before = dict.__getitem__(matplotlib.rcParams, "backend")  # raw value: no backend resolution
    pyplot = sys.modules.get("matplotlib.pyplot")
    open_before = pyplot.get_fignums() if pyplot is not None else []
    fig = plot_samples(torch.zeros(3, 2))
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"
    assert dict.__getitem__(matplotlib.rcParams, "backend") == before
    # figures never go through pyplot, so no pyplot-managed (window) figure appears
    if pyplot is not None:
        assert pyplot.get_fignums() == open_before
