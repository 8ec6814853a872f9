"""Clinical and engineering measures computed from nodal temperatures.

Volumes inside an isotherm are exact for the P1 field: within a tetrahedron T is linear, and the volume
fraction where T <= c has a closed form in the four sorted nodal values (piecewise cubic in c). On an
axisymmetric mesh the part of an r–z triangle at or below c is a triangle or a triangle's complement, and
the volume it sweeps about the axis is its area times 2 pi times its centroid's radius (Pappus): exact too.
"""

from __future__ import annotations

import numpy as np


def fraction_below(values: np.ndarray, level: float, radii: np.ndarray | None = None) -> np.ndarray:
    """Volume fraction of each tetrahedron where the linear field is <= ``level``.

    With ``values`` (E, 3) and the corners' ``radii`` (E, 3): of each axisymmetric triangle's ring
    (:func:`ring_fraction_below`).

    ``values`` is (E, 4) nodal values. With sorted values u0 <= u1 <= u2 <= u3 and c = level:

    * c <= u0: 0;   c >= u3: 1
    * u0 < c <= u1: (c-u0)³ / ((u1-u0)(u2-u0)(u3-u0))
    * u2 < c < u3:  1 - (u3-c)³ / ((u3-u0)(u3-u1)(u3-u2))
    * u1 < c <= u2: (g(u0) - g(u1)) / (u1 - u0), g(u) = (c-u)³ / ((u2-u)(u3-u)), or -g'(u0) when u1 ≈ u0

    Examples
    --------
    >>> float(fraction_below(np.array([[0.0, 1.0, 2.0, 3.0]]), 1.5)[0])
    0.5
    """
    if radii is not None:
        return ring_fraction_below(values, level, radii)
    u = np.sort(np.asarray(values, float), axis=1)
    u0, u1, u2, u3 = u.T
    c = float(level)

    def g(x):
        return (c - x) ** 3 / ((u2 - x) * (u3 - x))

    out = np.where(c >= u3, 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        low = (c > u0) & (c <= u1)
        out = np.where(low, (c - u0) ** 3 / ((u1 - u0) * (u2 - u0) * (u3 - u0)), out)
        high = (c > u2) & (c < u3)
        out = np.where(high, 1.0 - (u3 - c) ** 3 / ((u3 - u0) * (u3 - u1) * (u3 - u2)), out)
        mid = (c > u1) & (c <= u2)
        gap = u1 - u0
        scale = np.maximum(u3 - u0, 1e-300)
        quotient = (g(u0) - g(u1)) / gap
        d0, d2, d3 = c - u0, u2 - u0, u3 - u0
        derivative = 3 * d0**2 / (d2 * d3) - d0**3 * (d2 + d3) / (d2 * d3) ** 2
        out = np.where(mid, np.where(gap > 1e-6 * scale, quotient, derivative), out)
    return np.clip(out, 0.0, 1.0)


def ring_fraction_below(values: np.ndarray, level: float, radii: np.ndarray) -> np.ndarray:
    """Volume fraction of the ring each r–z triangle sweeps about the axis where its linear field is <= ``level``.

    With the corners sorted by value (u0 <= u1 <= u2, radii r0, r1, r2) and c = level: for u0 < c <= u1 the
    part is the triangle at corner 0 cut at s1 = (c-u0)/(u1-u0) and s2 = (c-u0)/(u2-u0) along its edges,
    of area fraction s1 s2 and centroid radius (3 r0 + s1 (r1-r0) + s2 (r2-r0)) / 3; for u1 < c < u2 it is
    the complement of the like triangle at corner 2. Each area fraction is weighted by its centroid's radius
    over the whole triangle's.

    Examples
    --------
    >>> float(ring_fraction_below(np.array([[0.0, 1.0, 1.0]]), 0.5, np.array([[1.0, 1.0, 1.0]]))[0])
    0.25
    """
    order = np.argsort(values, axis=1)
    u = np.take_along_axis(np.asarray(values, float), order, axis=1)
    r = np.take_along_axis(np.asarray(radii, float), order, axis=1)
    c = float(level)
    whole = np.maximum(r.sum(axis=1), 1e-300)  # 3 x the centroid's radius
    out = np.where(c >= u[:, 2], 1.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s1, s2 = (c - u[:, 0]) / (u[:, 1] - u[:, 0]), (c - u[:, 0]) / (u[:, 2] - u[:, 0])
        low = s1 * s2 * (3 * r[:, 0] + s1 * (r[:, 1] - r[:, 0]) + s2 * (r[:, 2] - r[:, 0])) / whole
        t0, t1 = (u[:, 2] - c) / (u[:, 2] - u[:, 0]), (u[:, 2] - c) / (u[:, 2] - u[:, 1])
        high = 1.0 - t0 * t1 * (3 * r[:, 2] + t0 * (r[:, 0] - r[:, 2]) + t1 * (r[:, 1] - r[:, 2])) / whole
        out = np.where((c > u[:, 0]) & (c <= u[:, 1]), low, out)
        out = np.where((c > u[:, 1]) & (c < u[:, 2]), high, out)
    return np.clip(out, 0.0, 1.0)


def corner_radii(points: np.ndarray, tets: np.ndarray) -> np.ndarray | None:
    """(E, 3) radii of the corners of an axisymmetric mesh's triangles (the weights :func:`fraction_below`
    needs); None for tetrahedra."""
    return points[tets][..., 0] if tets.shape[1] == 3 else None


def volumes_below(T: np.ndarray, tets: np.ndarray, volumes: np.ndarray, elem_group: np.ndarray, n_groups: int,
                  levels: list[float], radii: np.ndarray | None = None) -> np.ndarray:
    """(len(levels), n_groups) volume (m³) where T <= level, per element group (region); ``radii`` (E, 3)
    for the triangles of an axisymmetric mesh (:func:`corner_radii`)."""
    values = T[tets]
    lo, hi = values.min(axis=1), values.max(axis=1)
    out = np.zeros((len(levels), n_groups))
    for i, level in enumerate(levels):
        full = hi <= level
        part = (lo < level) & ~full
        vol = np.bincount(elem_group[full], volumes[full], n_groups).astype(float)
        if part.any():
            fraction = fraction_below(values[part], level, None if radii is None else radii[part])
            vol += np.bincount(elem_group[part], volumes[part] * fraction, n_groups)
        out[i] = vol
    return out


def incident_elements(node_ptr: np.ndarray, node_slot: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Sorted unique elements touching any of ``nodes`` (through the node → slot incidence CSR)."""
    starts, stops = node_ptr[nodes], node_ptr[nodes + 1]
    counts = stops - starts
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return np.unique(node_slot[np.arange(counts.sum()) + offsets] // 4)


class RegionMeasures:
    """Precomputed region membership for fast per-output measures.

    Isotherm volumes only look at elements touching a node at or below the warmest level, found through
    the node → element incidence, so their cost follows the ice ball, not the mesh.
    """

    def __init__(self, tets: np.ndarray, volumes: np.ndarray, elem_group: np.ndarray, names: list[str],
                 node_ptr: np.ndarray, node_slot: np.ndarray, radii: np.ndarray | None = None):
        self.tets, self.volumes, self.elem_group, self.names = tets, volumes, elem_group, names
        self.radii = radii
        self.node_ptr, self.node_slot = node_ptr, node_slot
        self.nodes = [np.unique(tets[elem_group == g]) for g in range(len(names))]

    def min_temperature(self, T: np.ndarray) -> np.ndarray:
        """Minimum nodal temperature in each region."""
        return np.array([T[n].min() if len(n) else np.nan for n in self.nodes])

    def volumes_below(self, T: np.ndarray, levels: list[float]) -> np.ndarray:
        """(len(levels), regions) volume (m³) where T <= level."""
        cold = np.flatnonzero(T <= max(levels))
        if len(cold) == 0:
            return np.zeros((len(levels), len(self.names)))
        elems = incident_elements(self.node_ptr, self.node_slot, cold)
        return volumes_below(T, self.tets[elems], self.volumes[elems], self.elem_group[elems], len(self.names),
                             levels, None if self.radii is None else self.radii[elems])
