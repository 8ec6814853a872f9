"""Mesh topology helpers: faces, boundary faces (of tetrahedra, and of the triangles of axisymmetric meshes)."""

from __future__ import annotations

import numpy as np

#: The four faces of a tetrahedron, each opposite one vertex, ordered to point outwards for a
#: positively oriented tetrahedron.
TET_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])
#: The three sides of a triangle (an axisymmetric mesh's element), each opposite one vertex.
TRIANGLE_SIDES = np.array([[1, 2], [2, 0], [0, 1]])


def boundary_faces(tets: np.ndarray) -> np.ndarray:
    """Outward-oriented triangles that belong to exactly one tetrahedron."""
    faces = tets[:, TET_FACES].reshape(-1, 3)
    key = np.sort(faces, axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    return faces[first[counts == 1]]


def interior_facets(tets: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Indices of ``facets`` that lie between two elements rather than on the mesh's boundary: triangles
    between tetrahedra, or segments between the r–z triangles of an axisymmetric mesh.

    Examples
    --------
    >>> tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    >>> interior_facets(tets, np.array([[3, 2, 1], [0, 1, 2]])).tolist()
    [0]
    >>> interior_facets(np.array([[0, 1, 2], [1, 3, 2]]), np.array([[0, 1], [2, 1]])).tolist()
    [1]
    """
    if tets.shape[1] == 3:
        faces = np.sort(tets[:, TRIANGLE_SIDES].reshape(-1, 2), axis=1).astype(np.int64)
    else:
        faces = np.sort(tets[:, TET_FACES].reshape(-1, 3), axis=1).astype(np.int64)
    sides = np.sort(facets, axis=1).astype(np.int64)
    both = np.concatenate([faces, sides])
    n = int(both.max()) + 1 if len(both) else 1
    if n < 2**21:  # one int64 key per facet: fast
        key = both[:, 0] * n + both[:, 1]
        if both.shape[1] == 3:
            key = key * n + both[:, 2]
        _, inverse = np.unique(key, return_inverse=True)
    else:
        _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    uses = np.bincount(inverse[:len(faces)], minlength=int(inverse.max()) + 1 if len(inverse) else 0)
    return np.flatnonzero(uses[inverse[len(faces):]] > 1)
