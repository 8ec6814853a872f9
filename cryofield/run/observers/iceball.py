"""Ice-ball shape per probe, as experiments report it: width at mid active length, length along the probe,
reach beyond the tip, for each isotherm at every output time.

A probe with a pose in the mesh's metadata (the phantom's needles: tip, axis pointing back along the
shaft, diameter, active length, metres) gets sampling lines, located in the mesh once and read with P1
weights at every output:

* **width**: four diameters through the middle of the active part (from the tip to the end of the active
  length), perpendicular to the axis, 45° apart; on each, the isotherm's reach from the needle's surface
  outwards on both sides plus the needle's diameter; the width is their mean (``width_min`` and
  ``width_max`` the narrowest and widest);
* **beyond tip**: along the axis, distally from the tip: how far past the tip the isotherm reaches (0 when
  the tip itself is warmer);
* **length**: along four lines parallel to the axis just outside the needle's surface, the isotherm's
  extent from its distal end to the most proximal point still at or below the level, the distal end taken
  from the axis (beyond the tip); the longest of the four.

Crossings are interpolated linearly between samples (0.05 mm apart). Points inside the needle (a hole in
the mesh) are skipped: the scans start at its surface. A side of a diameter that falls outside the mesh (a
quarter-symmetry mesh) is the mirror of the other side; a diameter outside on both sides is left out. On
an axisymmetric mesh every line is read in the r–z plane (:func:`cryofield.fem.geometry.locate_points`).

The result keeps the series per probe in ``/iceball/PROBE`` and the summary the largest of each over the run
(``iceball_mm``).
"""

from __future__ import annotations

import numpy as np

from cryofield.fem import geometry as fem
from cryofield.io.results import ResultWriter
from cryofield.model.schedule import Segment
from cryofield.run.driver import Observer, RunState

#: Spacing of the samples along every line (m).
SPACING = 5e-5
#: Directions (around the axis) of the width diameters and of the length lines.
DIRECTIONS = 4


def _reach(s: np.ndarray, T: np.ndarray, level: float) -> float:
    """How far from ``s[0]`` the run of samples at or below ``level`` that starts there reaches (linear
    crossing); 0 when the first sample is warmer, the last sample's distance when it never ends. NaN samples
    (outside the mesh) end the run."""
    if not len(s) or not np.isfinite(T[0]) or T[0] > level:
        return 0.0
    above = np.flatnonzero(~(T <= level))
    if not len(above):
        return float(s[-1] - s[0])
    k = above[0]
    if not np.isfinite(T[k]):
        return float(s[k - 1] - s[0])
    frac = (level - T[k - 1]) / (T[k] - T[k - 1])
    return float(s[k - 1] + frac * (s[k] - s[k - 1]) - s[0])


class ProbeLines:
    """The sampling lines of one needle pose and their P1 weights in the mesh."""

    def __init__(self, pose: dict, points: np.ndarray, tets: np.ndarray, far: float):
        tip, axis = np.asarray(pose["tip"], float), np.asarray(pose["axis"], float)
        axis = axis / np.linalg.norm(axis)
        self.radius = 0.5 * float(pose["diameter"])
        self.active = self.radius + float(pose["active_length"])  # from the tip to the end of the active part
        helper = np.eye(3)[np.argmin(np.abs(axis))]
        u = np.cross(axis, helper)
        u /= np.linalg.norm(u)
        v = np.cross(axis, u)
        angles = np.pi * np.arange(DIRECTIONS) / DIRECTIONS
        self.across = [np.cos(a) * u + np.sin(a) * v for a in angles]  # unit vectors perpendicular to the axis
        s_out = np.arange(0.0, far, SPACING)
        mid = tip + 0.5 * self.active * axis
        lines = []
        for d in self.across:  # width: outwards from the surface, both sides
            lines += [mid[None] + (self.radius + s_out)[:, None] * d, mid[None] - (self.radius + s_out)[:, None] * d]
        lines.append(tip[None] - s_out[:, None] * axis)  # beyond the tip, distally
        offset = 1.05 * self.radius
        s_along = np.arange(-far, far, SPACING)
        self.s_along = s_along
        for d in self.across:  # length: parallel to the axis just outside the needle, both sides
            for sign in (1.0, -1.0):
                lines.append(tip[None] + sign * offset * d + s_along[:, None] * axis)
        self.s_out = s_out
        self.sizes = [len(line) for line in lines]
        self.nodes, self.weights, found = fem.locate_points(points, tets, np.concatenate(lines))
        self.found = found

    def sample(self, T: np.ndarray) -> list[np.ndarray]:
        values = np.where(self.found, np.sum(T[self.nodes] * self.weights, axis=1), np.nan)
        return np.split(values, np.cumsum(self.sizes)[:-1])

    def measure(self, T: np.ndarray, level: float) -> dict[str, float]:
        """Width (mean, min, max over the diameters), length and reach beyond the tip (m) of one isotherm."""
        return self.shape(self.sample(T), level)

    def shape(self, lines: list[np.ndarray], level: float) -> dict[str, float]:
        """:meth:`measure` on lines already sampled (:meth:`sample`), so that several isotherms share one."""
        n = 2 * DIRECTIONS
        widths = []
        for k in range(DIRECTIONS):
            # a side outside the mesh (a symmetry plane cut it off) is taken as the mirror of the other
            plus, minus = (_reach(self.s_out, line, level) if np.isfinite(line[0]) else None
                           for line in lines[2 * k:2 * k + 2])
            if plus is not None or minus is not None:
                widths.append(2 * self.radius + (plus if plus is not None else minus)
                              + (minus if minus is not None else plus))
        cold_at_surface = [np.isfinite(line[0]) and line[0] <= level for line in lines[:n]]
        if not any(cold_at_surface) or not widths:
            widths = [0.0]
        beyond = _reach(self.s_out, lines[n], level)
        proximal = 0.0
        for line in lines[n + 1:]:
            cold = np.flatnonzero(line <= level)
            if len(cold):
                proximal = max(proximal, float(self.s_along[cold[-1]]))
        length = (proximal + beyond) if (beyond > 0 or proximal > 0) else 0.0
        return {"width": float(np.mean(widths)), "width_min": float(np.min(widths)),
                "width_max": float(np.max(widths)), "length": length, "beyond_tip": beyond}


class IceBallRecorder(Observer):
    """At every output time, the ice-ball shape of every probe with a pose (module doc), per isotherm."""

    name = "iceball"

    def __init__(self, problem, isotherms: list[float], far: float = 0.03):
        poses = problem.mesh.metadata.get("probes") or {}
        self.levels = list(isotherms)
        self.lines = {name: ProbeLines(pose, problem.mesh.points, problem.mesh.tets, far)
                      for name, pose in poses.items() if {"tip", "axis", "diameter", "active_length"} <= set(pose)}
        self.rows: dict[str, list] = {name: [] for name in self.lines}
        self.times: list[float] = []

    def at_output(self, run: RunState, segment: Segment) -> None:
        if not self.lines:
            return
        T = run.temperature()
        self.times.append(segment.end)
        for name, lines in self.lines.items():
            sampled = lines.sample(T)
            self.rows[name].append([lines.shape(sampled, level) for level in self.levels])

    def state(self, run: RunState) -> dict:
        out = {"time": np.array(self.times)}
        for name, rows in self.rows.items():
            out[f"{name}"] = self._table(rows)
        return out

    def restore(self, run: RunState, state: dict) -> None:
        self.times = list(np.asarray(state.get("time", [])))
        keys = ("width", "width_min", "width_max", "length", "beyond_tip")
        for name in self.rows:
            table = np.asarray(state.get(name, np.zeros((0, len(self.levels), len(keys)))))
            self.rows[name] = [[dict(zip(keys, map(float, cell))) for cell in row] for row in table]

    @staticmethod
    def _table(rows: list) -> np.ndarray:
        keys = ("width", "width_min", "width_max", "length", "beyond_tip")
        return np.array([[[cell[k] for k in keys] for cell in row] for row in rows], float).reshape(
            len(rows), len(rows[0]) if rows else 0, len(keys))

    def arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """Per probe: ``time`` (M,) and for each measure an (M, L) array in mm (L isotherms)."""
        keys = ("width", "width_min", "width_max", "length", "beyond_tip")
        out = {}
        for name, rows in self.rows.items():
            table = self._table(rows) * 1e3
            out[name] = {"time": np.array(self.times)} | {f"{k}_mm": table[:, :, i] for i, k in enumerate(keys)}
        return out

    def write(self, writer: ResultWriter, run: RunState) -> None:
        """``/iceball/PROBE``: the series of :meth:`arrays`, with the isotherms (``levels``)."""
        for name, arrays in self.arrays().items():
            writer.write_arrays(f"iceball/{name}", arrays, {"levels": np.array(self.levels, float)})

    def summary(self, run: RunState) -> dict | None:
        """``iceball_mm``: :meth:`largest`, when a probe has a pose."""
        return {"iceball_mm": self.largest()} if self.lines else None

    def largest(self) -> dict:
        """Per probe and isotherm: the largest width, length and reach beyond the tip over the run (mm)."""
        out = {}
        for name, arrays in self.arrays().items():
            out[name] = {f"{level:g}": {k: float(np.max(arrays[f"{k}_mm"][:, i])) if len(arrays["time"]) else 0.0
                                        for k in ("width", "length", "beyond_tip")}
                         for i, level in enumerate(self.levels)}
        return out
