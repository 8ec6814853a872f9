"""Mesh topology helpers: faces, boundary faces."""

from __future__ import annotations

import numpy as np

#: The four faces of a tetrahedron, each opposite one vertex, ordered to point outwards for a
#: positively oriented tetrahedron.
TET_FACES = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])


def boundary_faces(tets: np.ndarray) -> np.ndarray:
    """Outward-oriented triangles that belong to exactly one tetrahedron."""
    faces = tets[:, TET_FACES].reshape(-1, 3)
    key = np.sort(faces, axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    return faces[first[counts == 1]]


def interior_facets(tets: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Indices of ``facets`` (triangles) that lie between two tetrahedra rather than on the mesh's boundary.

    Examples
    --------
    >>> tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    >>> interior_facets(tets, np.array([[3, 2, 1], [0, 1, 2]])).tolist()
    [0]
    """
    faces = np.sort(tets[:, TET_FACES].reshape(-1, 3), axis=1).astype(np.int64)
    triangles = np.sort(facets, axis=1).astype(np.int64)
    both = np.concatenate([faces, triangles])
    n = int(both.max()) + 1 if len(both) else 1
    if n < 2**21:  # one int64 key per triangle: fast
        _, inverse = np.unique((both[:, 0] * n + both[:, 1]) * n + both[:, 2], return_inverse=True)
    else:
        _, inverse = np.unique(both, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    uses = np.bincount(inverse[:len(faces)], minlength=int(inverse.max()) + 1 if len(inverse) else 0)
    return np.flatnonzero(uses[inverse[len(faces):]] > 1)
