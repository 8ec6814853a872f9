"""Clinical and engineering measures computed from nodal temperatures.

Volumes inside an isotherm are exact for the P1 field: within a tetrahedron T is linear, and the volume
fraction where T <= c has a closed form in the four sorted nodal values (piecewise cubic in c).
"""

from __future__ import annotations

import numpy as np


def fraction_below(values: np.ndarray, level: float) -> np.ndarray:
    """Volume fraction of each tetrahedron where the linear field is <= ``level``.

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


def volumes_below(T: np.ndarray, tets: np.ndarray, volumes: np.ndarray, elem_group: np.ndarray, n_groups: int,
                  levels: list[float]) -> np.ndarray:
    """(len(levels), n_groups) volume (m³) where T <= level, per element group (region)."""
    values = T[tets]
    lo, hi = values.min(axis=1), values.max(axis=1)
    out = np.zeros((len(levels), n_groups))
    for i, level in enumerate(levels):
        full = hi <= level
        part = (lo < level) & ~full
        vol = np.bincount(elem_group[full], volumes[full], n_groups).astype(float)
        if part.any():
            vol += np.bincount(elem_group[part], volumes[part] * fraction_below(values[part], level), n_groups)
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
                 node_ptr: np.ndarray, node_slot: np.ndarray):
        self.tets, self.volumes, self.elem_group, self.names = tets, volumes, elem_group, names
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
                             levels)
