"""The clinical reading of a run: did the nerve freeze enough, over enough length, and what else froze.

Inputs are the per-node minimum temperature over the run and the run's :class:`~cryofield.roles.RoleTable`
(stored in the result): regions of role ``nerve`` are the nerves, measured along the table's centrelines,
``artery`` the vessels, ``skin`` the skin; the table's :class:`~cryofield.roles.Thresholds` are the levels.
The pictures (:mod:`cryofield.viz`) read the same table, so the printed and drawn roles and lengths agree.

Lesion length along a nerve (docs/physics.md §4), exact for the P1 field (:class:`NerveLesion`): for a
threshold ``c``,

* ``whole_section``: the length of nerve over which the *whole* cross-section reached ``c``, i.e. over
  which all axons were exposed: the length that blocks conduction;
* ``any_part``: the length over which *some* of the cross-section reached ``c`` (the lesion's extent).

Lengths are measured at each of ``Thresholds.lesion_c`` (−20 °C, the onset of axonotmesis, and −40 °C).
A durable block needs a whole-section lesion of at least ``Thresholds.durable_block_mm`` at the first level.
Skin and vessels report their minimum temperature and whether they froze (reached their tissue's
liquidus, the edge of the ice); the skin also whether it reached ``Thresholds.melanocyte_c``, vessels
whether they reached ``Thresholds.thrombosis_c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .roles import RoleTable


def clinical_summary(points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                     min_temperature: np.ndarray, roles: RoleTable,
                     liquidus: dict[str, float]) -> dict | None:
    """The clinical block of the run summary, or None when no region is a nerve with a centreline.

    Parameters
    ----------
    points, tets, elem_region
        The mesh (metres) and each tetrahedron's index into ``region_names``.
    min_temperature
        (N,) minimum temperature over the run at each node (°C).
    roles
        The run's role table: which regions are nerves, vessels and skin, the nerves' centrelines and the
        thresholds (recorded in the output under ``thresholds``).
    liquidus
        Per region: its tissue's liquidus (°C).
    """
    limits = roles.thresholds
    nerves = [r for r in roles.regions_with("nerve") if len(roles.centrelines.get(r, [])) >= 2]
    if not nerves:
        return None
    node_sets = {r: np.unique(tets[elem_region == i]) for i, r in enumerate(region_names)}
    out: dict = {"thresholds": limits.to_dict(), "thresholds_C": list(limits.lesion_c),
                 "durable_block_mm": limits.durable_block_mm, "nerves": {}}
    lesion = NerveLesion(points, tets, elem_region, region_names, roles.centrelines, nerves)
    by_level = {c: lesion(min_temperature, c) for c in limits.lesion_c}
    for nerve in nerves:
        lengths = {f"{c:g}": {"whole_section_mm": by_level[c][nerve].whole * 1e3,
                              "any_part_mm": by_level[c][nerve].any_part * 1e3} for c in limits.lesion_c}
        out["nerves"][nerve] = {
            "min_temperature_C": float(min_temperature[node_sets[nerve]].min()),
            "lesion_length": lengths,
            "durable_block": lengths[f"{limits.injury_c:g}"]["whole_section_mm"] >= limits.durable_block_mm,
            "centreline": roles.centreline_source[nerve],
        }
    skin = [r for r in roles.regions_with("skin") if len(node_sets[r])]
    if skin:
        t_min = min(float(min_temperature[node_sets[r]].min()) for r in skin)
        out["skin"] = {"min_temperature_C": t_min, "froze": t_min <= min(liquidus[r] for r in skin),
                       "melanocyte_damage": t_min <= limits.melanocyte_c}
    out["vessels"] = {}
    for vessel in roles.regions_with("artery"):
        if not len(node_sets[vessel]):
            continue
        t_min = float(min_temperature[node_sets[vessel]].min())
        out["vessels"][vessel] = {"min_temperature_C": t_min, "froze": t_min <= liquidus[vessel],
                                  "thrombosis_risk": t_min <= limits.thrombosis_c}
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
