"""Parametric anatomy of the posterior head and upper neck around the occipital nerves (docs/physics.md §6).

Coordinate frame (all lengths in mm here; the generated :class:`~cryofield.mesh.core.Mesh` is in metres):

* origin: the skin surface over the external occipital protuberance (EOP);
* ``x`` towards the patient's right (so lateral distance is ``|x|``: positive on a right-side phantom,
  negative on a left-side one);
* ``y`` inferior (towards the feet); the superior nuchal line (SNL) is the line ``y = 0``;
* ``z`` depth below the skin (anterior). The frame is right-handed (right × inferior = anterior).

The phantom is a layered slab: the skin is the plane ``z = 0`` and every tissue interface is a surface
``z = f(y)`` extruded along ``x`` (the head's curvature is unrolled). From the surface inwards:

* skin, then subcutaneous tissue (fat, galea and fascia lumped together);
* superior to the SNL (``y <= 0``): occipital bone directly under the subcutaneous layer;
* inferior to it: trapezius, then semispinalis capitis (splenius capitis and the suboccipital muscles
  lumped into it) down to the deep boundary; the outer table of the occipital bone leaves the SNL at
  ``nuchal_angle`` and curves forwards with radius ``occipital_radius``, so the muscles insert on it.

The deep boundary ``z = D`` is the inner table of the bone at the EOP (``D = skin + subcutaneous + bone
thickness``); below the SNL it is the deep surface of the semispinalis layer, where the GON winds round
the obliquus capitis inferior.

Nerves and the occipital artery are tubes of constant cross-section (round; the GON's an ellipse, a
flattened band with its long axis parallel to the skin) along smooth (C1 cubic) curves through
published landmarks (the defaults of :class:`~cryofield.config.meshspec.Anatomy`, each tagged as in docs/physics.md:
[R] read in the named source, [M] recalled, [D] derived here). Depths the sources do not give are put on
the tissue interface the landmark names (e.g. "pierces the trapezius": on the trapezius' superficial
surface), and the courses cross each interface at 45° (:class:`_CourseBuilder`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.interpolate import BSpline

from cryofield.config.meshspec import Anatomy


class AnatomyError(ValueError):
    """Anatomy parameters that do not make a valid geometry."""


#: Where along each nerve a probe goes when its target names no landmark.
DEFAULT_STATION = {"gon": "superior_nuchal_line", "ton": "trapezius", "lon": "sternocleidomastoid"}
LONG_NAMES = {"gon": "greater occipital nerve", "ton": "third occipital nerve", "lon": "lesser occipital nerve",
              "artery": "occipital artery"}


@dataclass(frozen=True)
class Course:
    """A tube of constant cross-section along a cubic B-spline (mm); the same curve Gmsh sweeps.

    ``knots`` is the full knot vector, ``poles`` the (n, 3) control points. The parameter is the
    cumulative chord length through the points the course was built from. The cross-section is a circle
    of ``radius``, or, with ``minor``, an ellipse of semi-axes ``radius`` (the long one) and ``minor``
    whose long axis lies parallel to the skin, turned ``roll`` degrees about the curve
    (:meth:`section_axes`); ``radius`` always bounds the section.
    """

    name: str
    radius: float
    knots: np.ndarray
    poles: np.ndarray
    stations: dict[str, float]  # landmark name -> curve parameter
    minor: float | None = None
    roll: float = 0.0

    @property
    def semi_axes(self) -> tuple[float, float]:
        """(long, short) semi-axes of the cross-section (mm)."""
        return self.radius, self.radius if self.minor is None else self.minor

    @property
    def is_round(self) -> bool:
        return self.minor is None or abs(self.minor - self.radius) < 1e-9 * self.radius

    @property
    def area(self) -> float:
        """Cross-section area (mm²)."""
        a, b = self.semi_axes
        return float(np.pi * a * b)

    def section_axes(self, u: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit tangent, long axis and short axis of the cross-section at ``u`` (each (3,) or (n, 3)).

        The long axis is horizontal (parallel to the skin plane ``z = 0``) and normal to the curve, turned
        ``roll`` degrees about the tangent; the short axis completes the frame (pointing into the depth
        when ``roll`` is 0).
        """
        u = np.asarray(u, float)
        d = self.spline.derivative()(u)
        t = d / np.linalg.norm(d, axis=-1, keepdims=True)
        long = np.cross([0.0, 0.0, 1.0], t)
        steep = np.linalg.norm(long, axis=-1, keepdims=True) < 0.1  # the course runs (nearly) into the depth
        long = np.where(steep, np.cross([1.0, 0.0, 0.0], t), long)
        long /= np.linalg.norm(long, axis=-1, keepdims=True)
        short = np.cross(t, long)
        angle = np.radians(self.roll)
        long, short = np.cos(angle) * long + np.sin(angle) * short, -np.sin(angle) * long + np.cos(angle) * short
        return t, long, short

    def support(self, u: float | np.ndarray, direction: np.ndarray) -> np.ndarray:
        """How far (mm) the cross-section at ``u`` reaches from the curve in ``direction`` (its support function).

        ``direction`` is a unit vector (or one per ``u``); its component along the curve is ignored.
        """
        _, long, short = self.section_axes(u)
        a, b = self.semi_axes
        d = np.asarray(direction, float)
        return np.hypot(a * np.sum(long * d, axis=-1), b * np.sum(short * d, axis=-1))

    def surface_gap(self, points: np.ndarray, step: float = 0.1, keep=None) -> float:
        """Smallest distance (mm) from ``points`` (m, 3) to the tube's surface, negative when one is inside it.

        A round tube: the distance to the sampled centreline less the radius. An elliptical one: the
        distance to its surface sampled every ``step`` mm along and every 5° around, negative for points
        whose position in the nearest cross-section lies inside the ellipse. ``keep`` (centreline points ->
        bool mask) leaves out the parts of the course that are not modelled (outside the box).
        """
        from scipy.spatial import cKDTree

        points = np.asarray(points, float)
        u = self.sample_parameters(step)
        if keep is not None:
            u = u[keep(self.point(u))]
        if len(u) == 0 or len(points) == 0:
            return np.inf
        centre = self.point(u)
        if self.is_round:
            return float(cKDTree(centre).query(points)[0].min() - self.radius)
        _, long, short = self.section_axes(u)
        a, b = self.semi_axes
        phi = np.radians(np.arange(0.0, 360.0, 5.0))
        ring = (centre[:, None] + a * np.cos(phi)[None, :, None] * long[:, None]
                + b * np.sin(phi)[None, :, None] * short[:, None]).reshape(-1, 3)
        distance = cKDTree(ring).query(points)[0]
        nearest = cKDTree(centre).query(points)[1]
        rel = points - centre[nearest]
        inside = (rel * long[nearest]).sum(axis=1) ** 2 / a**2 + (rel * short[nearest]).sum(axis=1) ** 2 / b**2 < 1
        return float(np.where(inside, -distance, distance).min())

    def sample_parameters(self, step: float = 0.25) -> np.ndarray:
        """Parameters every ``step`` mm or less from end to end (those of :meth:`samples`)."""
        lo, hi = self.bounds
        return np.linspace(lo, hi, max(int(np.ceil((hi - lo) / step)), 2) + 1)

    @classmethod
    def through(cls, name: str, radius: float, points: np.ndarray, stations: dict[str, int],
                slopes: list[float | None] | None = None, minor: float | None = None, roll: float = 0.0) -> Course:
        """The C1 cubic Hermite curve through ``points``; ``stations`` names point indices.

        Tangents are unit vectors: Bessel's (from the parabola through a point and its neighbours) or,
        where ``slopes[i]`` is given, Bessel's direction in plan tilted to that many degrees below the
        horizontal (negative: rising towards the skin). Local tangents rather than a global
        interpolating spline, which rings between unevenly spaced points (a nerve drawn between two
        depths would bulge towards the skin or the bone). Each Hermite piece is written as Bézier poles
        with doubled interior knots, so OCC sweeps exactly this curve.
        """
        points = np.asarray(points, float)
        h = np.linalg.norm(np.diff(points, axis=0), axis=1)
        if (h < 0.1).any():
            raise AnatomyError(f"two landmarks of the {LONG_NAMES[name]} (nearly) coincide; move them apart")
        u = np.concatenate([[0.0], np.cumsum(h)])
        d = np.diff(points, axis=0) / h[:, None]
        tangents = np.empty_like(points)
        tangents[1:-1] = (h[1:, None] * d[:-1] + h[:-1, None] * d[1:]) / (h[:-1] + h[1:])[:, None]
        tangents[0], tangents[-1] = 2 * d[0] - tangents[1], 2 * d[-1] - tangents[-2]
        for i, slope in enumerate(slopes or []):
            if slope is not None:
                plan = np.array([tangents[i, 0], tangents[i, 1], 0.0])
                angle = np.radians(slope)
                tangents[i] = np.cos(angle) * plan / np.linalg.norm(plan) + [0.0, 0.0, np.sin(angle)]
        tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
        hh = h[:, None]
        inner = np.stack([points[:-1] + tangents[:-1] * hh / 3, points[1:] - tangents[1:] * hh / 3], axis=1)
        poles = np.vstack([points[:1], inner.reshape(-1, 3), points[-1:]])
        knots = np.concatenate([[u[0]] * 4, np.repeat(u[1:-1], 2), [u[-1]] * 4])
        return cls(name, radius, knots, poles, {k: float(u[i]) for k, i in stations.items()}, minor, roll)

    @cached_property
    def spline(self) -> BSpline:
        return BSpline(self.knots, self.poles, 3)

    @property
    def bounds(self) -> tuple[float, float]:
        return float(self.knots[3]), float(self.knots[-4])

    def point(self, u: float | np.ndarray) -> np.ndarray:
        return self.spline(u)

    def tangent(self, u: float) -> np.ndarray:
        d = self.spline.derivative()(u)
        return d / np.linalg.norm(d)

    def samples(self, step: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
        """Points every ``step`` mm of parameter (about of arc length) and their arc lengths."""
        p = self.point(self.sample_parameters(step))
        return p, np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])

    def arc_parameter(self, u0: float, distance: float) -> float:
        """The parameter ``distance`` mm of arc length from ``u0`` (positive: towards the distal end)."""
        _, s = self.samples(0.05)
        lo, hi = self.bounds
        u = np.linspace(lo, hi, len(s))
        target = np.interp(u0, u, s) + distance
        if not s[0] <= target <= s[-1]:
            raise AnatomyError(f"{distance:g} mm along the {self.name} leaves its modelled course")
        return float(np.interp(target, s, u))

    def min_radius_of_curvature(self) -> float:
        lo, hi = self.bounds
        u = np.linspace(lo, hi, 2000)
        d1, d2 = self.spline.derivative(1)(u), self.spline.derivative(2)(u)
        speed = np.linalg.norm(d1, axis=1)
        curvature = np.linalg.norm(np.cross(d1, d2), axis=1) / speed**3
        return float(1.0 / curvature.max())


class PhantomGeometry:
    """The phantom's geometry in mm for one side: box, layer interfaces, bone profile and courses."""

    def __init__(self, anatomy: Anatomy, side: str):
        self.anatomy = a = anatomy
        self.side = side
        self.sign = 1.0 if side == "right" else -1.0
        self.z_skin = a.skin_thickness
        self.z_fat = a.skin_thickness + a.subcutaneous_thickness  # bone surface above the SNL, trapezius top below
        self.z_trap = self.z_fat + a.trapezius_thickness
        self.depth = self.z_fat + a.bone_thickness
        lo, hi = -a.medial_extent, a.lateral_extent
        self.x_range = (lo, hi) if side == "right" else (-hi, -lo)
        self.y_range = (-a.superior_extent, a.inferior_extent)
        theta = np.radians(a.nuchal_angle)
        self.bone_centre = (-a.occipital_radius * np.sin(theta), self.z_fat + a.occipital_radius * np.cos(theta))
        yc, zc = self.bone_centre
        self.bone_end = yc + np.sqrt(a.occipital_radius**2 - (zc - self.depth) ** 2)
        if self.z_trap >= self.depth:
            raise AnatomyError("trapezius_thickness must be less than bone_thickness (the deep boundary)")
        if self.bone_end >= self.y_range[1]:
            raise AnatomyError("the occipital bone must end above the inferior edge of the model: increase "
                               "inferior_extent or nuchal_angle")
        self.courses = {c.name: c for c in self._courses()}

    def xyz(self, lateral: float, inferior: float, depth: float) -> np.ndarray:
        return np.array([self.sign * lateral, inferior, depth])

    def bone_surface(self, y: np.ndarray) -> np.ndarray:
        """Depth of the outer table of the occipital bone at ``y`` (beyond ``depth`` once it has left)."""
        y = np.asarray(y, float)
        yc, zc = self.bone_centre
        r = self.anatomy.occipital_radius
        below = zc - np.sqrt(np.maximum(r**2 - (y - yc) ** 2, 0.0))
        return np.where(y <= 0, self.z_fat, np.where(y < self.bone_end, below, np.inf))

    def bone_profile(self, step: float = 0.05) -> np.ndarray:
        """(n, 2) polyline (y, z) of the bone's outer surface inside the box."""
        y = np.arange(self.y_range[0], self.bone_end, step)
        return np.column_stack([np.append(y, self.bone_end), np.append(self.bone_surface(y), self.depth)])

    def inside_bone(self, points: np.ndarray) -> np.ndarray:
        return points[:, 2] > self.bone_surface(points[:, 1])

    def _courses(self) -> list[Course]:
        """The four tubes, from their proximal (deep) ends to their distal ones.

        A tube must cross a tissue interface steeply or run with its axis in it: a tube grazing an
        interface leaves a wedge of tissue that only slivers can fill. So each course pierces a fascia
        at 45°, runs in the semispinalis/trapezius interface between piercing points, and otherwise
        keeps clear of the interfaces it runs beside.
        """
        a = self.anatomy
        D, zf, zt = self.depth, self.z_fat, self.z_trap
        gx, gy = a.gon_snl
        width, thickness = a.gon_section()
        gon = _CourseBuilder(self, "gon", width / 2, minor=thickness / 2, roll=a.gon_orientation)
        gon.add((a.gon_obliquus[0] - 3, a.gon_obliquus[1] + 4), D + 8)
        gon.add(a.gon_obliquus, D, station="obliquus")
        gon.arrive(a.gon_semispinalis, zt, a.gon_obliquus, a.gon_trapezius, station="semispinalis")
        gon.pierce(a.gon_trapezius, zf, zt - zf, a.gon_semispinalis, zf - a.gon_snl_depth - 0.1, a.gon_snl,
                   station="trapezius")
        gon.add(a.gon_snl, a.gon_snl_depth, station="superior_nuchal_line")
        gon.add((gx + 1.7, gy - 20), a.gon_snl_depth - 0.9)
        gon.add((gx + 3.7, gy - a.superior_extent - 10), a.gon_snl_depth - 1.4)

        artery = _CourseBuilder(self, "artery", a.artery_diameter / 2)
        origin = (a.artery_pierces[0] + 4, a.artery_pierces[1] + 25)
        snl = (gx + a.gon_extent("lateral") + a.artery_gap + a.artery_diameter / 2, gy)
        # beside the GON for a few millimetres either side of the SNL, as ultrasound shows them
        below_snl, above_snl = (snl[0] + 1.0, gy + 5.0), (snl[0] + 2.0, gy - 10.0)
        artery.add(origin, D + 6)
        artery.pierce(a.artery_pierces, zf, 4.5, origin, zf - a.gon_snl_depth - 0.3, below_snl, station="pierces",
                      steep_before=True)
        artery.add(below_snl, a.gon_snl_depth)
        artery.add(snl, a.gon_snl_depth, station="superior_nuchal_line")
        artery.add(above_snl, a.gon_snl_depth - 0.4)
        artery.add(a.artery_superior, a.gon_snl_depth - 1.4)
        artery.add((a.artery_superior[0] + 3, a.artery_superior[1] - 10), a.gon_snl_depth - 1.4)

        ton = _CourseBuilder(self, "ton", a.ton_diameter / 2)
        te = a.ton_end
        beyond = (a.ton_semispinalis[0] - 0.5, a.ton_semispinalis[1] + 4.6)
        ton.add(beyond, D + 6)
        ton.arrive(a.ton_semispinalis, zt, beyond, a.ton_trapezius, station="semispinalis")
        ton.pierce(a.ton_trapezius, zf, zt - zf, a.ton_semispinalis, 2.5, te, station="trapezius")
        ton.add((0.5 * (a.ton_trapezius[0] + te[0]), 0.5 * (a.ton_trapezius[1] + te[1])), zf - 3.0)
        ton.add(te, zf - 3.5)

        lon = _CourseBuilder(self, "lon", a.lon_diameter / 2)
        lx, ly = a.lon_scm
        below = (lx - 1.5, a.inferior_extent + 5)
        lon.add(below, zt + 5.35)
        lon.pierce(a.lon_scm, zf, 6.5, below, 2.5, (lx + 3, ly - 40), station="sternocleidomastoid",
                   steep_before=True)
        lon.add((lx + 3, ly - 40), zf - 3.0)
        lon.add((lx + 6, 0), zf - 3.5)
        lon.add((lx + 8, -a.superior_extent - 10), zf - 4.0)
        return [b.course() for b in (gon, ton, lon, artery)]

    def landmarks(self) -> dict[str, np.ndarray]:
        """Named landmark points (mm)."""
        out = {"eop_skin": np.zeros(3), "eop": self.xyz(0.0, 0.0, self.z_fat)}
        for name, course in self.courses.items():
            for station, u in course.stations.items():
                out[f"{name}_{station}"] = course.point(u)
        return out

    def clipped_samples(self, name: str, step: float = 0.25) -> np.ndarray:
        """Centreline points of a course inside the box (mm)."""
        p, _ = self.courses[name].samples(step)
        return p[self.in_box(p)]

    def in_box(self, p: np.ndarray, margin: float = 0.0) -> np.ndarray:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        return ((p[:, 0] >= x0 + margin) & (p[:, 0] <= x1 - margin) & (p[:, 1] >= y0 + margin)
                & (p[:, 1] <= y1 - margin) & (p[:, 2] >= margin) & (p[:, 2] <= self.depth - margin))

    def check(self) -> None:
        """Refuse parameters that make tubes overlap, kink, leave the skin or enter the bone."""
        inside = {n: self.clipped_samples(n, 0.2) for n in self.courses}
        for name, course in self.courses.items():
            if course.min_radius_of_curvature() < 1.5 * course.radius:
                raise AnatomyError(f"the {LONG_NAMES[name]} bends too sharply for its diameter; move its landmarks")
            p = inside[name]
            u = course.sample_parameters(0.2)[self.in_box(course.point(course.sample_parameters(0.2)))]
            if (p[:, 2] - course.support(u, np.array([0.0, 0.0, -1.0])) < self.z_skin).any():
                raise AnatomyError(f"the {LONG_NAMES[name]} reaches into the skin; check its depth and diameter")
            # tubes leave through the top, bottom or deep faces, steeply; one grazing a side makes slivers
            x0, x1 = self.x_range
            if (np.minimum(p[:, 0] - x0, x1 - p[:, 0]) < course.radius + 1.0).any():
                raise AnatomyError(f"the {LONG_NAMES[name]} runs out of the side of the model; increase "
                                   "lateral_extent or medial_extent")
        names = list(self.courses)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                gap = _min_distance(inside[a], inside[b]) - self.courses[a].radius - self.courses[b].radius
                if gap < 0.3:
                    raise AnatomyError(f"the {LONG_NAMES[a]} and the {LONG_NAMES[b]} come {gap:.2f} mm apart "
                                     "(at least 0.3 mm needed); move their landmarks")
        profile = self.bone_profile()
        for name, p in inside.items():
            clearance = distance_to_polyline(p[:, 1:], profile) - self.courses[name].radius
            if (self.inside_bone(p) | (clearance < 0.3)).any():
                raise AnatomyError(f"the {LONG_NAMES[name]} runs into the occipital bone; check its landmarks, "
                                 "diameter and the layer thicknesses")


class _CourseBuilder:
    """Collects a course's points (lateral, inferior, depth), slopes and named stations."""

    #: Angle (degrees) at which courses pierce a fascia.
    PIERCE = 45.0

    def __init__(self, geometry: PhantomGeometry, name: str, radius: float, minor: float | None = None,
                 roll: float = 0.0):
        self.geometry, self.name, self.radius, self.minor, self.roll = geometry, name, radius, minor, roll
        self.points: list[np.ndarray] = []
        self.slopes: list[float | None] = []
        self.stations: dict[str, int] = {}

    def add(self, plan, depth: float, station: str | None = None, slope: float | None = None) -> None:
        if station:
            self.stations[station] = len(self.points)
        self.points.append(self.geometry.xyz(float(plan[0]), float(plan[1]), depth))
        self.slopes.append(slope)

    def arrive(self, at, depth: float, came_from, going_to, station: str) -> None:
        """Rise at 45° into the interface at ``depth``, levelling off with the axis in it at ``at``.

        The course arrives heading midway between where it came from and where it goes (in plan), so
        half of any turn happens deep in the muscle rather than at the interface. The tube's leading
        edge crosses the interface before the bend, so at the full 45°; the bend spreads over twice
        its depth in plan.
        """
        rise = 1.5 * self.radius
        back = _towards(at, came_from, 1.0) - _towards(at, going_to, 1.0)
        self.add(_towards(at, np.asarray(at) + back, 2 * rise), depth + rise, slope=-self.PIERCE)
        self.add(at, depth, station=station, slope=0.0)

    def pierce(self, at, depth: float, rise: float, came_from, run: float, going_to, station: str,
               steep_before: bool = False) -> None:
        """Cross the interface at ``depth`` at 45° at ``at``, from ``rise`` mm deeper to ``run`` shallower.

        The point before lies 1.5 times its depth difference away in plan, the point after twice: level (or, with
        ``steep_before``, already rising at 45°): close enough that the Hermite pieces cannot overshoot.
        """
        self.add(_towards(at, came_from, 1.5 * rise), depth + rise, slope=-self.PIERCE if steep_before else 0.0)
        self.add(at, depth, station=station, slope=-self.PIERCE)
        self.add(_towards(at, going_to, 2 * run), depth - run, slope=0.0)

    def course(self) -> Course:
        return Course.through(self.name, self.radius, np.array(self.points), self.stations, self.slopes, self.minor,
                              self.roll)


def _towards(here, other, distance: float) -> np.ndarray:
    """The point ``distance`` mm from ``here`` towards ``other`` (in plan)."""
    here = np.array(here, float)
    d = np.array(other, float) - here
    return here + distance * d / np.linalg.norm(d)


def _min_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].min())


def distance_to_polyline(points: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance from each 2-D point to a 2-D polyline."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("pij,ij->pi", points[:, None] - a[None], ab) / np.einsum("ij,ij->i", ab, ab), 0, 1)
    closest = a[None] + t[..., None] * ab[None]
    return np.linalg.norm(points[:, None] - closest, axis=2).min(axis=1)
