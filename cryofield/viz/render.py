"""The pictures of a result, as ``cryofield render`` and the end of ``cryofield run`` make them.

Files, next to the result unless told otherwise (``NAME`` is the case name, ``SUFFIX`` is empty for the
default time, the end of the last freeze, and ``_tTs`` for ``--time T``):

* ``NAME_3d{SUFFIX}.png``: the 3D view (needs an off-screen OpenGL context; not made for an axisymmetric
  result);
* ``NAME_slice{SUFFIX}.png``: the ultrasound-plane slice (of an axisymmetric result: its section through
  the axis, mirrored);
* ``NAME_timeseries.png``: the time-series plots;
* ``NAME_nerve.png``: the injury along each cooled nerve, when the result has nerves with centrelines, and
  across it (its fibres' minimum temperature in its cross-section) when the result reads it fibre by fibre;
* ``NAME_slice.gif`` or ``NAME_3d.mp4`` (...) with ``animate``: every snapshot in turn.

The slice and the plots need only matplotlib, so they are made even where the 3D view cannot be.

Drawn into the directory of a published result set (``cryofield render DIR/NAME.h5`` with its
``NAME.manifest.json`` beside it), the pictures join the set: they are drawn into a staging directory and
published with the manifest updated, under the name's lock (:mod:`cryofield.io.resultset`), so the set's
manifest always lists what is there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from cryofield.errors import CorruptResult
from cryofield.io.resultset import OutputLock, ResultSetError, Staging, check_file, publish
from cryofield.viz.animate import animation_format, write_animation
from cryofield.viz.data import VizResult
from cryofield.viz.geometry import NerveLength, ultrasound_plane
from cryofield.viz.headless import RenderUnavailable
from cryofield.viz.plots import nerve_figure, timeseries_figure
from cryofield.viz.scene import Scene3D, scene_figure
from cryofield.viz.slice import SliceView

DEFAULT_SIZE = (1200, 900)


@dataclass
class Rendered:
    """What was written (kind → path) and what could not be made (messages)."""

    paths: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def render_result(path: str | Path, out_dir: str | Path | None = None, time: float | None = None,
                  size: tuple[int, int] = DEFAULT_SIZE, animate: str | None = None,
                  animation: str = "auto") -> Rendered:
    """Draw the pictures of the result at ``path``.

    Parameters
    ----------
    path
        A complete result file (``NAME.h5``).
    out_dir
        Where to write; by default the result's directory.
    time
        Snapshot time (s) for the 3D view and the slice (the nearest snapshot); by default the end of
        the last freeze.
    size
        Width and height of every picture in pixels.
    animate
        ``"slice"`` or ``"3d"`` to also write an animation over all snapshots.
    animation
        ``"auto"`` (MP4 when imageio-ffmpeg is installed, else GIF), ``"gif"`` or ``"mp4"``.

    Raises
    ------
    cryofield.errors.InputError
        For a file that is not a complete result, or a time outside the run.
    """
    vr = VizResult.open(path)
    index = vr.default_snapshot() if time is None else vr.snapshot_near(time)
    fmt = animation_format(animation) if animate else None
    out = Path(out_dir) if out_dir is not None else vr.result.path.parent
    out.mkdir(parents=True, exist_ok=True)
    h5 = vr.result.path
    if vr.result.manifest is None or out.resolve() != h5.parent.resolve():
        return _draw(vr, out, index, time, size, animate, fmt)
    name = vr.result.manifest.get("name", h5.stem)
    with OutputLock(out, name):
        try:
            current = check_file(h5, str(vr.result.attrs.get("run_id")), hashes=False)
        except ResultSetError as exc:
            raise CorruptResult(h5, str(exc)) from exc
        staging = Staging(out, name)
        try:
            rendered = _draw(vr, staging.dir, index, time, size, animate, fmt)
            publish(staging, [p.name for p in rendered.paths.values()], keep=current)
        except BaseException:
            staging.discard()
            raise
    rendered.paths = {kind: out / p.name for kind, p in rendered.paths.items()}
    return rendered


def _draw(vr: VizResult, out: Path, index: int, time: float | None, size: tuple[int, int], animate: str | None,
          fmt: str | None) -> Rendered:
    """Draw the pictures of snapshot ``index`` into ``out`` (see :func:`render_result`)."""
    suffix = "" if time is None else f"_t{vr.snapshot_times[index]:g}s"
    plane = ultrasound_plane(vr)
    nerve_length = NerveLength(vr)
    rendered = Rendered()
    slice_view = SliceView(vr, size, plane)
    rendered.paths["slice"] = _save(slice_view.show(index), out / f"{vr.name}_slice{suffix}.png")
    rendered.paths["timeseries"] = _save(timeseries_figure(vr, size, nerve_length), out / f"{vr.name}_timeseries.png")
    injury = nerve_figure(vr, size)
    if injury is not None:
        rendered.paths["nerve"] = _save(injury, out / f"{vr.name}_nerve.png")
    if animate == "slice":
        target = out / f"{vr.name}_slice.{fmt}"
        write_animation(_slice_frames(slice_view), target)
        rendered.paths["animation"] = target
    if vr.axisymmetric:  # its picture is the section through the axis (the slice); ParaView's Rotational
        return rendered  # Extrusion of the result makes the solid
    try:
        scene = Scene3D(vr, size, plane)
    except RenderUnavailable as exc:
        rendered.problems.append(f"3D view not made: {exc}")
        return rendered
    try:
        rendered.paths["3d"] = _save(scene_figure(scene, index, nerve_length), out / f"{vr.name}_3d{suffix}.png")
        if animate == "3d":
            target = out / f"{vr.name}_3d.{fmt}"
            write_animation(_scene_frames(scene, nerve_length), target)
            rendered.paths["animation"] = target
    finally:
        scene.close()
    return rendered


def _slice_frames(view: SliceView) -> Iterator[np.ndarray]:
    for i in range(len(view.vr.snapshot_times)):
        view.show(i)
        yield view.image()


def _scene_frames(scene: Scene3D, nerve_length: NerveLength) -> Iterator[np.ndarray]:
    for i in range(len(scene.vr.snapshot_times)):
        fig = scene_figure(scene, i, nerve_length)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        yield np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _save(fig, path: Path) -> Path:
    """Save a figure at 100 dpi (figures are sized in pixels / 100), under a temporary name first."""
    partial = path.with_name(f".{path.stem}.partial.png")
    try:
        fig.savefig(partial, dpi=100, format="png")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
