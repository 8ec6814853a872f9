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
