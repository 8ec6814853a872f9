"""The clinical reading of a run: did the nerve freeze enough, over enough length, and what else froze.

Inputs are the per-node minimum temperature over the run and the mesh metadata's nerve centrelines
(``Mesh.metadata``, as the occipital phantom writes them). Regions play roles by their tissue: library
``nerve`` with a centreline is a nerve, ``blood`` with a centreline a vessel, ``skin`` the skin.

Lesion length along a nerve (PHYSICS.md §4), exact for the P1 field (:class:`NerveLesion`): for a
threshold ``c``,

* ``whole_section``: the length of nerve over which the *whole* cross-section reached ``c``, i.e. over
  which all axons were exposed: the length that blocks conduction;
* ``any_part``: the length over which *some* of the cross-section reached ``c`` (the lesion's extent).

Thresholds are −20 °C (onset of axonotmesis, Sunderland II) and −40 °C. A durable block needs a
whole-section lesion of at least :data:`DURABLE_BLOCK_MM` at −20 °C. Skin and vessels report their
minimum temperature and whether they froze (reached their tissue's liquidus, the edge of the ice);
vessels also whether they reached :data:`THROMBOSIS_C`. The pictures (:mod:`cryofield.viz`) use the same
measure, so the printed and drawn lengths agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLDS_C = (-20.0, -40.0)
DURABLE_BLOCK_MM = 4.0
THROMBOSIS_C = -15.0  # vessels thrombose at -15 to -20 °C (PHYSICS.md §4)
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
        ``Mesh.metadata`` with ``centerlines`` (metres).
    library, liquidus
        Per region: its tissue library entry (or None for a custom tissue) and its liquidus (°C).
    """
    centerlines = {k: np.asarray(v, float) for k, v in metadata.get("centerlines", {}).items()}
    nerves = [r for r in region_names if library.get(r) == "nerve" and len(centerlines.get(r, [])) >= 2]
    if not nerves:
        return None
    node_sets = {r: np.unique(tets[elem_region == i]) for i, r in enumerate(region_names)}
    out: dict = {"thresholds_C": list(THRESHOLDS_C), "durable_block_mm": DURABLE_BLOCK_MM, "nerves": {}}
    lesion = NerveLesion(points, tets, elem_region, region_names, centerlines, nerves)
    by_level = {c: lesion(min_temperature, c) for c in THRESHOLDS_C}
    for nerve in nerves:
        lengths = {f"{c:g}": {"whole_section_mm": by_level[c][nerve].whole * 1e3,
                              "any_part_mm": by_level[c][nerve].any_part * 1e3} for c in THRESHOLDS_C}
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


@dataclass(frozen=True)
class Lengths:
    """Length (m) of a nerve at or below a temperature: where any part of its cross-section is (the extent
    of the lesion) and where the whole cross-section is (a complete lesion)."""

    any_part: float
    whole: float


#: The six edges of a tetrahedron, as pairs of its local node indices.
TET_EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


class NerveLesion:
    """Lengths along each nerve at or below a temperature, for any nodal temperature field.

    Positions along a nerve are arc lengths of the nearest point of its centreline, linear within each of
    its tetrahedra. Inside a tetrahedron the (P1) temperature is linear too, so the part at or below the
    level is a convex piece whose extent along the nerve runs between its extreme vertices: the cold nodes
    and the points where the level crosses an edge. A position along the nerve has some of its
    cross-section that cold when a cold piece spans it, and all of it when no warm piece does. The
    lengths are those of the unions of these spans, exact for the P1 field.
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                 centerlines: dict[str, np.ndarray], nerves: list[str]):
        self.nerves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        for name in nerves:
            nerve_tets = tets[elem_region == region_names.index(name)]
            line = centerlines.get(name, [])
            if len(nerve_tets) == 0 or len(line) < 2:
                continue
            nodes, local = np.unique(nerve_tets, return_inverse=True)
            s = arc_position(np.asarray(line, float), points[nodes])[local.reshape(nerve_tets.shape)]
            self.nerves[name] = (nerve_tets, s, union_length(s.min(axis=1), s.max(axis=1)))

    def __call__(self, temperature: np.ndarray, level: float) -> dict[str, Lengths]:
        out = {}
        for name, (tets, s, covered) in self.nerves.items():
            T = temperature[tets]
            cold_lo, cold_hi = _extent(s, T, T <= level, level)
            warm_lo, warm_hi = _extent(s, T, T > level, level)
            out[name] = Lengths(union_length(cold_lo, cold_hi), covered - union_length(warm_lo, warm_hi))
        return out


def _extent(s: np.ndarray, T: np.ndarray, inside: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Span along the nerve of the part of each tetrahedron on one side of ``level`` (only those that have
    one): its nodes on that side and the points where the level crosses an edge."""
    a, b = TET_EDGES[:, 0], TET_EDGES[:, 1]
    crosses = inside[:, a] != inside[:, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.clip((level - T[:, a]) / (T[:, b] - T[:, a]), 0.0, 1.0)
    s_cross = s[:, a] + w * (s[:, b] - s[:, a])
    lo = np.minimum(np.where(inside, s, np.inf).min(axis=1), np.where(crosses, s_cross, np.inf).min(axis=1))
    hi = np.maximum(np.where(inside, s, -np.inf).max(axis=1), np.where(crosses, s_cross, -np.inf).max(axis=1))
    some = inside.any(axis=1)
    return lo[some], hi[some]


def arc_position(line: np.ndarray, points: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Arc length (m) along a polyline of each point's nearest point on it."""
    a, b = line[:-1], line[1:]
    ab = b - a
    length2 = np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30)
    start = np.concatenate([[0.0], np.cumsum(np.sqrt(length2))[:-1]])
    out = np.empty(len(points))
    for i in range(0, len(points), chunk):
        rel = points[i:i + chunk, None, :] - a[None]
        t = np.clip(np.einsum("ijk,jk->ij", rel, ab) / length2, 0.0, 1.0)
        dist2 = np.sum((rel - t[..., None] * ab[None]) ** 2, axis=2)
        j = np.argmin(dist2, axis=1)
        out[i:i + chunk] = start[j] + t[np.arange(len(j)), j] * np.sqrt(length2[j])
    return out


def union_length(lo: np.ndarray, hi: np.ndarray) -> float:
    """Total length of the union of intervals ``[lo, hi]``.

    Examples
    --------
    >>> union_length(np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 6.0]))
    4.0
    """
    if len(lo) == 0:
        return 0.0
    order = np.argsort(lo)
    lo, hi = lo[order], hi[order]
    reach = np.maximum.accumulate(hi)
    starts = np.flatnonzero(np.concatenate([[True], lo[1:] > reach[:-1]]))
    ends = np.concatenate([starts[1:], [len(lo)]]) - 1
    return float(np.sum(reach[ends] - lo[starts]))
