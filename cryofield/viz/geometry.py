"""Geometry for the pictures: the probe-plane (ultrasound) slice, plane cuts, point sampling, nerve centrelines.

Pure numpy and scipy, so the 2D slice and the plots work where no OpenGL context can be made.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np
from scipy.spatial import cKDTree

from .data import VizResult

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


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, variances (descending) and the matching unit axes (rows) of a point cloud."""
    centre = points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((points - centre).T) if len(points) > 1 else np.eye(3))
    order = np.argsort(values)[::-1]
    return centre, values[order], vectors[:, order].T


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
    """A centreline (K, 3) per nerve region: the metadata's when given, else estimated from the region.

    The estimate bins the region's nodes along their long axis and joins the bin centroids, which
    follows a nerve that is straight or gently curved.
    """
    given = vr.result.metadata.get("centerlines") or {}
    out = {}
    for r in vr.regions_with("nerve"):
        name = vr.result.region_names[r]
        line = np.asarray(given.get(name, []), float)
        out[name] = line if len(line) >= 2 else _estimated_centreline(vr.points[vr.region_nodes[r]])
    return out


def _estimated_centreline(nodes: np.ndarray) -> np.ndarray:
    centre, _, axes = principal_axes(nodes)
    s = (nodes - centre) @ axes[0]
    n_bins = int(np.clip(len(nodes) // 20, 2, 60))
    edges = np.linspace(s.min(), s.max() + 1e-12, n_bins + 1)
    which = np.digitize(s, edges) - 1
    return np.array([nodes[which == b].mean(axis=0) for b in range(n_bins) if np.any(which == b)])


def _nearest_on_polyline(line: np.ndarray, point: np.ndarray) -> tuple[float, np.ndarray]:
    """Distance from ``point`` to the polyline and the polyline's unit tangent there."""
    a, b = line[:-1], line[1:]
    ab = b - a
    t = np.clip(np.einsum("ij,ij->i", point - a, ab) / np.maximum(np.einsum("ij,ij->i", ab, ab), 1e-30), 0, 1)
    dist = np.linalg.norm(a + t[:, None] * ab - point, axis=1)
    k = int(np.argmin(dist))
    return float(dist[k]), _unit(ab[k])


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
    """The slice plane a clinician's ultrasound would show: it contains the probe axis (needle in plane).

    The second direction is the nearest nerve's direction near the probe tip (the nerve's long axis, so the
    slice shows how much of the nerve the ice covers); if the nerve runs within 20° of the probe axis, or
    there is no nerve, the direction to the skin; failing both, the mesh's widest direction across the axis.
    The slice is drawn with the skin up when the skin is known.
    """
    origin, axis, axis_reason = probe_axis(vr)
    axis = _unit(axis)
    skin = skin_direction(vr, origin)
    second, second_reason = _nerve_direction(vr, origin, axis)
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


def _nerve_direction(vr: VizResult, point: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray | None, str]:
    best = None
    for name, line in nerve_centrelines(vr).items():
        if len(line) < 2:
            continue
        dist, tangent = _nearest_on_polyline(line, point)
        if best is None or dist < best[0]:
            best = (dist, tangent, name)
    if best is None or np.linalg.norm(np.cross(best[1], axis)) < np.sin(np.radians(MIN_PLANE_ANGLE_DEG)):
        return None, ""
    return best[1], f"the direction of {best[2]} near the tip"


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
    so that every cut point lies inside an edge and neighbouring triangles share their cut points.
    """
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


class PointSampler:
    """Linear interpolation of nodal fields at fixed points (NaN outside the mesh).

    Each point is located in one of the tetrahedra whose centroids are nearest to it, by its
    barycentric coordinates. Only tetrahedra that can reach the points' bounding box are searched.
    """

    def __init__(self, points: np.ndarray, tets: np.ndarray, where: np.ndarray, candidates: int = 32):
        self.tets = tets
        where = np.atleast_2d(np.asarray(where, float))
        centre = centroids(points, tets)
        reach = np.max([np.linalg.norm(points[tets[:, k]] - centre, axis=1) for k in range(4)], axis=0)[:, None]
        near_box = np.flatnonzero(np.all((centre >= where.min(axis=0) - reach) & (centre <= where.max(axis=0) + reach),
                                         axis=1))
        if len(near_box) == 0:
            near_box = np.arange(len(tets))  # no tetrahedron comes near: every point will be outside
        _, near = cKDTree(centre[near_box]).query(where, k=min(candidates, len(near_box)))
        near = near_box[near.reshape(len(where), -1)]
        corners = points[tets[near]]  # (n, k, 4, 3)
        m = np.swapaxes(corners[:, :, 1:] - corners[:, :, :1], -1, -2)
        lam = np.linalg.solve(m, (where[:, None, :] - corners[:, :, 0])[..., None])[..., 0]
        bary = np.concatenate([1.0 - lam.sum(axis=-1, keepdims=True), lam], axis=-1)
        inside = bary.min(axis=-1) >= -1e-9
        first = np.argmax(inside, axis=1)
        rows = np.arange(len(where))
        self.cell = np.where(inside[rows, first], near[rows, first], -1)
        self.bary = bary[rows, first]

    @property
    def found(self) -> np.ndarray:
        return self.cell >= 0

    def __call__(self, nodal: np.ndarray) -> np.ndarray:
        out = np.einsum("ij,ij->i", nodal[self.tets[np.maximum(self.cell, 0)]], self.bary)
        return np.where(self.found, out, np.nan)


class NerveLength:
    """Length of each nerve's centreline at or below a temperature, for any snapshot.

    The centreline is resampled every ``step`` metres and the field is interpolated there; the length is
    that of the resampled pieces whose midpoint is at or below the level (pieces outside the mesh do not count).
    """

    def __init__(self, vr: VizResult, step: float = 5e-5):
        self.samplers: dict[str, tuple[PointSampler, np.ndarray]] = {}
        for name, line in nerve_centrelines(vr).items():
            if len(line) < 2:
                continue
            mids, lengths = _resample(line, step)
            self.samplers[name] = (PointSampler(vr.points, vr.tets, mids), lengths)

    def __call__(self, temperature: np.ndarray, level: float) -> dict[str, float]:
        """Length (m) below ``level`` per nerve."""
        out = {}
        for name, (sampler, lengths) in self.samplers.items():
            values = sampler(temperature)
            out[name] = float(lengths[np.nan_to_num(values, nan=np.inf) <= level].sum())
        return out


def _resample(line: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and lengths of pieces no longer than ``step`` covering the polyline."""
    mids, lengths = [], []
    for a, b in pairwise(line):
        length = float(np.linalg.norm(b - a))
        n = max(1, int(np.ceil(length / step)))
        s = (np.arange(n) + 0.5) / n
        mids.append(a + s[:, None] * (b - a))
        lengths.append(np.full(n, length / n))
    return np.concatenate(mids), np.concatenate(lengths)
