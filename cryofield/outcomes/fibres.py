"""Reading a nerve fibre by fibre: what fraction of its axons was injured anywhere along its course.

Conduction is carried axon by axon, and an axon degenerates distal to the point where it was injured
(Wallerian degeneration), so a nerve is blocked in proportion to the *fraction of its axons* that reached an
injury level somewhere along their course, whatever the length or place of the cold stretch. The section
lengths of :mod:`cryofield.outcomes.clinical` (whole section, any part) bound that fraction; this module
measures it.

A :class:`FibreBundle` is set up once per nerve (mesh, the nerve's tetrahedra, its centreline): it lays a
frame along the centreline (tangent and two normals transported without twist), samples the nerve's
cross-section with fibres of equal area (one jittered sample per cell of a square grid), carries each
fibre along the nerve at fixed offsets in that frame and locates its path points in the nerve's tetrahedra
once. :meth:`FibreBundle.read` then reads any nodal field along every fibre (P1 interpolation): each
fibre's minimum temperature, where along the nerve it was coldest, how long it stayed below each level
there, and how much of its length was below each level. The summaries (:func:`grade_fractions`,
:func:`injured_fractions`, :func:`verdict`, :func:`injured_from_mm`, :func:`fibre_summary`) are pure
functions of those per-fibre arrays.

Positions along the nerve (``s``) are arc lengths from the proximal end of the centreline (its first
point); a nerve that runs on beyond either end of its centreline is followed along the end segment's line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cryofield.fem.geometry import arc_position, cell_volumes
from cryofield.model.roles import GRADES, THRESHOLDS, Thresholds

#: The levels (°C) at which injured fractions are read by default, warmest first.
DEFAULT_LEVELS = THRESHOLDS.fibre_levels_c

#: Default number of fibres per nerve: the injured fraction of a straight cut through a disc is then within
#: 1 % of the exact one (tests/outcomes/test_fibres.py).
DEFAULT_FIBRES = THRESHOLDS.fibres

#: Station spacing, as a fraction of the nerve's equivalent radius, and its upper bound (m): a 1 mm cold
#: stretch is crossed by at least four stations. A fibre's minimum is read at the stations; where it is
#: coldest its temperature is flat along it (a minimum), so the sampling error is of second order in the step.
STEP_PER_RADIUS = 0.2
MAX_STEP = 0.25e-3

#: Barycentric tolerance of the point location (a point this far outside a tetrahedron is still in it).
LOCATE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class FibreReading:
    """Per-fibre values of one reading (:meth:`FibreBundle.read`); fibres have equal cross-section areas.

    Attributes
    ----------
    levels
        (n,) the levels (°C), warmest first.
    min_temperature
        (K,) each fibre's minimum temperature along its path (°C): the least of its path points, so within
        ``|dT/ds| step / 2`` of the P1 field's least along it (a few tenths of a degree per 10 °C/mm).
    coldest_station, coldest_mm
        (K,) index into :attr:`FibreBundle.stations` and position along the nerve (mm) of its coldest point.
    time_below_s
        (n, K) seconds at or below each level at the fibre's coldest point (NaN where no field was given).
    length_below_mm
        (n, K) length of the fibre's path at or below each level (mm).
    first_below_mm
        (n, K) the proximal-most position along the nerve (mm) where the fibre reached each level (NaN: never).
    grade
        (K,) the injury grade of its minimum temperature (:meth:`Thresholds.grade`, :data:`GRADES`).
    u_mm, v_mm
        (K,) the fibre's offsets from the centreline along the frame's normals (mm), to draw the section.
    span_mm
        The first and last station along the nerve (mm).
    """

    levels: np.ndarray
    min_temperature: np.ndarray
    coldest_station: np.ndarray
    coldest_mm: np.ndarray
    time_below_s: np.ndarray
    length_below_mm: np.ndarray
    first_below_mm: np.ndarray
    grade: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray
    span_mm: tuple[float, float]

    def level_index(self, level: float) -> int:
        """The row of ``level`` in the per-level arrays; ValueError when it was not read."""
        hit = np.flatnonzero(np.isclose(self.levels, float(level), rtol=0.0, atol=1e-9))
        if not len(hit):
            raise ValueError(f"level {level:g} °C was not read (levels: {self.levels.tolist()})")
        return int(hit[0])


class FibreBundle:
    """The fibres of one nerve: their offsets in the cross-section and where their paths lie in the mesh.

    Parameters
    ----------
    points
        (N, 3) mesh nodes (m).
    tets
        (E, 4) the nerve region's tetrahedra.
    line
        (L, 3) the nerve's centreline (m), proximal end first, L >= 2.
    fibres
        The number of fibres to aim for (the count kept is within a few per cent of it: equal-area samples of
        the unit disc mapped onto each station's section). The default (:data:`DEFAULT_FIBRES`) reads the
        fraction of a disc beyond a straight cut to within 1 %, and the error falls with the count as jittered
        sampling does (tests/outcomes/test_fibres.py checks both; figures in docs/physics.md §4).
    step
        Spacing of the stations along the nerve (m); default a tenth of the nerve's equivalent radius, at
        most 0.2 mm.
    candidates
        Each path point is found by walking from the fibre's tetrahedron at the station before; where the walk
        fails (outside the nerve, a concave surface), this many tetrahedra with the nearest centroids are tried.
    seed
        Seed of the jitter of the samples in their grid cells (the reading is reproducible).

    Attributes
    ----------
    stations
        (S,) positions of the stations along the nerve (m).
    centre, tangent, normal, binormal
        (S, 3) the centreline and its frame at the stations.
    offsets
        (K, 2) each fibre's ``(u, v)`` offset (m) along ``normal`` and ``binormal``.
    inside
        (K, S) whether each fibre's path point at each station lies in the nerve.
    radius
        The nerve's equivalent radius (m): that of a disc of its mean cross-section.

    Examples
    --------
    >>> points, tets = _block_nerve()
    >>> bundle = FibreBundle(points, tets, [[0, 0, 0], [0, 0, 2e-3]], fibres=100)
    >>> reading = bundle.read(-20.0 + 4e4 * points[:, 0], levels=(-20.0,))  # -20 °C on x = 0: half the nerve
    >>> bundle.n_fibres, round(injured_fractions(reading)[-20.0], 1)  # a square read through its moment ellipse
    (90, 0.5)
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, line: np.ndarray, fibres: int = DEFAULT_FIBRES,
                 step: float | None = None, candidates: int = 8, seed: int = 0):
        points, tets, line = _checked(points, tets, line, fibres, step)
        self.points, self.tets = points, tets
        nodes = np.unique(tets)
        s_nodes = _arc_extended(line, points[nodes])
        lo, hi = float(s_nodes.min()), float(s_nodes.max())
        if not hi > lo:
            raise ValueError("tets: the nerve has no extent along its centreline")
        area = float(np.sum(np.abs(cell_volumes(points, tets)))) / (hi - lo)
        self.radius = float(np.sqrt(area / np.pi))
        step = float(step) if step is not None else min(STEP_PER_RADIUS * self.radius, MAX_STEP)
        self.stations = np.linspace(lo, hi, int(np.ceil((hi - lo) / step)) + 1)
        self.centre, self.tangent = _along(line, self.stations)
        self.normal = _transported_normals(self.centre, self.tangent)
        self.binormal = np.cross(self.tangent, self.normal)
        # each node's station, for the cheap reading of :meth:`reached_fraction`
        width = self.stations[1] - lo
        nearest = np.clip(np.rint((s_nodes - lo) / width).astype(int), 0, len(self.stations) - 1)
        self._reach = int(np.ceil(_longest_edge(points, tets) / width)) + 1
        self._node_station, self._nerve_nodes = np.full(len(points), -1), nodes
        self._node_station[nodes] = nearest
        # the section at each station, an ellipse with the second moments of the nerve's volume near it: a
        # fibre keeps its place in it (a point of the unit disc) wherever the centreline runs off the nerve's
        # axis or the section turns or flattens, as an axon keeps its place in its fascicle
        self.section_centre, self.section_axes = _sections(points, tets, line, self.stations, self.centre,
                                                           self.normal, self.binormal, self._reach)
        disc = _jittered_grid((-1.0, 1.0), (-1.0, 1.0), np.sqrt(np.pi / fibres), seed)
        disc = disc[np.hypot(disc[:, 0], disc[:, 1]) <= 1.0]
        elem, lam = _Locator(points, tets, candidates).paths(self._paths(disc))
        inside = elem >= 0
        keep = inside.any(axis=1)  # a fibre that never enters the nerve is outside its cross-section
        self.disc, self.inside = disc[keep], inside[keep]
        shape = (len(disc), len(self.stations), 4)
        self._nodes = np.where(inside[..., None], tets[np.maximum(elem, 0)].reshape(shape), 0)[keep]
        self._weights = np.where(inside[..., None], lam.reshape(shape), 0.0)[keep]
        # a segment between two stations counts when both its ends are in the nerve
        path = self._paths(self.disc)
        both = self.inside[:, 1:] & self.inside[:, :-1]
        self._segment = np.where(both, np.linalg.norm(np.diff(path, axis=1), axis=2), 0.0)

    def offsets_at(self, station: int) -> np.ndarray:
        """(K, 2) the fibres' ``(u, v)`` offsets (m) along ``normal`` and ``binormal`` at ``station``."""
        return self.section_centre[station] + self.disc @ self.section_axes[station].T

    @property
    def offsets(self) -> np.ndarray:
        """(K, 2) the fibres' offsets (m) at the middle station."""
        return self.offsets_at(len(self.stations) // 2)

    @property
    def n_fibres(self) -> int:
        """The number of fibres kept."""
        return len(self.offsets)

    def reached_fraction(self, field: np.ndarray, level: float) -> float:
        """The fraction of the fibres whose path reaches ``level`` somewhere: :func:`injured` at no minimum
        length, cheaply (only the stations near the nodes at or below the level are read), for a reading at
        every output time.

        Examples
        --------
        >>> points, tets = _block_nerve()
        >>> bundle = FibreBundle(points, tets, [[0, 0, 0], [0, 0, 2e-3]], fibres=100)
        >>> cut = -20.0 + 4e4 * points[:, 0]  # -20 °C on x = 0: half the nerve
        >>> round(bundle.reached_fraction(cut, -20.0), 1), bundle.reached_fraction(points[:, 0], -1.0)
        (0.5, 0.0)
        """
        field = np.asarray(field, float)
        stations = self._node_station[self._nerve_nodes[field[self._nerve_nodes] <= level]]
        if not len(stations):
            return 0.0
        near = np.zeros(len(self.stations), bool)
        near[stations] = True
        columns = np.flatnonzero(_dilated(near.astype(float), self._reach) > 0)
        values = np.einsum("ksa,ksa->ks", field[self._nodes[:, columns]], self._weights[:, columns])
        return float(np.mean(np.any(self.inside[:, columns] & (values <= level), axis=1)))

    def _paths(self, disc: np.ndarray) -> np.ndarray:
        """(K, S, 3) the path points of fibres at ``disc`` (K, 2: points of the unit disc) at every station."""
        offsets = self.section_centre[None] + np.einsum("sij,kj->ksi", self.section_axes, disc)
        return (self.centre[None] + offsets[..., :1] * self.normal[None]
                + offsets[..., 1:] * self.binormal[None])

    def along(self, field: np.ndarray) -> np.ndarray:
        """(K, S) a nodal field interpolated (P1) at every fibre's path points; +inf outside the nerve."""
        values = np.einsum("ksa,ksa->ks", np.asarray(field, float)[self._nodes], self._weights)
        return np.where(self.inside, values, np.inf)

    def read(self, min_temperature: np.ndarray, time_below: dict[float, np.ndarray] | None = None,
             levels: tuple[float, ...] = DEFAULT_LEVELS, thresholds: Thresholds = THRESHOLDS) -> FibreReading:
        """Read every fibre: minimum temperature, where, how long and over what length below each level.

        Parameters
        ----------
        min_temperature
            (N,) each node's minimum temperature over the run (°C).
        time_below
            Per level (°C): (N,) seconds each node spent at or below it; read at each fibre's coldest point.
        levels
            The levels (°C), strictly decreasing.
        thresholds
            Grade the fibres' minimum temperatures by these.
        """
        levels_arr = _checked_levels(levels)
        if np.shape(min_temperature) != (len(self.points),):
            raise ValueError(f"min_temperature: expected shape ({len(self.points)},), got {np.shape(min_temperature)}")
        T = self.along(min_temperature)
        coldest = np.argmin(T, axis=1)
        rows = np.arange(self.n_fibres)
        t_min = T[rows, coldest]
        fields = {float(k): v for k, v in (time_below or {}).items()}
        time = np.full((len(levels_arr), self.n_fibres), np.nan)
        for i, level in enumerate(levels_arr):
            if level in fields:
                node_values = np.asarray(fields[level], float)[self._nodes[rows, coldest]]
                time[i] = np.sum(node_values * self._weights[rows, coldest], axis=1)
        length = np.stack([self._length_below(T, c) for c in levels_arr]) * 1e3
        first = np.stack([self._first_below(T, c) for c in levels_arr]) * 1e3
        lesion = int(np.argmin(T.min(axis=0)))  # the station where the nerve was coldest: where it is drawn
        u, v = self.offsets_at(lesion).T * 1e3
        return FibreReading(levels_arr, t_min, coldest, self.stations[coldest] * 1e3, time, length, first,
                            thresholds.grade(t_min), u, v,
                            (float(self.stations[0] * 1e3), float(self.stations[-1] * 1e3)))

    def _length_below(self, T: np.ndarray, level: float) -> np.ndarray:
        """(K,) length (m) of each fibre's path at or below ``level``, T linear between stations."""
        a, b = T[:, :-1], T[:, 1:]
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            part = np.where(hi > lo, np.clip((level - lo) / (hi - lo), 0.0, 1.0), (lo <= level) * 1.0)
        return np.sum(np.where(self._segment > 0, part, 0.0) * self._segment, axis=1)

    def _first_below(self, T: np.ndarray, level: float) -> np.ndarray:
        """(K,) the first position (m) along the nerve where each fibre reaches ``level`` (NaN: never),
        placed between stations where the field crosses it."""
        cold = T <= level
        j = np.argmax(cold, axis=1)
        rows = np.arange(len(T))
        s = self.stations[j]
        prev = np.maximum(j - 1, 0)
        t_prev, t_here = T[rows, prev], T[rows, j]
        crossing = (j > 0) & np.isfinite(t_prev)  # the path was in the nerve (and warmer) at the station before
        with np.errstate(invalid="ignore", divide="ignore"):
            back = np.where(crossing, (level - t_here) / (t_prev - t_here), 0.0)
        s = s - np.clip(back, 0.0, 1.0) * (self.stations[j] - self.stations[prev])
        return np.where(cold.any(axis=1), s, np.nan)


def grade_fractions(reading: FibreReading) -> dict[str, float]:
    """Area fraction of the fibres in each grade (:data:`GRADES`), by their minimum temperatures.

    Examples
    --------
    >>> r = _reading(np.array([20.0, 0.0, -30.0, -110.0]))
    >>> grade_fractions(r)
    {'none': 0.25, 'neurapraxia': 0.25, 'axonotmesis': 0.25, 'neurotmesis': 0.25}
    """
    return {name: float(np.mean(reading.grade == g)) for g, name in enumerate(GRADES)}


def injured(reading: FibreReading, level: float, min_length_mm: float = 0.0) -> np.ndarray:
    """(K,) whether each fibre reached ``level`` over at least ``min_length_mm`` of its path."""
    if not min_length_mm >= 0.0:
        raise ValueError(f"min_length_mm must be at least 0, got {min_length_mm}")
    i = reading.level_index(level)
    return (reading.min_temperature <= reading.levels[i]) & (reading.length_below_mm[i] >= min_length_mm)


def injured_fractions(reading: FibreReading, min_length_mm: float = 0.0) -> dict[float, float]:
    """Area fraction of the fibres injured (:func:`injured`) at each level read.

    Examples
    --------
    >>> injured_fractions(_reading(np.array([20.0, 0.0, -30.0, -110.0]), levels=(-20.0, -60.0)))
    {-20.0: 0.5, -60.0: 0.25}
    """
    return {float(c): float(np.mean(injured(reading, c, min_length_mm))) for c in reading.levels}


def verdict(fraction: float, complete_fraction: float = 0.9) -> str:
    """``complete`` when at least ``complete_fraction`` of the fibres were injured, ``partial`` when some
    were, ``none`` when none were.

    Examples
    --------
    >>> verdict(0.95), verdict(0.3), verdict(0.0), verdict(0.5, complete_fraction=0.5)
    ('complete', 'partial', 'none', 'complete')
    """
    if not 0.0 < complete_fraction <= 1.0:
        raise ValueError(f"complete_fraction must be in (0, 1], got {complete_fraction}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return "complete" if fraction >= complete_fraction else "partial" if fraction > 0.0 else "none"


def injured_from_mm(reading: FibreReading, level: float, min_length_mm: float = 0.0) -> float | None:
    """The proximal-most position along the nerve (mm) where an injured fibre reached ``level``; None when
    none was injured. Axons regrow from there: the relief lasts while they cross the rest of the nerve.

    Examples
    --------
    >>> injured_from_mm(_reading(np.array([20.0, -30.0]), first=[np.nan, 3.5]), -20.0)
    3.5
    """
    hit = injured(reading, level, min_length_mm)
    if not hit.any():
        return None
    return float(np.min(reading.first_below_mm[reading.level_index(level)][hit]))


def fibre_summary(reading: FibreReading, injury_c: float, complete_fraction: float = 0.9,
                  min_length_mm: float = 0.0) -> dict:
    """The per-nerve block of the fibre reading, JSON-ready: the fibre count, the grade fractions, the
    injured fraction at each level, the verdict at ``injury_c`` and where the injury begins.

    Examples
    --------
    >>> out = fibre_summary(_reading(np.array([-30.0, -30.0, 0.0, 20.0]), first=[2.0, 1.0, 0, 0]), -20.0)
    >>> out["injured_fraction"], out["verdict"], out["injured_from_mm"], out["to_end_mm"]
    (0.5, 'partial', 1.0, 9.0)
    """
    fractions = injured_fractions(reading, min_length_mm)
    fraction = fractions[float(reading.levels[reading.level_index(injury_c)])]
    start = injured_from_mm(reading, injury_c, min_length_mm)
    return {"fibres": int(len(reading.grade)), "grades": grade_fractions(reading),
            "injured_fraction_by_level": {f"{c:g}": f for c, f in fractions.items()},
            "injury_c": float(injury_c), "min_length_mm": float(min_length_mm),
            "complete_fraction": float(complete_fraction), "injured_fraction": fraction,
            "verdict": verdict(fraction, complete_fraction), "injured_from_mm": start,
            "to_end_mm": None if start is None else reading.span_mm[1] - start}


def untouched_summary(levels: tuple[float, ...], injury_c: float, complete_fraction: float = 0.9,
                      min_length_mm: float = 0.0) -> dict:
    """The :func:`fibre_summary` of a nerve none of whose nodes reached the warmest level read or graded: no
    fibre reached any level, every fibre is ungraded, so none needs reading (``fibres`` 0: none read).

    Examples
    --------
    >>> out = untouched_summary((-5.0, -20.0), -20.0)
    >>> out["injured_fraction_by_level"], out["verdict"], out["grades"]["none"]
    ({'-5': 0.0, '-20': 0.0}, 'none', 1.0)
    """
    return {"fibres": 0, "grades": {name: float(name == GRADES[0]) for name in GRADES},
            "injured_fraction_by_level": {f"{c:g}": 0.0 for c in levels}, "injury_c": float(injury_c),
            "min_length_mm": float(min_length_mm), "complete_fraction": float(complete_fraction),
            "injured_fraction": 0.0, "verdict": "none", "injured_from_mm": None, "to_end_mm": None}


def fibre_arrays(reading: FibreReading) -> dict[str, np.ndarray]:
    """The per-fibre arrays of a reading as the result stores them (``/clinical_fibres/NERVE``): offsets, minimum
    temperature, where it was coldest, grade, and per level (rows in ``levels`` order) the length below it.

    Examples
    --------
    >>> sorted(fibre_arrays(_reading(np.array([-30.0, 0.0]))))[:4]
    ['coldest_mm', 'grade', 'length_below_mm', 'min_temperature']
    """
    return {"u_mm": reading.u_mm, "v_mm": reading.v_mm, "min_temperature": reading.min_temperature,
            "coldest_mm": reading.coldest_mm, "grade": reading.grade.astype(np.int8),
            "length_below_mm": reading.length_below_mm}


def _checked(points, tets, line, fibres, step) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as arrays, with a ValueError naming the first bad one."""
    if isinstance(fibres, bool) or not isinstance(fibres, (int, np.integer)) or fibres < 1:
        raise ValueError(f"fibres must be a whole number of at least 1, got {fibres!r}")
    if step is not None and not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive length (m), got {step!r}")
    points, tets = np.asarray(points, float), np.asarray(tets)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points: expected shape (N, 3), got {points.shape}")
    if tets.ndim != 2 or tets.shape[1] != 4 or len(tets) == 0:
        raise ValueError(f"tets: expected a non-empty (E, 4) array, got shape {tets.shape}")
    line = np.asarray(line, float)
    if line.ndim != 2 or line.shape[1] != 3 or not np.all(np.isfinite(line)):
        raise ValueError(f"line: expected finite (L, 3) points, got shape {line.shape}")
    if len(line):  # repeated points carry no direction
        line = line[np.concatenate([[True], np.linalg.norm(np.diff(line, axis=0), axis=1) > 0])]
    if len(line) < 2:
        raise ValueError("line: a centreline needs at least 2 distinct points")
    return points, tets.astype(np.int64), line


def _checked_levels(levels) -> np.ndarray:
    """The levels as an array; ValueError unless they are finite and strictly decreasing."""
    out = np.atleast_1d(np.asarray(levels, float))
    if out.ndim != 1 or not len(out) or not np.all(np.isfinite(out)) or np.any(np.diff(out) >= 0):
        raise ValueError(f"levels must be finite and strictly decreasing (warmest first), got {levels!r}")
    return out


def _arc_extended(line: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Arc length (m) of each point's nearest point on the polyline, continued along the end segments' lines
    for points beyond either end (negative before the first point).

    Examples
    --------
    >>> _arc_extended(np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0]]), np.array([[-1.0, 0, 0], [0.5, 0, 0], [1, 3, 0]]))
    array([-1. ,  0.5,  4. ])
    """
    s = arc_position(line, points)
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    total = float(lengths.sum())
    first, last = (line[1] - line[0]) / lengths[0], (line[-1] - line[-2]) / lengths[-1]
    before = (points - line[0]) @ first
    beyond = total + (points - line[-1]) @ last
    s = np.where((s <= 0.0) & (before < 0.0), before, s)
    return np.where((s >= total * (1 - 1e-12)) & (beyond > total), beyond, s)


def _along(line: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, 3) points and unit tangents of the polyline at arc lengths ``s`` (continued straight beyond its
    ends); the tangent turns linearly between the bisectors at its vertices, so frames turn smoothly."""
    seg = np.diff(line, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    start = np.concatenate([[0.0], np.cumsum(lengths)])
    j = np.clip(np.searchsorted(start, s, side="right") - 1, 0, len(seg) - 1)
    t = (s - start[j]) / lengths[j]
    direction = seg / lengths[:, None]
    vertex = np.concatenate([direction[:1], direction[:-1] + direction[1:], direction[-1:]])
    vertex /= np.maximum(np.linalg.norm(vertex, axis=1, keepdims=True), 1e-300)
    w = np.clip(t, 0.0, 1.0)[:, None]
    tangent = (1 - w) * vertex[j] + w * vertex[j + 1]
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    return line[j] + t[:, None] * seg[j], tangent


def _transported_normals(centre: np.ndarray, tangent: np.ndarray) -> np.ndarray:
    """(S, 3) unit normals carried along the stations without twist (the double-reflection rotation-
    minimising frame of Wang et al. 2008); the first is the coordinate axis most across the first tangent.

    Examples
    --------
    >>> c = np.array([[0.0, 0, 0], [0, 0, 1], [0, 0, 2]]); t = np.array([[0.0, 0, 1]] * 3)
    >>> _transported_normals(c, t).tolist()
    [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    normal = np.empty_like(tangent)
    axis = np.eye(3)[np.argmin(np.abs(tangent[0]))]
    r = axis - (axis @ tangent[0]) * tangent[0]
    normal[0] = r / np.linalg.norm(r)
    for i in range(len(centre) - 1):
        r, t = normal[i], tangent[i]
        v1 = centre[i + 1] - centre[i]
        c1 = v1 @ v1
        if c1 > 0:  # reflect in the plane across the chord, then in the one that brings the tangent home
            r, t = r - (2 / c1) * (v1 @ r) * v1, t - (2 / c1) * (v1 @ t) * v1
        v2 = tangent[i + 1] - t
        c2 = v2 @ v2
        if c2 > 1e-30:
            r = r - (2 / c2) * (v2 @ r) * v2
        r = r - (r @ tangent[i + 1]) * tangent[i + 1]  # against rounding drift
        normal[i + 1] = r / np.linalg.norm(r)
    return normal


def _jittered_grid(u_range: tuple[float, float], v_range: tuple[float, float], pitch: float,
                   seed: int) -> np.ndarray:
    """(G, 2) one random point in each cell of a square grid of ``pitch`` covering the box: equal areas, no
    row for a straight edge of the cold zone to line up with (error ~ G^-3/4, not G^-1/2 like a grid)."""
    nu = max(int(np.ceil((u_range[1] - u_range[0]) / pitch)), 1)
    nv = max(int(np.ceil((v_range[1] - v_range[0]) / pitch)), 1)
    iu, iv = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    jitter = np.random.default_rng(seed).random((nu * nv, 2))
    u0 = 0.5 * (u_range[0] + u_range[1]) - 0.5 * nu * pitch  # the grid centred on the box
    v0 = 0.5 * (v_range[0] + v_range[1]) - 0.5 * nv * pitch
    return np.stack([u0 + (iu.ravel() + jitter[:, 0]) * pitch, v0 + (iv.ravel() + jitter[:, 1]) * pitch], axis=1)


class _Locator:
    """Point location in a set of tetrahedra: barycentric weights, face neighbours and a tree of centroids.

    Examples
    --------
    >>> p = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    >>> e, lam = _Locator(p, np.array([[0, 1, 2, 3]])).search(np.array([[0.25, 0.25, 0.25], [1.0, 1.0, 1.0]]))
    >>> e.tolist(), lam[0].tolist()
    ([0, -1], [0.25, 0.25, 0.25, 0.25])
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, candidates: int = 16):
        corners = points[tets]
        edges = np.transpose(corners[:, 1:] - corners[:, :1], (0, 2, 1))  # (E, 3, 3): columns are edges
        det = np.linalg.det(edges)
        flat = np.abs(det) <= 1e-12 * np.max(np.abs(det))
        self.inverse = np.linalg.inv(np.where(flat[:, None, None], np.eye(3), edges))
        self.inverse[flat] = np.nan  # a flat tetrahedron holds nothing
        self.origin = corners[:, 0]
        self.tree = cKDTree(corners.mean(axis=1))
        self.neighbours = _face_neighbours(tets)
        self.candidates = min(candidates, len(tets))

    def weights(self, elem: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(P, 4) barycentric coordinates of the points ``x`` in the tetrahedra ``elem``."""
        rest = np.einsum("pij,pj->pi", self.inverse[elem], x - self.origin[elem])
        return np.concatenate([1.0 - rest.sum(axis=1, keepdims=True), rest], axis=1)

    def search(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P,) the tetrahedron holding each point (-1: none) and (P, 4) its weights: the ``candidates``
        tetrahedra with the nearest centroids tried in turn, each only for the points not yet found."""
        elem, lam = np.full(len(x), -1), np.zeros((len(x), 4))
        if not len(x):
            return elem, lam
        near = self.tree.query(x, k=self.candidates)[1].reshape(len(x), -1)
        todo = np.arange(len(x))
        for c in range(near.shape[1]):
            e = near[todo, c]
            w = self.weights(e, x[todo])
            hit = w.min(axis=1) >= -LOCATE_TOLERANCE
            elem[todo[hit]], lam[todo[hit]] = e[hit], w[hit]
            todo = todo[~hit]
            if not len(todo):
                break
        return elem, lam

    def walk(self, x: np.ndarray, start: np.ndarray, steps: int = 24) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search`, walking from ``start`` (P,) across the face each point is most beyond; the
        points a walk does not find (it left the mesh or took too long) are searched for."""
        elem, lam = np.full(len(x), -1), np.zeros((len(x), 4))
        todo, e = np.arange(len(x)), np.asarray(start)
        for _ in range(steps):
            w = self.weights(e, x[todo])
            hit = w.min(axis=1) >= -LOCATE_TOLERANCE
            elem[todo[hit]], lam[todo[hit]] = e[hit], w[hit]
            nxt = self.neighbours[e, np.argmin(np.nan_to_num(w, nan=-np.inf), axis=1)]
            go = ~hit & (nxt >= 0)
            todo, e = todo[go], nxt[go]
            if not len(todo):
                break
        lost = np.flatnonzero(elem < 0)  # outside, or beyond a concave part of the surface: search
        elem[lost], lam[lost] = self.search(x[lost])
        return elem, lam

    def paths(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(G, S) tetrahedra and (G, S, 4) weights of the points ``x`` (G, S, 3) of G paths: each path's
        point is walked to from its point at the station before, which is rarely more than a step away."""
        elem, lam = np.full(x.shape[:2], -1), np.zeros(x.shape[:2] + (4,))
        prev = np.full(len(x), -1)
        for j in range(x.shape[1]):
            start = prev.copy()
            fresh = start < 0
            if fresh.any():
                start[fresh] = self.tree.query(x[fresh, j])[1]
            elem[:, j], lam[:, j] = self.walk(x[:, j], start)
            prev = elem[:, j]
        return elem, lam


def _sections(points: np.ndarray, tets: np.ndarray, line: np.ndarray, stations: np.ndarray, centre: np.ndarray,
              normal: np.ndarray, binormal: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, 2) the section's centroid and (S, 2, 2) its axes at each station, in the frame's (normal, binormal)
    coordinates: the first and second moments of the volume of the tetrahedra within ``reach`` stations (their
    centroids projected on the station's plane); the axes ``2 sqrt(covariance)`` map the unit disc onto the
    ellipse of the same moments (exactly the section when it is a disc or an ellipse).

    Examples
    --------
    >>> points, tets = _block_nerve(cells=6)
    >>> line = np.array([[0, 0, 0], [0, 0, 2e-3]])
    >>> s = np.linspace(0.0, 2e-3, 5)
    >>> c, ax = _sections(points, tets, line, s, np.c_[0 * s, 0 * s, s], np.tile([1.0, 0, 0], (5, 1)),
    ...                   np.tile([0, 1.0, 0], (5, 1)), 1)
    >>> bool(np.abs(c).max() < 1e-5), np.round(ax[2] * np.sqrt(3) / 1e-3, 2).tolist()  # a square: 2 sd = w/√3
    (True, [[0.99, -0.0], [-0.0, 0.99]])
    """
    corners = points[tets]
    centroid, volume = corners.mean(axis=1), np.abs(cell_volumes(points, tets))
    width = stations[1] - stations[0]
    at = np.clip(np.rint((_arc_extended(line, centroid) - stations[0]) / width).astype(int), 0, len(stations) - 1)
    rel = centroid - centre[at]
    uv = np.stack([np.einsum("ij,ij->i", rel, normal[at]), np.einsum("ij,ij->i", rel, binormal[at])], axis=1)
    moments = [volume, volume * uv[:, 0], volume * uv[:, 1], volume * uv[:, 0] ** 2, volume * uv[:, 0] * uv[:, 1],
               volume * uv[:, 1] ** 2]
    m0, mu, mv, muu, muv, mvv = (_window_sum(np.bincount(at, w, len(stations)), reach) for w in moments)
    m0 = np.where(m0 > 0, m0, np.nan)
    mean = np.stack([mu / m0, mv / m0], axis=1)
    cov = np.stack([np.stack([muu / m0 - mean[:, 0] ** 2, muv / m0 - mean[:, 0] * mean[:, 1]], axis=1),
                    np.stack([muv / m0 - mean[:, 0] * mean[:, 1], mvv / m0 - mean[:, 1] ** 2], axis=1)], axis=1)
    known = np.isfinite(m0)
    for array in (mean, cov):  # a station with no volume near it takes its nearest neighbour's section
        array[~known] = array[known][np.abs(np.flatnonzero(known)[None] - np.flatnonzero(~known)[:, None]).argmin(1)]
    values, vectors = np.linalg.eigh(cov)
    axes = 2.0 * np.einsum("sij,sj,skj->sik", vectors, np.sqrt(np.maximum(values, 0.0)), vectors)
    return mean, axes


def _window_sum(values: np.ndarray, reach: int) -> np.ndarray:
    """Each entry's sum over the entries within ``reach`` either side.

    Examples
    --------
    >>> _window_sum(np.array([1.0, 2.0, 3.0]), 5).tolist(), _window_sum(np.array([1.0, 2.0, 3.0]), 1).tolist()
    ([6.0, 6.0, 6.0], [3.0, 6.0, 5.0])
    """
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    return total[np.minimum(index + reach + 1, len(values))] - total[np.maximum(index - reach, 0)]


def _longest_edge(points: np.ndarray, tets: np.ndarray) -> float:
    """The longest edge (m) of the tetrahedra."""
    corners = points[tets]
    return float(max(np.linalg.norm(corners[:, a] - corners[:, b], axis=1).max()
                     for a in range(4) for b in range(a + 1, 4)))


def _dilated(values: np.ndarray, reach: int) -> np.ndarray:
    """Each entry's largest neighbour within ``reach`` entries either side.

    Examples
    --------
    >>> _dilated(np.array([0.0, 3.0, 0.0, 0.0, 1.0]), 1).tolist()
    [3.0, 3.0, 3.0, 1.0, 1.0]
    """
    padded = np.pad(values, reach)
    return np.max([padded[k:k + len(values)] for k in range(2 * reach + 1)], axis=0)


def _face_neighbours(tets: np.ndarray) -> np.ndarray:
    """(E, 4) the tetrahedron across the face opposite each corner; -1 on the surface.

    Examples
    --------
    >>> _face_neighbours(np.array([[0, 1, 2, 3], [1, 2, 3, 4]])).tolist()
    [[1, -1, -1, -1], [-1, -1, -1, 0]]
    """
    opposite = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    faces = np.sort(tets[:, opposite], axis=2).reshape(-1, 3)
    order = np.lexsort(faces.T[::-1])
    same = np.flatnonzero(np.all(faces[order[1:]] == faces[order[:-1]], axis=1))
    out = np.full(len(faces), -1)
    out[order[same]], out[order[same + 1]] = order[same + 1] // 4, order[same] // 4
    return out.reshape(-1, 4)


def _block_nerve(cells: int = 4, length: float = 2e-3, width: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """A square nerve (width × width × length, m) along z, centred on the z axis: each cube of a grid cut
    into six tetrahedra (for the examples)."""
    n = (cells, cells, 2 * cells)
    axes = [np.linspace(-width / 2, width / 2, n[0] + 1), np.linspace(-width / 2, width / 2, n[1] + 1),
            np.linspace(0, length, n[2] + 1)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    idx = np.arange(len(points)).reshape(n[0] + 1, n[1] + 1, n[2] + 1)
    c = [idx[i:i + n[0], j:j + n[1], k:k + n[2]].ravel() for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    paths = [(4, 6, 7), (4, 5, 7), (2, 6, 7), (2, 3, 7), (1, 5, 7), (1, 3, 7)]  # the cube's Kuhn split
    return points, np.concatenate([np.stack([c[0], c[a], c[b], c[d]], axis=1) for a, b, d in paths])


def _reading(min_temperature: np.ndarray, levels: tuple[float, ...] = (-20.0,), first=None) -> FibreReading:
    """A reading of fibres with given minimum temperatures, each below each level over 1 mm (examples)."""
    t = np.asarray(min_temperature, float)
    lv = _checked_levels(levels)
    cold = t[None] <= lv[:, None]
    first = np.broadcast_to(np.asarray(first if first is not None else 0.0, float), t.shape)
    return FibreReading(lv, t, np.zeros(len(t), int), np.zeros(len(t)), np.full(cold.shape, np.nan),
                        cold * 1.0, np.where(cold, first, np.nan), THRESHOLDS.grade(t), np.zeros(len(t)),
                        np.zeros(len(t)), (0.0, 10.0))
