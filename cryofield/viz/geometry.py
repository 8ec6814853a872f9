"""Geometry for the pictures: the probe-plane (ultrasound) slice, plane cuts, point sampling, nerve centrelines.

Pure numpy, so the 2D slice and the plots work where no OpenGL context can be made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryofield.model.roles import principal_axes
from cryofield.outcomes.clinical import NerveLesion
from cryofield.viz.data import VizResult

#: A nerve whose direction is within this angle of the probe axis does not define a plane with it.
MIN_PLANE_ANGLE_DEG = 20.0


@dataclass(frozen=True)
class Plane:
    """A slice plane: ``origin`` (m) and an orthonormal in-plane basis; ``normal = e_u × e_v``.

    ``e_v`` points towards the skin when the skin is known, so the slice is drawn skin up, as on the
    ultrasound screen. ``reason`` says in words how the plane was chosen.
    """

    origin: np.ndarray
    e_u: np.ndarray
    e_v: np.ndarray
    reason: str

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.e_u, self.e_v)

    def to_plane(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) in-plane coordinates (m) of 3D points (projected along the normal)."""
        rel = np.asarray(points, float) - self.origin
        return np.stack([rel @ self.e_u, rel @ self.e_v], axis=-1)

    def to_space(self, uv: np.ndarray) -> np.ndarray:
        """3D points (m) of in-plane coordinates."""
        uv = np.asarray(uv, float)
        return self.origin + uv[..., :1] * self.e_u + uv[..., 1:2] * self.e_v


def centroids(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Centroid of each tetrahedron (without an (E, 4, 3) temporary: phantoms have millions of elements)."""
    total = points[tets[:, 0]].copy()
    for k in (1, 2, 3):
        total += points[tets[:, k]]
    return total / 4.0


def unique_rows(rows: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group rows of node indices (edges, faces) that hold the same nodes in any order.

    Returns, as ``np.unique(..., axis=0)`` would for the sorted rows, the index of each group's first row,
    each row's group and each group's size. Rows are packed into one int64 key when the node count
    allows, which is several times faster than sorting rows.
    """
    rows = np.sort(rows, axis=1)
    if float(n_nodes) ** rows.shape[1] >= 2.0**63:
        _, first, inverse, counts = np.unique(rows, axis=0, return_index=True, return_inverse=True,
                                              return_counts=True)
        return first, inverse.ravel(), counts
    key = np.zeros(len(rows), np.int64)
    for column in rows.T:
        key = key * n_nodes + column
    _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
    return first, inverse, counts


def _unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, float) / np.linalg.norm(v)


def probe_axis(vr: VizResult) -> tuple[np.ndarray, np.ndarray, str]:
    """A point on the first probe's axis (its tip when known), the axis, and where they came from.

    The mesh metadata's pose is exact. Without it, the probe surface's principal axes: an elongated
    surface (a needle) gives its long axis; a flat or round one (a face or a ball) its normal. Without a
    probe, the coldest node and the mesh's long axis.
    """
    for name in vr.result.probes:
        pose = vr.probe_pose(name)
        if pose is not None:
            return pose.tip, pose.axis, f"the axis of probe {name!r}"
    for name, triangles in vr.probe_surfaces.items():
        nodes = vr.points[np.unique(triangles)]
        centre, variances, axes = principal_axes(nodes)
        elongated = variances[0] > 4.0 * max(variances[1], 1e-30)
        return centre, axes[0] if elongated else axes[2], f"the axis of probe {name!r} (from its surface)"
    coldest = int(np.argmin(vr.result.fields["min_temperature"]))
    return vr.points[coldest], principal_axes(vr.points)[2][0], "the coldest point"


def nerve_centrelines(vr: VizResult) -> dict[str, np.ndarray]:
    """The centreline (K, 3) of each nerve region, as the result's role table stores it (the mesh
    metadata's, or one estimated when the run was set up; see :mod:`cryofield.model.roles`)."""
    lines = vr.table.centrelines
    return {name: lines[name] for name in vr.table.regions_with("nerve") if name in lines}


def skin_direction(vr: VizResult, point: np.ndarray) -> np.ndarray | None:
    """Unit vector from ``point`` to the nearest skin surface node (the skin normal there), if a skin is known.

    The skin is a boundary surface with "skin" in its name, else the outer boundary of the skin regions.
    """
    named = [tri for name, tri in vr.result.surfaces.items() if "skin" in name.lower()]
    if named:
        nodes = np.unique(np.concatenate(named))
    elif vr.regions_with("skin"):
        nodes = np.unique(np.concatenate([vr.region_nodes[r] for r in vr.regions_with("skin")]))
        nodes = nodes[np.isin(nodes, _boundary_nodes(vr.tets))]
    else:
        return None
    if len(nodes) == 0:
        return None
    offsets = vr.points[nodes] - point
    nearest = offsets[np.argmin(np.linalg.norm(offsets, axis=1))]
    return _unit(nearest) if np.linalg.norm(nearest) > 0 else None


def _boundary_nodes(tets: np.ndarray) -> np.ndarray:
    faces = np.concatenate([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]])
    first, _, counts = unique_rows(faces, int(tets.max()) + 1)
    return np.unique(faces[first[counts == 1]])


def ultrasound_plane(vr: VizResult) -> Plane:
    """The slice plane: the probe axis (the needle in plane, as the clinician aligns the transducer) and the
    nerve the ice is meant for, in one picture.

    The plane contains the probe axis and the point of the nearest nerve's centreline closest to the
    probe's active part, so the nerve is in the picture whether it runs along the needle or across it;
    where the nerve meets the axis itself, the plane contains the nerve's direction there instead. Without
    a nerve (or with one along the axis), the plane contains the direction to the skin, as a depth view
    does; failing that, the mesh's widest direction across the axis. The slice is drawn skin up when the
    skin is known, the needle's handle to the right. An axisymmetric result's plane is its r–z plane
    (:func:`axisymmetric_plane`).
    """
    if vr.axisymmetric:
        return axisymmetric_plane(vr)
    origin, axis, axis_reason = probe_axis(vr)
    axis = _unit(axis)
    skin = skin_direction(vr, origin)
    second, second_reason = _towards_nerve(vr, origin, axis)
    if second is None and skin is not None and np.linalg.norm(np.cross(skin, axis)) > np.sin(np.radians(10)):
        second, second_reason = skin, "the direction to the skin"
    if second is None:
        flat = vr.points - np.outer(vr.points @ axis, axis)
        second, second_reason = principal_axes(flat)[2][0], "the mesh's widest direction"
    normal = _unit(np.cross(axis, second))
    e_u, e_v = axis, np.cross(normal, axis)
    if skin is not None:
        in_plane = skin - (skin @ normal) * normal
        if np.linalg.norm(in_plane) > 0.3:
            e_v = _unit(in_plane)
            e_u = np.cross(e_v, normal)
    if e_u @ axis < 0:  # the handle to the right: the needle comes in from the right of the screen
        e_u = -e_u
    return Plane(np.asarray(origin, float), _unit(e_u), _unit(e_v),
                 f"contains {axis_reason} and {second_reason}")


def _towards_nerve(vr: VizResult, origin: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray | None, str]:
    """A direction that, with the probe axis, spans a plane through the nearest nerve (see ultrasound_plane)."""
    pose = next((vr.probe_pose(n) for n in vr.result.probes if vr.probe_pose(n) is not None), None)
    active = np.array([origin, origin + axis * (pose.active_length if pose is not None else 0.0)])
    best = None
    for name, line in nerve_centrelines(vr).items():
        if len(line) < 2:
            continue
        point, tangent, dist = _closest_between(line, active)
        if best is None or dist < best[0]:
            best = (dist, point, tangent, name)
    if best is None:
        return None, ""
    _, point, tangent, name = best
    offset = (point - origin) - ((point - origin) @ axis) * axis
    scale = float(np.ptp(vr.points, axis=0).max())
    if np.linalg.norm(offset) > 1e-3 * scale:
        return offset, f"the nearest point of {name}"
    if np.linalg.norm(np.cross(tangent, axis)) > np.sin(np.radians(MIN_PLANE_ANGLE_DEG)):
        return tangent, f"the direction of {name} where it meets the axis"
    return None, ""


def _closest_between(line: np.ndarray, segment: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The point of a polyline closest to a segment (sampled finely), the polyline's tangent there, the distance."""
    samples = segment[0] + np.linspace(0.0, 1.0, 41)[:, None] * (segment[1] - segment[0])
    a, b = line[:-1], line[1:]
    ab = b - a
    rel = samples[:, None, :] - a[None]
    t = np.clip(np.einsum("ijk,jk->ij", rel, ab) / np.maximum(np.einsum("jk,jk->j", ab, ab), 1e-30), 0.0, 1.0)
    foot = a[None] + t[..., None] * ab[None]
    dist = np.linalg.norm(foot - samples[:, None, :], axis=2)
    i, j = np.unravel_index(int(np.argmin(dist)), dist.shape)
    return foot[i, j], _unit(ab[j]), float(dist[i, j])


@dataclass(frozen=True)
class Cut:
    """A plane cut of the tetrahedral mesh: triangles in plane coordinates with their region.

    Each cut point lies on a mesh edge ``(a, b)`` at ``weight`` from ``a``, so any nodal field is cut exactly
    (P1 fields are linear along edges) with :meth:`values`.
    """

    uv: np.ndarray  # (P, 2) m
    triangles: np.ndarray  # (K, 3) indices into uv
    region: np.ndarray  # (K,) region index
    a: np.ndarray
    b: np.ndarray
    weight: np.ndarray

    def values(self, nodal: np.ndarray) -> np.ndarray:
        return (1.0 - self.weight) * nodal[self.a] + self.weight * nodal[self.b]

    def outline_edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges where the region changes or the cut ends: (S, 2) point-index pairs and the regions on
        either side (the same region twice on the cut's border)."""
        edges = self.triangles[:, [[0, 1], [1, 2], [2, 0]]].reshape(-1, 2)
        owner = np.repeat(self.region, 3)
        first, inverse, counts = unique_rows(edges, len(self.uv))
        low = np.full(len(first), np.iinfo(np.int64).max)
        high = np.full(len(first), -1)
        np.minimum.at(low, inverse, owner)
        np.maximum.at(high, inverse, owner)
        keep = (counts == 1) | (low != high)
        return edges[first[keep]], low[keep], high[keep]


def cut_mesh(points: np.ndarray, tets: np.ndarray, region: np.ndarray, plane: Plane) -> Cut:
    """Cut the tetrahedra with ``plane`` into triangles (a tetrahedron cut in a quadrilateral gives two).

    A plane through mesh nodes (common on structured meshes) is moved by a tiny fraction of the mesh size,
    so that every cut point lies inside an edge and neighbouring triangles share their cut points. An
    axisymmetric mesh is its own section: its r–z triangles and their mirror image across the axis
    (:func:`section_of_revolution`).
    """
    if tets.shape[1] == 3:
        return section_of_revolution(points, tets, region, plane)
    d = (points - plane.origin) @ plane.normal
    scale = float(np.ptp(points, axis=0).max())
    if np.any(np.abs(d) < 1e-9 * scale):
        d = d - 1.2345e-7 * scale
    above = d[tets] > 0
    n_above = above.sum(axis=1)
    tri_edges, tri_region = [], []
    for count in (1, 3):  # one node alone on its side: a triangle
        sel = np.flatnonzero(n_above == count)
        lone_mask = above[sel] if count == 1 else ~above[sel]
        order = np.argsort(~lone_mask, axis=1, kind="stable")
        t = np.take_along_axis(tets[sel], order, axis=1)
        tri_edges.append(np.stack([t[:, [0, 1]], t[:, [0, 2]], t[:, [0, 3]]], axis=1))
        tri_region.append(region[sel])
    sel = np.flatnonzero(n_above == 2)  # two and two: a quadrilateral, split in two triangles
    order = np.argsort(~above[sel], axis=1, kind="stable")
    t = np.take_along_axis(tets[sel], order, axis=1)  # p0, p1 above; n0, n1 below
    quad = np.stack([t[:, [0, 2]], t[:, [0, 3]], t[:, [1, 3]], t[:, [1, 2]]], axis=1)
    tri_edges += [quad[:, [0, 1, 2]], quad[:, [0, 2, 3]]]
    tri_region += [region[sel], region[sel]]
    edges = np.concatenate(tri_edges).reshape(-1, 2)
    first, inverse, _ = unique_rows(edges, len(points))
    a, b = edges[first, 0], edges[first, 1]
    da, db = d[a], d[b]
    weight = da / (da - db)
    xyz = (1.0 - weight)[:, None] * points[a] + weight[:, None] * points[b]
    return Cut(plane.to_plane(xyz), inverse.reshape(-1, 3), np.concatenate(tri_region), a, b, weight)


def section_of_revolution(points: np.ndarray, tris: np.ndarray, region: np.ndarray, plane: Plane) -> Cut:
    """The section through the axis of an axisymmetric mesh: the r–z triangles at (r, z) and mirrored at
    (-r, z), in the coordinates of ``plane`` (:func:`ultrasound_plane`'s r–z plane); each point is a node."""
    mirrored = points * np.array([-1.0, 1.0, 1.0])
    nodes = np.arange(len(points))
    image = np.where(points[:, 0] > 0, nodes + len(points), nodes)  # a node on the axis is its own mirror image
    return Cut(plane.to_plane(np.concatenate([points, mirrored])), np.concatenate([tris, image[tris]]),
               np.concatenate([region, region]), np.concatenate([nodes, nodes]), np.concatenate([nodes, nodes]),
               np.zeros(2 * len(points)))


def axisymmetric_plane(vr: VizResult) -> Plane:
    """The plane of an axisymmetric result's section: the axis along ``e_u`` (from the first probe's tip
    towards its handle), the radius up."""
    origin, axis, axis_reason = probe_axis(vr)
    e_u = np.array([0.0, 0.0, 1.0 if axis[2] >= 0 else -1.0])
    return Plane(np.array([0.0, 0.0, float(origin[2])]), e_u, np.array([1.0, 0.0, 0.0]),
                 f"the r-z plane of the axisymmetric model, through {axis_reason}, mirrored about the axis")


def cut_triangles(points: np.ndarray, triangles: np.ndarray, plane: Plane) -> np.ndarray:
    """(S, 2, 2) in-plane segments where surface triangles cross ``plane``."""
    d = (points - plane.origin) @ plane.normal
    dt = d[triangles]
    above = dt >= 0
    crossing = np.flatnonzero((above.sum(axis=1) == 1) | (above.sum(axis=1) == 2))
    segments = []
    for k in crossing:
        pts = []
        for i, j in ((0, 1), (1, 2), (2, 0)):
            if above[k, i] != above[k, j]:
                w = dt[k, i] / (dt[k, i] - dt[k, j])
                pts.append(points[triangles[k, i]] + w * (points[triangles[k, j]] - points[triangles[k, i]]))
        segments.append(plane.to_plane(np.array(pts[:2])))
    return np.array(segments).reshape(-1, 2, 2)


class NerveLength(NerveLesion):
    """:class:`cryofield.outcomes.clinical.NerveLesion` for a result's nerves, along their stored centrelines."""

    def __init__(self, vr: VizResult):
        names = [vr.result.region_names[r] for r in vr.regions_with("nerve")]
        super().__init__(vr.points, vr.tets, vr.result.region_id, vr.result.region_names, nerve_centrelines(vr),
                         names)
