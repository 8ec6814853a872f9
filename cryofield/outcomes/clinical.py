"""The clinical reading of a run: did the nerve freeze enough, over enough length, and what else froze.

Inputs are the per-node minimum temperature over the run and the run's :class:`~cryofield.model.roles.RoleTable`
(stored in the result): regions of role ``nerve`` are the nerves, measured along the table's centrelines,
``artery`` the vessels, ``skin`` the skin; the table's :class:`~cryofield.model.roles.Thresholds` are the levels.
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

from cryofield.fem.geometry import arc_position, cell_volumes, corner_shares
from cryofield.fem.metrics import corner_radii, fraction_below
from cryofield.model.roles import GRADES, RoleTable
from cryofield.outcomes.fibres import FibreBundle, FibreReading, fibre_summary, untouched_summary


def clinical_summary(points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                     min_temperature: np.ndarray, roles: RoleTable, liquidus: dict[str, float], *,
                     time_below: np.ndarray | None = None, damage: np.ndarray | None = None,
                     walls: dict[str, np.ndarray] | None = None, targets: list[str] | None = None) -> dict | None:
    """The clinical block of the run summary, or None when no region is a nerve with a centreline.

    Parameters
    ----------
    points, tets, elem_region
        The mesh (metres) and each tetrahedron's index into ``region_names``.
    min_temperature
        (N,) minimum temperature over the run at each node (°C).
    roles
        The run's role table: which regions are nerves, vessels and skin, the nerves' centrelines, their end
        organs and the thresholds (recorded in the output under ``thresholds``).
    liquidus
        Per region: its tissue's liquidus (°C).
    time_below
        (N,) seconds each node spent at or below the injury level (−20 °C), for the nerves' dose.
    damage
        (N,) the threshold damage fraction (:func:`damage_fraction`), for the damaged volumes.
    walls
        Per vessel region: the nodes of its wall (the lumen's surface), judged instead of the lumen.
    targets
        The nerves the probes aim at; every other region's frozen volume is off target (default: all nerves).
    """
    reading = ClinicalReading(points, tets, elem_region, region_names, roles, liquidus)
    if not reading.nerves:
        return None
    return reading.summary(min_temperature, time_below=time_below, damage=damage, walls=walls, targets=targets)


class ClinicalReading:
    """The clinical reading of a nodal field on one mesh: the summary (:meth:`summary`) and the profiles
    along each nerve (:meth:`profiles`). Set up once per mesh and role table (docs/physics.md §4)."""

    def __init__(self, points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                 roles: RoleTable, liquidus: dict[str, float]):
        self.points, self.tets, self.elem_region, self.region_names = points, tets, elem_region, region_names
        self.roles, self.liquidus, self.limits = roles, liquidus, roles.thresholds
        self.nerves = [r for r in roles.regions_with("nerve") if len(roles.centrelines.get(r, [])) >= 2]
        self.node_sets = {r: np.unique(tets[elem_region == i]) for i, r in enumerate(region_names)}
        self.lesion = NerveLesion(points, tets, elem_region, region_names, roles.centrelines, self.nerves)
        self._volumes = None
        self._bundles: dict[str, FibreBundle] = {}

    @property
    def fibre_nerves(self) -> list[str]:
        """The nerves read fibre by fibre: all of them but on an axisymmetric mesh, whose nerves have no
        cross-section to sample."""
        return self.nerves if self.tets.shape[1] == 4 else []

    def bundle(self, nerve: str) -> FibreBundle:
        """The fibres of ``nerve`` (:class:`~cryofield.outcomes.fibres.FibreBundle`), set up on first use."""
        if nerve not in self._bundles:
            nerve_tets = self.tets[self.elem_region == self.region_names.index(nerve)]
            self._bundles[nerve] = FibreBundle(self.points, nerve_tets, np.asarray(self.roles.centrelines[nerve],
                                                                                   float), fibres=self.limits.fibres)
        return self._bundles[nerve]

    def touched(self, nerve: str, min_temperature: np.ndarray, level: float | None = None) -> bool:
        """Whether some node of ``nerve`` reached ``level`` (default: the warmest level a fibre is read or
        graded at); a nerve that did not has no fibre to read there, and its bundle need not be set up."""
        warmest = max(self.fibre_levels[0], self.limits.neurapraxia_c) if level is None else level
        return bool(float(min_temperature[self.node_sets[nerve]].min()) <= warmest)

    @property
    def fibre_levels(self) -> tuple[float, ...]:
        """The levels the fibres are read at: the thresholds' fibre levels and the injury level, warmest first."""
        return tuple(sorted(set(self.limits.fibre_levels_c) | {self.limits.injury_c}, reverse=True))

    def read_fibres(self, nerve: str, min_temperature: np.ndarray,
                    time_below: np.ndarray | None = None) -> FibreReading:
        """Every fibre of ``nerve`` read off the run's minimum temperature (and time at the injury level)."""
        below = None if time_below is None else {self.limits.injury_c: time_below}
        return self.bundle(nerve).read(min_temperature, below, self.fibre_levels, self.limits)

    def fibre_block(self, nerve: str, reading: FibreReading) -> dict:
        """A nerve's fibre summary (:func:`~cryofield.outcomes.fibres.fibre_summary`) with its relief forecast:
        how long until sensation returns, the injured axons regrowing from the lesion's proximal edge to the end
        of the nerve's territory at the regrowth rates."""
        limits = self.limits
        out = fibre_summary(reading, limits.injury_c, limits.complete_block_fraction, limits.fibre_min_length_mm)
        slow, fast = limits.regrowth_mm_per_day
        if out["to_end_mm"] is None:
            return out | {"relief": {"weeks": None, "reason": "no fibre was injured"}}
        if self.roles.centreline_source.get(nerve) != "mesh":
            return out | {"relief": {"weeks": None, "reason": "the centreline was estimated: which end is distal is "
                                                               "unknown"}}
        distance = out["to_end_mm"] + self.roles.end_organs.get(nerve, 0.0) * 1e3
        return out | {"relief": {"distance_mm": distance, "regrowth_mm_per_day": [slow, fast],
                                 "weeks": [distance / fast / 7.0, distance / slow / 7.0],
                                 "forecast": "sensory return (not pain relief) as the injured axons regrow"}}

    def fibres_of(self, nerve: str, min_temperature: np.ndarray, time_below: np.ndarray | None = None) -> dict:
        """A nerve's fibre block (:meth:`fibre_block`); for a nerve that stayed warmer than every level read and
        graded, without reading its fibres: none injured (:func:`~cryofield.outcomes.fibres.untouched_summary`)."""
        if not self.touched(nerve, min_temperature):
            limits = self.limits
            return untouched_summary(self.fibre_levels, limits.injury_c, limits.complete_block_fraction,
                                     limits.fibre_min_length_mm) | {"relief": {"weeks": None,
                                                                                "reason": "no fibre was injured"}}
        return self.fibre_block(nerve, self.read_fibres(nerve, min_temperature, time_below))

    @property
    def volumes(self) -> np.ndarray:
        if self._volumes is None:
            self._volumes = np.abs(cell_volumes(self.points, self.tets))
        return self._volumes

    def _radii(self, mine: np.ndarray) -> np.ndarray | None:
        """The corner radii of the selected elements of an axisymmetric mesh (None for tetrahedra)."""
        return corner_radii(self.points, self.tets[mine])

    def summary(self, min_temperature: np.ndarray, *, time_below: np.ndarray | None = None,
                damage: np.ndarray | None = None, walls: dict[str, np.ndarray] | None = None,
                targets: list[str] | None = None, fibres: dict[str, dict] | None = None) -> dict:
        """The clinical block (see :func:`clinical_summary` for the arguments). ``fibres``: each nerve's fibre
        summary as the run stored it (a result read back), instead of reading the fibres again."""
        limits, node_sets = self.limits, self.node_sets
        levels = sorted(set(limits.lesion_c) | {limits.injury_c, limits.neurotmesis_c, limits.neurapraxia_c},
                        reverse=True)
        by_level = {c: self.lesion(min_temperature, c) for c in levels}
        profiles = self.profiles(min_temperature, time_below)
        targets = [n for n in (targets or self.nerves) if n in self.nerves] or self.nerves
        out: dict = {"thresholds": limits.to_dict(), "thresholds_C": list(limits.lesion_c),
                     "durable_block_mm": limits.durable_block_mm, "targets": targets, "nerves": {}}
        for nerve in self.nerves:
            def length(c: float, part: str, nerve=nerve) -> float:
                value = by_level[c][nerve]
                return (value.whole if part == "whole" else value.any_part) * 1e3

            lengths = {f"{c:g}": {"whole_section_mm": length(c, "whole"), "any_part_mm": length(c, "any")}
                       for c in limits.lesion_c}
            injury, necrosis, slowing = limits.injury_c, limits.neurotmesis_c, limits.neurapraxia_c
            block = length(injury, "whole")
            entry = {
                "min_temperature_C": float(min_temperature[node_sets[nerve]].min()),
                "lesion_length": lengths,
                "grades": {
                    "neurapraxia": {"any_part_mm": length(slowing, "any") - length(injury, "any")},
                    "axonotmesis": {"any_part_mm": length(injury, "any") - length(necrosis, "any"),
                                    "whole_section_mm": block - length(necrosis, "whole")},
                    "neurotmesis": {"any_part_mm": length(necrosis, "any"),
                                    "whole_section_mm": length(necrosis, "whole")},
                },
                "block_length_mm": block,
                "durable_block": block >= limits.durable_block_mm,
                "segments": segments(profiles[nerve], limits) if nerve in profiles else [],
                "centreline": self.roles.centreline_source[nerve],
                "target": nerve in targets,
            }
            if time_below is not None:
                entry["max_time_below_injury_s"] = float(time_below[node_sets[nerve]].max())
            entry["recovery"] = self.recovery(nerve, min_temperature, entry["durable_block"])
            if fibres is not None:
                if nerve in fibres:
                    entry["fibres"] = fibres[nerve]
            elif nerve in self.fibre_nerves:
                entry["fibres"] = self.fibres_of(nerve, min_temperature, time_below)
            out["nerves"][nerve] = entry
        skin = [r for r in self.roles.regions_with("skin") if len(node_sets[r])]
        if skin:
            t_min = min(float(min_temperature[node_sets[r]].min()) for r in skin)
            edge = min(self.liquidus[r] for r in skin)
            froze = t_min <= edge
            out["skin"] = {"min_temperature_C": t_min, "froze": froze,
                           "frostbite": froze and t_min <= limits.frostbite_c,
                           "melanocyte_damage": t_min <= limits.melanocyte_c,
                           "reading": levels_reached(t_min, [(f"{limits.frostbite_c:g} C", limits.frostbite_c),
                                                             (f"its ice edge ({edge:.1f} C): frostbite", edge),
                                                             (f"{limits.melanocyte_c:g} C (melanocytes)",
                                                              limits.melanocyte_c)])}
        out["vessels"] = {}
        for vessel in self.roles.regions_with("artery"):
            if not len(node_sets[vessel]):
                continue
            t_min = float(min_temperature[node_sets[vessel]].min())
            wall = (walls or {}).get(vessel)
            judged = float(min_temperature[wall].min()) if wall is not None and len(wall) else t_min
            edge = self.liquidus[vessel]
            out["vessels"][vessel] = {
                "min_temperature_C": t_min, "froze": t_min <= edge, "thrombosis_risk": judged <= limits.thrombosis_c,
                "reading": levels_reached(t_min, [(f"its ice edge ({edge:.1f} C)", edge)]) + "; wall " + levels_reached(
                    judged, [(f"{limits.thrombosis_c:g} C (thrombosis)", limits.thrombosis_c)])}
            if wall is not None and len(wall):
                out["vessels"][vessel]["wall_min_temperature_C"] = judged
        out["off_target_frozen_mm3"] = self.frozen_volumes(min_temperature, exclude=targets)
        if damage is not None:
            out["damage"] = self.damaged_volumes(damage, min_temperature)
        return out

    def frozen_volumes(self, min_temperature: np.ndarray, exclude: list[str] = ()) -> dict[str, float]:
        """Volume (mm³) of each region (but ``exclude``) that froze: reached its tissue's liquidus (exact, P1)."""
        out = {}
        for i, name in enumerate(self.region_names):
            if name in exclude:
                continue
            mine = self.elem_region == i
            fraction = fraction_below(min_temperature[self.tets[mine]], self.liquidus[name], self._radii(mine))
            out[name] = float(np.sum(fraction * self.volumes[mine]) * 1e9)
        return out

    def damaged_volumes(self, damage: np.ndarray, min_temperature: np.ndarray) -> dict[str, dict[str, float]]:
        """Per region: the damaged volume (mm³, the damage fraction integrated, P1) and the necrotic one
        (where the tissue reached the necrosis level: exact, P1)."""
        damaged, necrotic = {}, {}
        for i, name in enumerate(self.region_names):
            mine = self.elem_region == i
            vol, corners = self.volumes[mine], self.tets[mine]
            mean = np.sum(damage[corners] * corner_shares(self.points, corners), axis=1)  # the P1 field's mean
            damaged[name] = float(np.sum(mean * vol) * 1e9)
            necrotic[name] = float(np.sum(fraction_below(min_temperature[corners], self.limits.necrosis_c,
                                                         self._radii(mine)) * vol) * 1e9)
        return {"damaged_mm3": damaged, "necrotic_mm3": necrotic}

    def recovery(self, nerve: str, min_temperature: np.ndarray, durable: bool) -> dict:
        """Weeks of expected block: from the lesion's proximal edge to the nerve's end organ at the regrowth
        rates of the thresholds (docs/physics.md §4)."""
        limits = self.limits
        slow, fast = limits.regrowth_mm_per_day
        out: dict = {"regrowth_mm_per_day": [slow, fast]}
        if not durable:
            return out | {"weeks": None, "reason": f"no durable block (less than {limits.durable_block_mm:g} mm of "
                                                   "the whole cross-section reached the injury level)"}
        if self.roles.centreline_source.get(nerve) != "mesh":
            return out | {"weeks": None, "reason": "the centreline was estimated: which end is distal is unknown"}
        extent = self.lesion.extent(nerve, min_temperature, limits.injury_c)
        covered = self.lesion.span(nerve)
        beyond = self.roles.end_organs.get(nerve, 0.0)
        distance = (covered[1] - extent[0] + beyond) * 1e3  # mm, proximal edge of the lesion to the end organ
        return out | {"distance_mm": distance, "end_organ_beyond_mm": beyond * 1e3,
                      "lesion_from_mm": (extent[0] - covered[0]) * 1e3,
                      "weeks": [distance / fast / 7.0, distance / slow / 7.0]}

    def profiles(self, min_temperature: np.ndarray, time_below: np.ndarray | None = None) -> dict[str, dict]:
        """Per nerve, stations every ``profile_mm`` along its centreline (``s_mm`` from its proximal end) and
        there, exactly for the P1 fields, the coldest and warmest minimum temperature of the cross-section,
        the longest time at or below the injury level, and the grades they mean (extent and whole section)."""
        out = {}
        for nerve in self.nerves:
            if nerve not in self.lesion.nerves:
                continue
            tets, s, _ = self.lesion.nerves[nerve]
            lo, hi = float(s.min()), float(s.max())
            step = self.limits.profile_mm * 1e-3
            stations = lo + step * (np.arange(max(int(np.floor((hi - lo) / step)), 1)) + 0.5)
            coldest, warmest = section_extremes(s, min_temperature[tets], stations)
            profile = {"s_mm": (stations - lo) * 1e3, "coldest_C": coldest, "warmest_C": warmest,
                       "grade": self.limits.grade(coldest), "whole_section_grade": self.limits.grade(warmest)}
            if time_below is not None:
                profile["time_below_injury_s"] = section_extremes(s, time_below[tets], stations)[1]
            out[nerve] = profile
        return out


def levels_reached(minimum: float, levels: list[tuple[str, float]]) -> str:
    """Which of the named ``levels`` (°C) a tissue's minimum temperature reached, in plain words, warmest first:
    the one reading of the skin and the vessels in print, in the JSON and in the pictures.

    Examples
    --------
    >>> levels_reached(-1.0, [("0 C", 0.0), ("its ice edge (-1.2 C)", -1.2), ("-4 C (melanocytes)", -4.0)])
    'min -1.0 C: reached 0 C; not its ice edge (-1.2 C), not -4 C (melanocytes)'
    >>> levels_reached(30.0, [("-15 C (thrombosis)", -15.0)])
    'min 30.0 C: reached none; not -15 C (thrombosis)'
    """
    ordered = sorted(levels, key=lambda level: -level[1])
    reached = [name for name, c in ordered if minimum <= c]
    missed = [f"not {name}" for name, c in ordered if minimum > c]
    return f"min {minimum:.1f} C: reached {', '.join(reached) or 'none'}" + (f"; {', '.join(missed)}" if missed else "")


def section_extremes(s: np.ndarray, values: np.ndarray, stations: np.ndarray,
                     chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Least and greatest of a P1 field over the cross-sections ``s = station`` of a set of tetrahedra.

    ``s`` and ``values`` are (E, 4) per-node positions along the nerve and field values. The section of a
    tetrahedron is a polygon whose corners are where ``s`` crosses an edge; a linear field's extremes over
    it lie at those corners, so the extremes are exact. NaN where no tetrahedron reaches a station.

    Examples
    --------
    >>> s = np.array([[0.0, 1.0, 0.0, 0.0]]); v = np.array([[0.0, 10.0, 4.0, -2.0]])
    >>> [x.tolist() for x in section_extremes(s, v, np.array([0.5, 2.0]))]
    [[4.0, nan], [7.0, nan]]
    """
    a, b = TET_EDGES[:, 0], TET_EDGES[:, 1]
    sa, sb, va, vb = s[:, a].ravel(), s[:, b].ravel(), values[:, a].ravel(), values[:, b].ravel()
    keep = sa != sb
    sa, sb, va, vb = sa[keep], sb[keep], va[keep], vb[keep]
    lo_edge, hi_edge = np.minimum(sa, sb), np.maximum(sa, sb)
    least, greatest = np.full(len(stations), np.nan), np.full(len(stations), np.nan)
    for start in range(0, len(stations), chunk):
        x = stations[start:start + chunk]
        near = np.flatnonzero((lo_edge <= x.max()) & (hi_edge >= x.min()))
        if not len(near):
            continue
        cross = (lo_edge[near][None] <= x[:, None]) & (hi_edge[near][None] >= x[:, None])
        w = (x[:, None] - sa[near][None]) / (sb[near] - sa[near])[None]
        v = va[near][None] + w * (vb[near] - va[near])[None]
        some = cross.any(axis=1)
        least[start:start + chunk] = np.where(some, np.where(cross, v, np.inf).min(axis=1), np.nan)
        greatest[start:start + chunk] = np.where(some, np.where(cross, v, -np.inf).max(axis=1), np.nan)
    return least, greatest


def segments(profile: dict, limits) -> list[dict]:
    """The injured stretches of a nerve along its centreline: consecutive stations of one grade (by the
    coldest part of the section) merged, with their ends and lengths (mm) and whether the whole section
    reached that grade everywhere along them."""
    grade, whole, s = profile["grade"], profile["whole_section_grade"], profile["s_mm"]
    step = limits.profile_mm
    out = []
    i = 0
    while i < len(grade):
        j = i
        while j + 1 < len(grade) and grade[j + 1] == grade[i]:
            j += 1
        if grade[i] > 0:
            out.append({"grade": GRADES[int(grade[i])], "from_mm": float(s[i] - step / 2),
                        "to_mm": float(s[j] + step / 2), "length_mm": float((j - i + 1) * step),
                        "whole_section": bool(np.all(whole[i:j + 1] >= grade[i]))})
        i = j + 1
    return out


def damage_fraction(min_temperature: np.ndarray, time_below_damage: np.ndarray, limits) -> np.ndarray:
    """The threshold damage fraction of each node (docs/physics.md §4): 1 at or below ``necrosis_c``, else
    ``min(1, time at or below damage_c / damage_s)``.

    Examples
    --------
    >>> from cryofield.model.roles import Thresholds
    >>> damage_fraction(np.array([5.0, -5.0, -5.0, -25.0]), np.array([0.0, 25.0, 80.0, 1.0]), Thresholds()).tolist()
    [0.0, 0.5, 1.0, 1.0]
    """
    fraction = np.clip(np.asarray(time_below_damage, float) / limits.damage_s, 0.0, 1.0)
    return np.where(np.asarray(min_temperature) <= limits.necrosis_c, 1.0, fraction)


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

    def span(self, name: str) -> tuple[float, float]:
        """The positions (m) along the centreline the nerve's mesh covers, first to last."""
        _, s, _ = self.nerves[name]
        return float(s.min()), float(s.max())

    def extent(self, name: str, temperature: np.ndarray, level: float) -> tuple[float, float] | None:
        """First and last position (m) along the centreline where some of the section is at or below ``level``."""
        tets, s, _ = self.nerves[name]
        T = temperature[tets]
        lo, hi = _extent(s, T, T <= level, level)
        return (float(lo.min()), float(hi.max())) if len(lo) else None

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
