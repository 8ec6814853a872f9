"""The clinical reading of a run: did the nerve freeze enough, over enough length, and what else froze.

Inputs are the per-node minimum temperature over the run and the mesh metadata's centrelines and
diameters (``Mesh.metadata``, as the occipital phantom writes them). Regions play roles by their tissue:
library ``nerve`` with a centreline is a nerve, ``blood`` with a centreline a vessel, ``skin`` the skin.

Lesion length along a nerve (PHYSICS.md §4). The centreline is walked in steps of :data:`STEP_MM`;
at each station the nerve's cross-section (a disc of its diameter, normal to the centreline) is
sampled at :data:`SECTION_POINTS` points, where the minimum-temperature field is interpolated
linearly (P1). For a threshold ``c``:

* ``whole_section``: the longest run of consecutive stations at which *every* sample reached ``c``,
  i.e. the length over which all axons were exposed: the length that blocks conduction;
* ``any_part``: the longest run at which *some* sample reached ``c`` (a partial lesion).

Thresholds are −20 °C (onset of axonotmesis, Sunderland II) and −40 °C. A durable block needs a
whole-section lesion of at least :data:`DURABLE_BLOCK_MM` at −20 °C. Skin and vessels report their
minimum temperature and whether they froze (reached their tissue's liquidus, the edge of the ice);
vessels also whether they reached :data:`THROMBOSIS_C`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .mesh.checks import signed_volumes

THRESHOLDS_C = (-20.0, -40.0)
DURABLE_BLOCK_MM = 4.0
THROMBOSIS_C = -15.0  # vessels thrombose at -15 to -20 °C (PHYSICS.md §4)
STEP_MM = 0.1
#: Sample points of a cross-section: the centre and rings at a third, two thirds and all of the radius
#: (the surface, where the nerve is coldest on the probe's side and warmest on the other).
SECTION_RINGS = ((0.0, 1), (1 / 3, 6), (2 / 3, 12), (1.0, 18))
SECTION_POINTS = sum(n for _, n in SECTION_RINGS)
_CANDIDATES = 12  # nearest tetrahedra (by centroid) tried when locating a point
#: Tetrahedra with a node this close to a nerve's surface (m) are searched for its section samples.
NEAR_M = 0.5e-3


def clinical_summary(points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                     min_temperature: np.ndarray, metadata: dict, library: dict[str, str | None],
                     liquidus: dict[str, float]) -> dict | None:
    """The clinical block of the run summary, or None when the mesh has no nerve centreline.

    Parameters
    ----------
    points, tets, elem_region
        The mesh (metres) and each tetrahedron's index into ``region_names``.
    min_temperature
        (N,) minimum temperature over the run at each node (°C).
    metadata
        ``Mesh.metadata`` with ``centerlines`` and ``diameters`` (metres).
    library, liquidus
        Per region: its tissue library entry (or None for a custom tissue) and its liquidus (°C).
    """
    centerlines, diameters = metadata.get("centerlines", {}), metadata.get("diameters", {})
    nerves = [r for r in region_names if library.get(r) == "nerve" and r in centerlines and r in diameters]
    if not nerves:
        return None
    node_sets = {r: np.unique(tets[elem_region == i]) for i, r in enumerate(region_names)}
    out: dict = {"thresholds_C": list(THRESHOLDS_C), "durable_block_mm": DURABLE_BLOCK_MM, "nerves": {}}
    for nerve in nerves:
        line = np.asarray(centerlines[nerve], float)
        section = _section_values(points, tets, min_temperature, line, diameters[nerve] / 2)
        lengths = {f"{c:g}": {"whole_section_mm": _longest_run(section.max(axis=1) <= c) * STEP_MM,
                              "any_part_mm": _longest_run(section.min(axis=1) <= c) * STEP_MM}
                   for c in THRESHOLDS_C}
        out["nerves"][nerve] = {
            "min_temperature_C": float(min_temperature[node_sets[nerve]].min()),
            "lesion_length": lengths,
            "durable_block": lengths[f"{THRESHOLDS_C[0]:g}"]["whole_section_mm"] >= DURABLE_BLOCK_MM,
        }
    skin = [r for r in region_names if library.get(r) == "skin"]
    if skin:
        t_min = min(float(min_temperature[node_sets[r]].min()) for r in skin)
        out["skin"] = {"min_temperature_C": t_min, "froze": t_min <= min(liquidus[r] for r in skin)}
    vessels = [r for r in region_names if library.get(r) == "blood" and r in centerlines]
    out["vessels"] = {}
    for vessel in vessels:
        t_min = float(min_temperature[node_sets[vessel]].min())
        out["vessels"][vessel] = {"min_temperature_C": t_min, "froze": t_min <= liquidus[vessel],
                                  "thrombosis_risk": t_min <= THROMBOSIS_C}
    return out


def _section_values(points: np.ndarray, tets: np.ndarray, field: np.ndarray, line: np.ndarray,
                    radius: float) -> np.ndarray:
    """(S, SECTION_POINTS) field at the cross-section samples of each station whose section is in the mesh."""
    stations, tangents = _resample(line, STEP_MM * 1e-3)
    near = cKDTree(stations).query(points, distance_upper_bound=radius + NEAR_M)[0] < np.inf
    locator = _Locator(points, tets[near[tets].any(axis=1)])
    samples = stations[:, None, :] + _disc(tangents, radius)
    values = locator.interpolate(field, samples.reshape(-1, 3)).reshape(len(stations), -1)
    return values[np.isfinite(values).all(axis=1)]


def _resample(line: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step`` of arc length along a polyline, and unit tangents there."""
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.arange(0.0, s[-1], step)
    pts = np.column_stack([np.interp(at, s, line[:, k]) for k in range(3)])
    index = np.clip(np.searchsorted(s, at, side="right") - 1, 0, len(seg) - 1)
    tangents = (line[index + 1] - line[index]) / seg[index, None]
    return pts, tangents


def _disc(tangents: np.ndarray, radius: float) -> np.ndarray:
    """(S, P, 3) offsets of the cross-section samples, in the plane normal to each tangent."""
    helper = np.where(np.abs(tangents[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    e1 = np.cross(tangents, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(tangents, e1)
    rings = []
    for fraction, count in SECTION_RINGS:
        angle = 2 * np.pi * np.arange(count) / count
        rings.append(fraction * radius * (np.cos(angle)[None, :, None] * e1[:, None]
                                          + np.sin(angle)[None, :, None] * e2[:, None]))
    return np.concatenate(rings, axis=1)


def _longest_run(flags: np.ndarray) -> int:
    """Length of the longest run of True."""
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


class _Locator:
    """Finds the tetrahedron holding a point (among the nearest by centroid) for P1 interpolation."""

    def __init__(self, points: np.ndarray, tets: np.ndarray):
        self.points, self.tets = points, tets
        p = points[tets]
        self.tree = cKDTree(p.mean(axis=1))
        jac = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], axis=2)
        good = np.abs(signed_volumes(points, tets)) > 0
        self.inverse = np.zeros_like(jac)
        self.inverse[good] = np.linalg.inv(jac[good])

    def interpolate(self, field: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Linear interpolation of a nodal field at ``x``; NaN outside the mesh."""
        if len(self.tets) < _CANDIDATES:
            return np.full(len(x), np.nan)
        _, cand = self.tree.query(x, k=_CANDIDATES)
        rel = x[:, None, :] - self.points[self.tets[cand, 0]]
        lam = np.einsum("ckij,ckj->cki", self.inverse[cand], rel)
        bary = np.concatenate([1 - lam.sum(axis=2, keepdims=True), lam], axis=2)
        ok = bary.min(axis=2) >= -1e-9
        first = np.argmax(ok, axis=1)
        found = ok[np.arange(len(x)), first]
        tet = cand[np.arange(len(x)), first]
        w = bary[np.arange(len(x)), first]
        values = np.einsum("ck,ck->c", w, field[self.tets[tet]])
        return np.where(found, values, np.nan)
