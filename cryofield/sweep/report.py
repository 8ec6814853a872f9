"""Pictures of a finished (or running) sweep: each outcome against each axis, and a heat map for grids.

``outcome_vs_axes.png``: the target nerve's whole-section lesion length at the injury level (−20 °C)
against each axis, every variant a point (filled: durable block), the durable-block threshold as a dashed
line. ``temperatures_vs_axes.png``: the coldest nerve, skin and artery temperatures against each axis,
with 0 °C and the injury level marked. ``heatmap_A__B.png`` (grid designs of two or more axes): the lesion
length over the first two axes (averaged over any others), each cell labelled, the cells at or past the
threshold outlined. Drawn with matplotlib's Agg canvas: no display needed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cryofield.sweep.table import read_table

OUTCOME = "lesion_whole_mm"
TEMPERATURES = [("nerve_min_temperature_C", "nerve", "tab:blue"), ("skin.min_temperature_C", "skin", "tab:orange"),
                ("artery_min_temperature_C", "artery", "tab:red")]


def draw_report(sweep_dir: str | Path, dest: str | Path | None = None, outcome: str = OUTCOME) -> dict[str, Path]:
    """Draw the pictures of the sweep in ``sweep_dir`` into ``dest`` (default ``sweep_dir/pictures``)."""
    sweep_dir = Path(sweep_dir)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    rows = read_table(sweep_dir)
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        raise ValueError("no finished variant to draw yet")
    if not any(isinstance(r.get(outcome), (int, float)) for r in ok):
        raise ValueError(f"the table has no outcome '{outcome}' (a case without a nerve has no lesion length)")
    dest = Path(dest) if dest is not None else sweep_dir / "pictures"
    dest.mkdir(parents=True, exist_ok=True)
    axes = [a["column"] for a in summary["axes"]]
    threshold = summary.get("durable_block_mm")
    paths = {"outcome_vs_axes": dest / "outcome_vs_axes.png"}
    _outcome_vs_axes(ok, axes, outcome, threshold, paths["outcome_vs_axes"])
    if any(r.get(col) is not None for r in ok for col, _, _ in TEMPERATURES):
        paths["temperatures_vs_axes"] = dest / "temperatures_vs_axes.png"
        _temperatures_vs_axes(ok, axes, paths["temperatures_vs_axes"])
    if summary["design"] == "grid" and len(axes) >= 2:
        name = f"heatmap_{_safe(axes[0])}__{_safe(axes[1])}"
        paths[name] = dest / f"{name}.png"
        _heatmap(ok, axes[0], axes[1], outcome, threshold, paths[name], averaged=len(axes) > 2)
    return paths


def _figure(n: int, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _positions(values: list[Any]) -> tuple[list[float], list[str] | None]:
    """x positions of axis values: the numbers themselves, or category indices (with their labels)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = list(dict.fromkeys(str(v) for v in values))
    return [float(labels.index(str(v))) for v in values], labels


def _outcome_vs_axes(rows, axes, outcome, threshold, path) -> None:
    fig, panels = _figure(len(axes))
    for ax, axis in zip(panels, axes):
        x, labels = _positions([r.get(axis) for r in rows])
        y = [r.get(outcome) for r in rows]
        block = [bool(r.get("durable_block")) for r in rows]
        ax.scatter([a for a, b in zip(x, block) if b], [v for v, b in zip(y, block) if b], color="tab:green",
                   label="durable block", zorder=3)
        ax.scatter([a for a, b in zip(x, block) if not b], [v for v, b in zip(y, block) if not b],
                   facecolors="none", edgecolors="tab:gray", label="no durable block", zorder=3)
        _mean_line(ax, x, y)
        if threshold is not None:
            ax.axhline(threshold, color="tab:red", linestyle="--", label=f"durable block threshold {threshold:g} mm")
        _label_axis(ax, axis, labels)
        ax.set_ylabel("whole-section lesion at -20 °C (mm)" if outcome == OUTCOME else outcome)
        ax.grid(alpha=0.3)
    panels[0].legend(fontsize="small")
    fig.suptitle(f"{outcome} against each axis ({len(rows)} finished variant(s))")
    fig.savefig(path, dpi=110)


def _temperatures_vs_axes(rows, axes, path) -> None:
    fig, panels = _figure(len(axes))
    for ax, axis in zip(panels, axes):
        x, labels = _positions([r.get(axis) for r in rows])
        for column, what, colour in TEMPERATURES:
            pts = [(a, r.get(column)) for a, r in zip(x, rows) if isinstance(r.get(column), (int, float))]
            if pts:
                ax.scatter(*zip(*pts), color=colour, s=14, label=f"coldest {what}")
        ax.axhline(0.0, color="tab:gray", linewidth=0.8)
        ax.axhline(-20.0, color="tab:purple", linestyle=":", label="-20 °C (nerve injury)")
        _label_axis(ax, axis, labels)
        ax.set_ylabel("minimum temperature (°C)")
        ax.grid(alpha=0.3)
    panels[0].legend(fontsize="small")
    fig.suptitle("coldest temperatures against each axis")
    fig.savefig(path, dpi=110)


def _heatmap(rows, a, b, outcome, threshold, path, averaged: bool) -> None:
    import numpy as np

    xs = list(dict.fromkeys(r.get(a) for r in rows))
    ys = list(dict.fromkeys(r.get(b) for r in rows))
    grid = np.full((len(ys), len(xs)), np.nan)
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            vals = [r[outcome] for r in rows if r.get(a) == xv and r.get(b) == yv
                    and isinstance(r.get(outcome), (int, float))]
            if vals:
                grid[i, j] = float(np.mean(vals))
    fig, (ax,) = _figure(1, 6.0, 4.8)
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=outcome + (" (mean over the other axes)" if averaged else ""))
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isfinite(grid[i, j]):
                past = threshold is not None and grid[i, j] >= threshold
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize="small",
                        color="black" if past else "white", fontweight="bold" if past else "normal")
                if past:
                    ax.add_patch(_cell(j, i))
    ax.set_xticks(range(len(xs)), [f"{v:g}" if isinstance(v, float) else str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [f"{v:g}" if isinstance(v, float) else str(v) for v in ys])
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    title = f"{outcome}"
    if threshold is not None:
        title += f"; outlined: at or past the durable block threshold ({threshold:g} mm)"
    ax.set_title(title, fontsize="medium")
    fig.savefig(path, dpi=110)


def _cell(j: int, i: int):
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=2.5)


def _mean_line(ax, x, y) -> None:
    """The mean outcome at each axis value (over the other axes), as a line."""
    by_x: dict[float, list[float]] = {}
    for a, v in zip(x, y):
        if isinstance(v, (int, float)):
            by_x.setdefault(a, []).append(float(v))
    if 1 < len(by_x) < len(x):
        xs = sorted(by_x)
        ax.plot(xs, [sum(by_x[k]) / len(by_x[k]) for k in xs], color="tab:blue", alpha=0.6, label="mean")


def _label_axis(ax, axis: str, labels: list[str] | None) -> None:
    ax.set_xlabel(axis)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
