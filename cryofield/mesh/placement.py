"""Needle cryoprobes placed in the occipital phantom: gauges, poses, and the checks that refuse bad ones.

A probe is a closed-end needle of the gauge's outer diameter ``d``: a cylinder with a hemispherical end.
Its *active* part is the hemisphere plus ``active_length`` mm of cylinder behind it (area
``pi d L + pi d^2 / 2``); the rest, up to where it leaves the skin, is the *shaft*. The *tip* is the apex
of the hemisphere; the *axis* is the unit vector from the tip towards the handle. Lengths are mm in the
phantom frame of :mod:`.anatomy`.

A pose is given either relative to a nerve::

    target: {nerve: gon, at: superior_nuchal_line, side: medial, gap: 0.5}
    approach: {from: superior, angle: 20}

(the centre of the tip's hemisphere lies in the nerve's cross-section at the named landmark, moved
``along`` mm along the nerve, on the given side of it, with ``gap`` mm of tissue between the nerve's
surface and the probe's; the needle comes in from the given direction at ``angle`` degrees to the skin),
or absolutely: ``tip: [x, y, z]`` with ``approach`` or ``direction: [dx, dy, dz]`` (tip towards the handle).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from cryofield.config.meshspec import GAUGES, NerveTarget, Pocket, ProbePlacement
from cryofield.mesh.anatomy import DEFAULT_STATION, LONG_NAMES, PhantomGeometry, distance_to_polyline

#: Tissue a probe must leave between itself and a nerve, vessel, bone or another probe (mm): thinner
#: slivers cannot be meshed with sound elements.
MIN_CLEARANCE = 0.1
#: Resolution of the collision checks along the probe axis (mm).
CHECK_STEP = 0.05


class Placement(Exception):
    """A probe that cannot be placed; the message says why, ``probe`` names it."""

    def __init__(self, message: str, probe: str | None = None):
        super().__init__(message)
        self.probe = probe


@dataclass(frozen=True)
class ProbePose:
    """A resolved probe: where it is and what it is (mm).

    A multi-needle tip is one pose with ``count`` needles ``spacing`` mm apart along ``row`` (a unit vector
    normal to the axis); ``apex`` is that of the middle needle (:meth:`needles` lists them all).
    ``contact_radius`` (mm): a skin contact round each needle's entry point (:meth:`entries`).
    """

    name: str
    gauge: str
    active_length: float
    apex: np.ndarray
    axis: np.ndarray  # unit vector, tip -> handle
    count: int = 1
    spacing: float = 0.0
    row: np.ndarray | None = None
    contact_radius: float | None = None

    def needles(self) -> list[ProbePose]:
        """One single-needle pose per needle, in row order (the pose itself for a single needle)."""
        if self.count == 1:
            return [self]
        offsets = (np.arange(self.count) - self.count // 2) * self.spacing
        return [ProbePose(self.name, self.gauge, self.active_length, self.apex + o * self.row, self.axis)
                for o in offsets]

    def entries(self) -> np.ndarray:
        """(count, 3) where each needle's axis meets the skin plane ``z = 0``."""
        return np.array([n.cap_centre + n.skin_distance * n.axis for n in self.needles()])

    @property
    def diameter(self) -> float:
        return GAUGES[self.gauge]

    @property
    def radius(self) -> float:
        return self.diameter / 2

    @property
    def cap_centre(self) -> np.ndarray:
        return self.apex + self.radius * self.axis

    @property
    def junction(self) -> np.ndarray:
        """Centre of the circle where the active part meets the shaft."""
        return self.cap_centre + self.active_length * self.axis

    @property
    def skin_distance(self) -> float:
        """Distance along the axis from the cap centre to the skin plane ``z = 0``."""
        return float(-self.cap_centre[2] / self.axis[2])

    def axis_points(self) -> np.ndarray:
        """Points every :data:`CHECK_STEP` or less on the axis from the cap centre to the skin."""
        stop = self.skin_distance
        t = np.linspace(0.0, stop, max(int(np.ceil(stop / CHECK_STEP)), 1) + 1)
        return self.cap_centre + t[:, None] * self.axis

    def key(self) -> dict:
        """What shapes the mesh, rounded so that equal poses hash equally."""
        key = {"name": self.name, "gauge": self.gauge, "active_length": round(self.active_length, 6),
               "apex": [round(float(v), 6) for v in self.apex], "axis": [round(float(v), 9) for v in self.axis]}
        if self.count > 1:
            key |= {"count": self.count, "spacing": round(self.spacing, 6),
                    "row": [round(float(v), 9) for v in self.row]}
        if self.contact_radius is not None:
            key["contact_radius"] = round(self.contact_radius, 6)
        return key

    def metadata(self, scale: float = 1e-3) -> dict:
        """The :class:`~cryofield.mesh.core.Mesh` metadata entry (metres); a multi-needle tip adds ``needles``
        (every apex, the middle one's is ``tip``), ``spacing`` and ``row``."""
        meta = {"tip": (self.apex * scale).tolist(), "axis": self.axis.tolist(), "diameter": self.diameter * scale,
                "active_length": self.active_length * scale, "gauge": self.gauge}
        if self.count > 1:
            meta |= {"needles": [(n.apex * scale).tolist() for n in self.needles()], "spacing": self.spacing * scale,
                     "row": self.row.tolist()}
        if self.contact_radius is not None:
            meta["contact_radius"] = self.contact_radius * scale
        return meta


def resolve(name: str, placement: ProbePlacement, geometry: PhantomGeometry) -> ProbePose:
    """The pose of a probe in the phantom (raises :class:`Placement` for a landmark that does not exist)."""
    r = GAUGES[placement.gauge] / 2
    axis = _axis(placement, geometry.sign)
    if placement.tip is not None:
        apex = np.array(placement.tip, float)
    else:
        try:
            centre = _beside_nerve(placement.target, r, geometry)
        except Placement as exc:
            raise Placement(str(exc), name) from None
        apex = centre - r * axis
    row, count, spacing = None, 1, 0.0
    if placement.needles is not None and placement.needles.count > 1:
        count, spacing = placement.needles.count, float(placement.needles.spacing)
        row = _row(placement, axis, geometry, name)
    return ProbePose(name, placement.gauge, float(placement.active_length), apex, axis, count, spacing, row,
                     None if placement.contact_radius is None else float(placement.contact_radius))


def _row(placement: ProbePlacement, axis: np.ndarray, geometry: PhantomGeometry, name: str) -> np.ndarray:
    """Unit vector of a multi-needle row, normal to the needles: along or across the target nerve, or given."""
    given = placement.needles.row
    if isinstance(given, str):
        target = placement.target
        course = geometry.courses[target.nerve]
        u = course.arc_parameter(course.stations[target.at or DEFAULT_STATION[target.nerve]], target.along)
        across = np.cross(axis, course.tangent(u))
        if np.linalg.norm(across) < 0.05:  # within 3° of each other
            raise Placement(f"the needles run along the {LONG_NAMES[target.nerve]}: a row {given} it is not "
                            "defined; give the row as [dx, dy, dz]", name)
        across /= np.linalg.norm(across)
        direction = np.cross(across, axis) if given == "along" else across
    else:
        direction = np.array(given, float)
        direction = direction - (direction @ axis) * axis
        if np.linalg.norm(direction) < 1e-6 * max(np.linalg.norm(given), 1e-30):
            raise Placement("the needle row runs along the needles; give a row direction across them", name)
    return direction / np.linalg.norm(direction)


def _axis(placement: ProbePlacement, sign: float) -> np.ndarray:
    if placement.direction is not None:
        v = np.array(placement.direction, float)
        return v / np.linalg.norm(v)
    a = placement.approach
    toward = {"lateral": (sign, 0, 0), "medial": (-sign, 0, 0), "inferior": (0, 1, 0), "superior": (0, -1, 0)}
    angle = np.radians(a.angle)
    return np.cos(angle) * np.array(toward[a.entry], float) + np.sin(angle) * np.array([0.0, 0.0, -1.0])


def _beside_nerve(target: NerveTarget, r_probe: float, geometry: PhantomGeometry) -> np.ndarray:
    course = geometry.courses[target.nerve]
    station = target.at or DEFAULT_STATION[target.nerve]
    if station not in course.stations:
        raise Placement(f"the {LONG_NAMES[target.nerve]} has no landmark '{station}' (it has: "
                        f"{', '.join(course.stations)})")
    try:
        u = course.arc_parameter(course.stations[station], target.along)
    except ValueError as exc:
        raise Placement(str(exc)) from exc
    tangent = course.tangent(u)
    s = geometry.sign
    side = {"lateral": (s, 0, 0), "medial": (-s, 0, 0), "superficial": (0, 0, -1), "deep": (0, 0, 1)}[target.side]
    side = np.array(side, float)
    normal = side - (side @ tangent) * tangent
    if np.linalg.norm(normal) < 0.3:
        raise Placement(f"the {LONG_NAMES[target.nerve]} runs almost along the {target.side} direction at "
                        f"'{station}'; choose another side")
    normal /= np.linalg.norm(normal)
    # the section's reach in that direction: the gap is then the tissue between the surfaces along the normal
    return course.point(u) + (float(course.support(u, normal)) + target.gap + r_probe) * normal


def check_poses(poses: list[ProbePose], geometry: PhantomGeometry) -> None:
    """Refuse probes that leave the body, pierce a nerve, the artery, the bone or each other.

    Raises
    ------
    Placement
        Naming the probe and what it hits.
    """
    needles = [(pose, k, needle) for pose in poses for k, needle in enumerate(pose.needles())]
    for pose, k, needle in needles:
        try:
            _check_one(needle, geometry)
        except Placement as exc:
            which = f"needle {k + 1} of {pose.count}: " if pose.count > 1 else ""
            raise Placement(which + str(exc), pose.name) from None
    for i, (pa, ka, a) in enumerate(needles):
        for pb, kb, b in needles[i + 1:]:
            gap = _segment_gap(a.axis_points(), b.axis_points()) - a.radius - b.radius
            if gap < MIN_CLEARANCE:
                other = f"probe '{pa.name}'" if pa is not pb else f"needle {ka + 1} of the same tip"
                raise Placement(f"the needle {_contact(gap)} {other}", pb.name)


def _check_one(pose: ProbePose, geometry: PhantomGeometry) -> None:
    r = pose.radius
    if pose.axis[2] > -0.02:
        raise Placement("the needle does not reach the skin: its direction (tip towards the handle) must point "
                        f"out of the body, towards negative z, but is {np.round(pose.axis, 3).tolist()}")
    if not geometry.in_box(pose.apex[None], margin=0.0)[0]:
        raise Placement(f"the tip {np.round(pose.apex, 2).tolist()} mm is outside the body (the model spans x "
                        f"{geometry.x_range}, y {geometry.y_range}, depth 0 to {geometry.depth:g} mm)")
    if pose.skin_distance < pose.active_length + r / -pose.axis[2] + MIN_CLEARANCE:
        raise Placement(f"the active part ({pose.active_length:g} mm) would stick out of the skin: place the tip "
                        "deeper or approach at a steeper angle")
    path = pose.axis_points()
    outside = _leaves_model(path, geometry, r)
    if outside.any():
        where = path[np.argmax(outside)]
        raise Placement(f"the needle leaves the body through the {_face(where, geometry)} of the model at "
                        f"{np.round(where, 1).tolist()} mm before it reaches the skin")
    bone = distance_to_polyline(path[:, 1:], geometry.bone_profile())
    bone[geometry.inside_bone(path)] *= -1
    if bone.min() - r < MIN_CLEARANCE:
        raise Placement(f"the needle {_contact(bone.min() - r)} the occipital bone")
    for name, course in geometry.courses.items():
        gap = course.surface_gap(path, 0.1, keep=geometry.in_box) - r
        if gap < MIN_CLEARANCE:
            raise Placement(f"the needle {_contact(gap)} the {LONG_NAMES[name]} ({name})")


def _leaves_model(path: np.ndarray, geometry: PhantomGeometry, r: float) -> np.ndarray:
    """Axis points closer than the probe radius (plus clearance) to a side or the deep boundary."""
    (x0, x1), (y0, y1) = geometry.x_range, geometry.y_range
    m = r + MIN_CLEARANCE
    x, y, z = path.T
    return (x < x0 + m) | (x > x1 - m) | (y < y0 + m) | (y > y1 - m) | (z > geometry.depth - m)


def _face(point: np.ndarray, geometry: PhantomGeometry) -> str:
    (x0, x1), (y0, y1) = geometry.x_range, geometry.y_range
    lateral_is_high = geometry.sign > 0
    distances = {
        "lateral side" if lateral_is_high else "medial side": x1 - point[0],
        "medial side" if lateral_is_high else "lateral side": point[0] - x0,
        "superior side": point[1] - y0, "inferior side": y1 - point[1], "deep boundary": geometry.depth - point[2],
    }
    return min(distances, key=distances.get)


def _contact(gap: float) -> str:
    if gap < 0:
        return f"pierces (overlaps by {-gap:.2f} mm)"
    return f"passes only {gap:.2f} mm from (at least {MIN_CLEARANCE:g} mm of tissue is needed)"


def _segment_gap(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest distance between two densely sampled curves."""
    if len(b) == 0:
        return np.inf
    return float(cKDTree(b).query(a)[0].min())


class PocketPlacement(Exception):
    """A fluid pocket that cannot be placed; ``index`` is its place in ``mesh.phantom.pockets``."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class PocketPose:
    """A resolved fluid pocket: an ellipsoid with ``centre``, unit ``axes`` (rows) and ``semi`` axes (mm)."""

    centre: np.ndarray
    axes: np.ndarray  # (3, 3) rows: along the nerve, across it, into the depth (or x, y, z)
    semi: np.ndarray  # (3,)

    def support(self, direction: np.ndarray) -> float:
        """How far the ellipsoid reaches from its centre in ``direction`` (a unit vector)."""
        return float(np.linalg.norm(self.semi * (self.axes @ direction)))

    def surface_points(self, n: int = 24) -> np.ndarray:
        """Points on its surface (a latitude-longitude grid)."""
        theta, phi = np.meshgrid(np.linspace(0, np.pi, n), np.linspace(0, 2 * np.pi, 2 * n))
        unit = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1).reshape(-1, 3)
        return self.centre + (unit * self.semi) @ self.axes

    def key(self) -> dict:
        return {"centre": [round(float(v), 6) for v in self.centre], "axes": np.round(self.axes, 9).tolist(),
                "semi": [round(float(v), 6) for v in self.semi]}

    def metadata(self, scale: float = 1e-3) -> dict:
        return {"centre": (self.centre * scale).tolist(), "axes": self.axes.tolist(),
                "semi_axes": (self.semi * scale).tolist()}


def resolve_pocket(pocket: Pocket, geometry: PhantomGeometry, index: int = 0) -> PocketPose:
    """The ellipsoid of pocket ``index`` in the phantom: beside (or around) its nerve in the nerve's frame, or
    at its centre with the frame's axes (raises :class:`PocketPlacement` for a landmark that does not exist)."""
    semi = np.array(pocket.size, float) / 2
    if pocket.centre is not None:
        return PocketPose(np.array(pocket.centre, float), np.eye(3), semi)
    target = pocket.target
    course = geometry.courses[target.nerve]
    station = target.at or DEFAULT_STATION[target.nerve]
    if station not in course.stations:
        raise PocketPlacement(f"the {LONG_NAMES[target.nerve]} has no landmark '{station}' (it has: "
                              f"{', '.join(course.stations)})", index)
    try:
        u = course.arc_parameter(course.stations[station], target.along)
    except ValueError as exc:
        raise PocketPlacement(str(exc), index) from exc
    axes = np.array(course.section_axes(u))
    centre = course.point(u)
    if target.side != "around":
        s = geometry.sign
        side = {"lateral": (s, 0, 0), "medial": (-s, 0, 0), "superficial": (0, 0, -1), "deep": (0, 0, 1)}[target.side]
        normal = np.array(side, float) - (np.array(side, float) @ axes[0]) * axes[0]
        normal /= np.linalg.norm(normal)
        reach = float(np.linalg.norm(semi * (axes @ normal)))
        centre = centre + (float(course.support(u, normal)) + target.gap + reach) * normal
    return PocketPose(centre, axes, semi)


def check_pockets(pockets: list[PocketPose], geometry: PhantomGeometry) -> None:
    """Refuse pockets that reach the skin layer, leave the body or enter the bone.

    Raises
    ------
    PocketPlacement
        Naming the pocket by its index.
    """
    for where, pocket in enumerate(pockets):
        top = pocket.centre[2] - pocket.support(np.array([0.0, 0.0, 1.0]))
        if top < geometry.z_skin + MIN_CLEARANCE:
            raise PocketPlacement(f"the pocket reaches up to {top:.2f} mm below the skin, into the skin layer (which "
                                  f"ends at {geometry.z_skin:g} mm): make it smaller or deeper", where)
        surface = pocket.surface_points()
        if not geometry.in_box(surface, margin=MIN_CLEARANCE).all():
            raise PocketPlacement("the pocket leaves the modelled body; make it smaller or move it", where)
        if geometry.inside_bone(surface).any():
            raise PocketPlacement("the pocket runs into the occipital bone; make it smaller or move it", where)
