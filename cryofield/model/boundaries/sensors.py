"""The thermocouple of a ``controlled`` probe (docs/physics.md §5): where it is (``sensor`` keys) and how it
reads the solution, with fixed nodes and weights found once.

It sits inside the tip (the mean over the hemispherical end of the active surface), on the active surface
(its area mean) or at a point in the tissue (read with the P1 weights of the element holding it). This
module defines no model of its own, so it registers nothing.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import model_validator

from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.model.boundaries import Context, Params, SolverView, Surface


class Sensor(Params):
    """Where the thermocouple is: ``tip`` (inside the tip: the mean over the hemispherical end of the
    active surface, of the middle needle of a multi-needle tip), ``surface`` (the area mean of the
    active surface) or ``point`` (a point in the tissue, in the mesh's units, read with P1 weights)."""

    at: Literal["tip", "surface", "point"] = "tip"
    point: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _point(self):
        if self.point is not None and self.at == "tip":
            object.__setattr__(self, "at", "point")
        if (self.at == "point") != (self.point is not None):
            raise ValueError("a point sensor needs its 'point' ([x, y, z] in the mesh's units), and only it")
        return self


class SensorReader:
    """Reads a sensor from the solution: fixed nodes and weights (area or barycentric), found once.

    Parameters
    ----------
    sensor
        Where the sensor is.
    surface
        The probe's active surface.
    context
        The mesh and the probe's pose (for a tip or a tissue point).
    """

    def __init__(self, sensor: Sensor, surface: Surface, context: Context):
        self.nodes, self.weights = surface.nodes, surface.area / surface.area.sum()
        self.where = "surface mean"
        if sensor.at == "point":
            x = np.asarray(sensor.point, float) * context.length_scale
            self.nodes, self.weights = locate(context.points, context.tets, x, f"{context.key}.sensor.point")
            self.where = f"tissue point {list(sensor.point)}"
        elif sensor.at == "tip":
            tip = _tip_nodes(surface, context)
            if tip is not None:
                self.nodes, self.weights = tip
                self.where = "inside the tip"
            else:
                self.where = "surface mean (the mesh gives no probe pose for a tip)"

    def read(self, view: SolverView) -> float:
        """The sensor's temperature (°C) now."""
        return float(self.weights @ view.temperature_at(self.nodes))


def _tip_nodes(surface: Surface, context: Context) -> tuple[np.ndarray, np.ndarray] | None:
    """The active-surface nodes on the hemispherical end of the (middle) needle, area weights; None
    without a pose."""
    pose = (context.metadata.get("probes") or {}).get(context.name)
    if not pose or "tip" not in pose or "axis" not in pose or context.points is None:
        return None
    tips = pose.get("needles") or [pose["tip"]]
    apex = np.asarray(tips[len(tips) // 2], float)
    axis = np.asarray(pose["axis"], float) / np.linalg.norm(pose["axis"])
    radius = 0.5 * float(pose.get("diameter", 0.0))
    rel = context.points[surface.nodes] - apex
    along = rel @ axis
    near = np.linalg.norm(rel, axis=1) <= 2.5 * max(radius, 1e-9)
    cap = near & (along <= radius * 1.001)
    if cap.sum() < 3:
        cap = np.argsort(np.linalg.norm(rel, axis=1))[:4]
        return surface.nodes[cap], np.full(len(cap), 0.25)
    return surface.nodes[cap], surface.area[cap] / surface.area[cap].sum()


def locate(points: np.ndarray, tets: np.ndarray, x: np.ndarray, key: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The nodes of the element holding ``x`` (m) and its barycentric (P1) weights there
    (:func:`cryofield.fem.geometry.locate_points`).

    Raises
    ------
    InputError
        When ``x`` lies outside the mesh (naming ``key``).
    """
    nodes, weights, found = fem.locate_points(points, tets, np.asarray(x, float)[None], candidates=64)
    if not found[0]:
        raise InputError(f"the sensor point {np.round(x * 1e3, 3).tolist()} mm lies outside the mesh (or in a hole)",
                         key=key or None)
    return nodes[0], weights[0]
