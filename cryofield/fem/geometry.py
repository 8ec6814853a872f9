"""P1 element geometry: shape-function gradients, volumes, lumped mass, facet areas, stiffness.

Two kinds of mesh share these layers. A 3-D mesh has tetrahedra (E, 4) and boundary triangles (F, 3). An
*axisymmetric* mesh has P1 triangles (E, 3) in the r–z half plane (points ``(r, 0, z)``, r >= 0, the
z axis the axis of symmetry) and boundary segments (F, 2); every integral carries the weight ``2 pi r``,
so volumes, lumped masses, areas and stiffness are those of the solid of revolution (docs/physics.md §2.3).
:func:`is_axisymmetric` tells them apart by the width of the element array.

The stiffness of one element with conductivity ``k_e`` is ``k_e * V_e * g_a . g_b`` (``g_a`` the
gradient of the hat function of local node ``a``; for a triangle ``V_e = 2 pi r_c A_e`` with ``r_c`` the
centroid's radius, exact for P1 since the gradients are constant and ``r`` is linear). Because each row of
it sums to zero, the off-diagonal *edge coefficients* carry all of it::

    (K T)_a = sum_{b != a} K_ab (T_b - T_a)

which is what the kernels store: 6 numbers per element in :data:`EDGES` order, a triangle's three edges
at :data:`TRIANGLE_EDGE_SLOTS` and zeros in the other three.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Local node pairs of the six edges of a tetrahedron, in the order the kernels use.
EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
#: The rows of :data:`EDGES` that are a triangle's edges (0-1, 0-2, 1-2).
TRIANGLE_EDGE_SLOTS = np.array([0, 1, 3])
#: Coordinates (columns of ``points``) of the r–z plane of an axisymmetric mesh.
RZ = [0, 2]


def is_axisymmetric(cells: np.ndarray) -> bool:
    """Whether ``cells`` are the r–z triangles of an axisymmetric mesh (3 nodes) rather than tetrahedra."""
    return cells.shape[1] == 3


def edges_of(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local node pairs of the element's edges and their columns in the (E, 6) edge coefficients."""
    if is_axisymmetric(cells):
        return EDGES[TRIANGLE_EDGE_SLOTS], TRIANGLE_EDGE_SLOTS
    return EDGES, np.arange(6)


def gradients_and_volumes(points: np.ndarray, tets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hat-function gradients (E, 4, 3) and volumes (E,) of positively oriented tetrahedra."""
    p = points[tets]
    jac = np.stack([p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]], axis=1)  # rows: edge vectors
    volumes = np.linalg.det(jac) / 6.0
    inv = np.linalg.inv(jac)  # columns of inv are the gradients of barycentric coordinates 1..3
    grads = np.empty((len(tets), 4, 3))
    grads[:, 1:] = np.transpose(inv, (0, 2, 1))
    grads[:, 0] = -grads[:, 1:].sum(axis=1)
    return grads, volumes


def triangle_gradients_and_areas(points: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hat-function gradients (E, 3, 2) in (r, z) and signed areas (E,) of r–z triangles (positive:
    counter-clockwise in the (r, z) plane)."""
    p = points[tris][..., RZ]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    area = 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
    grads = np.empty((len(tris), 3, 2))
    # g_1 = perp(e2) / 2A, g_2 = -perp(e1) / 2A with perp(x, y) = (y, -x); g_0 = -(g_1 + g_2)
    grads[:, 1] = np.stack([e2[:, 1], -e2[:, 0]], axis=1) / (2 * area[:, None])
    grads[:, 2] = np.stack([-e1[:, 1], e1[:, 0]], axis=1) / (2 * area[:, None])
    grads[:, 0] = -(grads[:, 1] + grads[:, 2])
    return grads, area


def cell_volumes(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Volume (m³) of each element: a tetrahedron's, or the ring a triangle sweeps about the axis (2 pi r_c A)."""
    if is_axisymmetric(cells):
        _, area = triangle_gradients_and_areas(points, cells)
        return 2 * np.pi * points[cells][..., 0].mean(axis=1) * area
    return gradients_and_volumes(points, cells)[1]


def edge_coefficients(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """K_ab = V g_a . g_b for the edges of each element (E, 6), in :data:`EDGES` order (module doc)."""
    coef = np.zeros((len(cells), 6))
    pairs, slots = edges_of(cells)
    if is_axisymmetric(cells):
        grads, _ = triangle_gradients_and_areas(points, cells)
    else:
        grads, _ = gradients_and_volumes(points, cells)
    volumes = cell_volumes(points, cells)
    a, b = pairs.T
    coef[:, slots] = volumes[:, None] * np.einsum("eij,eij->ei", grads[:, a], grads[:, b])
    return coef


def corner_shares(points: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(E, w) the fraction of each element's volume that lumping gives each corner (the integral of its hat
    function): a quarter for a tetrahedron, ``(2 r_i + r_j + r_k) / (4 (r_i + r_j + r_k))`` for a triangle."""
    if is_axisymmetric(cells):
        r = points[cells][..., 0]
        total = r.sum(axis=1, keepdims=True)
        return (r + total) / (4.0 * np.maximum(total, 1e-300))
    return np.full(cells.shape, 0.25)


def lumped_volumes(points: np.ndarray, cells: np.ndarray, n_nodes: int, weights: np.ndarray | None = None
                   ) -> np.ndarray:
    """Row-sum lumped mass of a unit-density P1 mass matrix.

    A tetrahedron gives each corner a quarter of its volume; a triangle gives corner i
    ``2 pi A (2 r_i + r_j + r_k) / 12``, the integral of its hat function times ``2 pi r``. ``weights`` (E,)
    multiplies each element's shares (e.g. a per-element property).
    """
    share = cell_volumes(points, cells)[:, None] * corner_shares(points, cells)
    if weights is not None:
        share = share * weights[:, None]
    return np.bincount(cells.ravel(), weights=share.ravel(), minlength=n_nodes)


def facet_areas(points: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Area of each boundary facet: a triangle's, or the band a segment sweeps about the axis (2 pi r_c L)."""
    p = points[facets]
    if facets.shape[1] == 2:
        return 2 * np.pi * p[..., 0].mean(axis=1) * np.linalg.norm(p[:, 1] - p[:, 0], axis=1)
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


def lumped_facet_areas(points: np.ndarray, facets: np.ndarray, n_nodes: int) -> np.ndarray:
    """Each node's share of the area of the facets around it: a third of a triangle's; for a segment of an
    axisymmetric mesh ``2 pi L (2 r_i + r_j) / 6``, its hat function times ``2 pi r``."""
    if facets.shape[1] == 2:
        r = points[facets][..., 0]
        length = np.linalg.norm(points[facets[:, 1]] - points[facets[:, 0]], axis=1)
        share = 2 * np.pi * length[:, None] * (r + r.sum(axis=1, keepdims=True)) / 6.0
        return np.bincount(facets.ravel(), weights=share.ravel(), minlength=n_nodes)
    return np.bincount(facets.ravel(), weights=np.repeat(facet_areas(points, facets) / 3.0, 3), minlength=n_nodes)


def stiffness_matrix(cells: np.ndarray, edge_coef: np.ndarray, k_elem: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """Assembled K = sum_e k_e V_e g_a . g_b as a sparse matrix, rebuilt from the edge coefficients."""
    pairs, slots = edges_of(cells)
    a, b = pairs.T
    w = edge_coef[:, slots] * k_elem[:, None]
    rows = np.concatenate([cells[:, a].ravel(), cells[:, b].ravel(), cells[:, a].ravel(), cells[:, b].ravel()])
    cols = np.concatenate([cells[:, b].ravel(), cells[:, a].ravel(), cells[:, a].ravel(), cells[:, b].ravel()])
    vals = np.concatenate([w.ravel(), w.ravel(), -w.ravel(), -w.ravel()])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_nodes, n_nodes))


def kernel_cells(cells: np.ndarray) -> np.ndarray:
    """The (E, 4) element array the kernels read: tetrahedra as they are, a triangle's fourth corner -1
    (:func:`cryofield.kernels.bodies.element_flux_at` takes it for a triangle)."""
    if not is_axisymmetric(cells):
        return cells
    return np.concatenate([cells, np.full((len(cells), 1), -1, cells.dtype)], axis=1)


def incidence(cells: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of each node's element slots: node i is local node a of element e at the slots ``4 e + a``
    listed in ``node_slot[node_ptr[i]:node_ptr[i + 1]]`` (four slots per element, whatever its kind)."""
    width = cells.shape[1]
    order = np.argsort(cells.ravel(), kind="stable")
    slot = 4 * (order // width) + order % width
    node_ptr = np.concatenate([[0], np.cumsum(np.bincount(cells.ravel(), minlength=n_nodes))])
    return node_ptr.astype(np.int64), slot.astype(np.int64)


def locate_points(points: np.ndarray, cells: np.ndarray, x: np.ndarray, candidates: int = 32
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes (P, w) and P1 weights (P, w) of the elements holding the points ``x`` (P, 3), and (P,) whether
    each was found inside the mesh (a point outside, or in a hole, has none); ``w`` the element's width.

    On an axisymmetric mesh a point ``(x, y, z)`` is looked up at ``(sqrt(x² + y²), z)``.
    """
    from scipy.spatial import cKDTree

    x = np.atleast_2d(np.asarray(x, float))
    if is_axisymmetric(cells):
        x, corners = np.stack([np.hypot(x[:, 0], x[:, 1]), x[:, 2]], axis=1), points[cells][..., RZ]
    else:
        corners = points[cells]
    _, near = cKDTree(corners.mean(axis=1)).query(x, k=min(candidates, len(cells)))
    near = near.reshape(len(x), -1)
    width = cells.shape[1]
    best_lam = np.full((len(x), width), -np.inf)
    best_e = np.zeros(len(x), int)
    for c in range(near.shape[1]):
        e = near[:, c]
        p = corners[e]  # (P, w, d)
        T = np.transpose(p[:, 1:] - p[:, :1], (0, 2, 1))  # (P, d, d): columns are edges from corner 0
        with np.errstate(all="ignore"):
            lam_rest = np.linalg.solve(T, (x - p[:, 0])[..., None])[..., 0]
        lam = np.concatenate([1.0 - lam_rest.sum(axis=1, keepdims=True), lam_rest], axis=1)
        better = lam.min(axis=1) > best_lam.min(axis=1)
        best_lam[better], best_e[better] = lam[better], e[better]
    found = best_lam.min(axis=1) >= -1e-9
    weights = np.clip(best_lam, 0.0, None)
    weights /= np.where(weights.sum(axis=1, keepdims=True) > 0, weights.sum(axis=1, keepdims=True), 1.0)
    return cells[best_e], weights, found


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
