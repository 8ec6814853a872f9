"""P1 tetrahedron geometry: shape-function gradients, volumes, lumped mass, facet areas, stiffness.

The stiffness of one element with conductivity ``k_e`` is ``k_e * V_e * g_a . g_b`` (``g_a`` the
gradient of the hat function of local node ``a``). Because each row of it sums to zero, the six
off-diagonal *edge coefficients* carry all of it::

    (K T)_a = sum_{b != a} K_ab (T_b - T_a)

which is what the kernels store (6 numbers per element instead of 16).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Local node pairs of the six edges of a tetrahedron, in the order the kernels use.
EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])


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


def edge_coefficients(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """K_ab = V g_a . g_b for the six edges of each element (E, 6), in :data:`EDGES` order."""
    grads, volumes = gradients_and_volumes(points, tets)
    a, b = EDGES.T
    return volumes[:, None] * np.einsum("eij,eij->ei", grads[:, a], grads[:, b])


def lumped_volumes(tets: np.ndarray, volumes: np.ndarray, n_nodes: int,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """Row-sum lumped mass of a unit-density P1 mass matrix: each node gets a quarter of each element.

    ``weights`` (E,) multiplies each element's share (e.g. a per-element property).
    """
    share = volumes / 4.0 if weights is None else volumes * weights / 4.0
    return np.bincount(tets.ravel(), weights=np.repeat(share, 4), minlength=n_nodes)


def facet_areas(points: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Area of each triangle."""
    p = points[facets]
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


def lumped_facet_areas(points: np.ndarray, facets: np.ndarray, n_nodes: int) -> np.ndarray:
    """Each node's share (a third) of the area of the triangles around it."""
    return np.bincount(facets.ravel(), weights=np.repeat(facet_areas(points, facets) / 3.0, 3), minlength=n_nodes)


def stiffness_matrix(tets: np.ndarray, edge_coef: np.ndarray, k_elem: np.ndarray, n_nodes: int) -> sp.csr_matrix:
    """Assembled K = sum_e k_e V_e g_a . g_b as a sparse matrix, rebuilt from the edge coefficients."""
    a, b = EDGES.T
    w = edge_coef * k_elem[:, None]
    rows = np.concatenate([tets[:, a].ravel(), tets[:, b].ravel(), tets[:, a].ravel(), tets[:, b].ravel()])
    cols = np.concatenate([tets[:, b].ravel(), tets[:, a].ravel(), tets[:, a].ravel(), tets[:, b].ravel()])
    vals = np.concatenate([w.ravel(), w.ravel(), -w.ravel(), -w.ravel()])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_nodes, n_nodes))
