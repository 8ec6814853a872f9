"""Sanity checks that turn a raw mesh into one the solver can trust, or refuse it with a clear message."""

from __future__ import annotations

import numpy as np

from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.mesh.core import Mesh

#: A mesh of a piece of a patient spans more than a millimetre and less than a metre (in metres).
PLAUSIBLE_EXTENT_M = (1e-3, 1.0)
#: A tetrahedron whose volume is below this fraction of its longest edge cubed is degenerate.
DEGENERATE_RATIO = 1e-8


def signed_volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volume of each tetrahedron, det[x1-x0, x2-x0, x3-x0] / 6; of an axisymmetric mesh's r–z
    triangle, its signed area in the (r, z) plane (positive counter-clockwise)."""
    if fem.is_axisymmetric(tets):
        return fem.triangle_gradients_and_areas(points, tets)[1]
    p = points[tets]
    return np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0])) / 6.0


def longest_edges(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Longest edge length of each element."""
    p = points[tets]
    pairs, _ = fem.edges_of(tets)
    return np.max([np.linalg.norm(p[:, a] - p[:, b], axis=1) for a, b in pairs], axis=0)


def check_mesh(mesh: Mesh, units: str, source: str | None = None) -> Mesh:
    """Check and tidy ``mesh`` in place; raise :class:`InputError` for anything the solver cannot use.

    Fixed with a note: negatively oriented tetrahedra (two nodes swapped), nodes used by no tetrahedron
    (dropped). Refused: no tetrahedra, non-finite coordinates, connectivity to nodes that do not exist,
    duplicate nodes, degenerate tetrahedra, tags without names or names without tags, boundary triangles
    not on the tetrahedra, and a bounding box implausible for the declared units.
    """
    source = source or mesh.source
    _check_numbers(mesh, source)
    if mesh.axisymmetric:
        _check_half_plane(mesh, source)
    _check_extent(mesh, units, source)
    _check_tags(mesh, source)
    _check_duplicates(mesh, source)
    _check_volumes(mesh, source)
    _drop_orphans(mesh, source)
    return mesh


def _check_numbers(mesh: Mesh, source: str) -> None:
    """Finite coordinates, and connectivity that refers to existing nodes (before anything indexes with it)."""
    if mesh.n_tets == 0:
        raise InputError("the mesh has no tetrahedra (linear 'tetra' cells are required)", source=source)
    bad = np.flatnonzero(~np.isfinite(mesh.points).all(axis=1))
    if len(bad):
        raise InputError(f"{len(bad)} node(s) with non-finite coordinates (NaN or infinite), e.g. node(s) "
                         f"{bad[:5].tolist()}", source=source)
    kinds = ("triangle", "boundary segment") if mesh.axisymmetric else ("tetrahedron", "boundary triangle")
    for what, cells in zip(kinds, (mesh.tets, mesh.facets)):
        if len(cells) and (cells.min() < 0 or cells.max() >= mesh.n_nodes):
            worst = int(cells.max()) if cells.max() >= mesh.n_nodes else int(cells.min())
            raise InputError(f"a {what} refers to node {worst}, but the mesh has {mesh.n_nodes} nodes "
                             f"(0 to {mesh.n_nodes - 1})", source=source)


def _check_half_plane(mesh: Mesh, source: str) -> None:
    """An axisymmetric mesh lies in the r–z half plane: y = 0 and r = x >= 0 at every node."""
    scale = max(float(np.ptp(mesh.points, axis=0).max()), 1e-300)
    off = np.flatnonzero((np.abs(mesh.points[:, 1]) > 1e-9 * scale) | (mesh.points[:, 0] < -1e-9 * scale))
    if len(off):
        raise InputError(f"{len(off)} node(s) of the axisymmetric mesh lie off the r-z half plane (y = 0, r = x >= 0), "
                         f"e.g. node {int(off[0])} at {np.round(mesh.points[off[0]] * 1e3, 4).tolist()} mm",
                         source=source)
    mesh.points[:, 1] = 0.0
    mesh.points[:, 0] = np.maximum(mesh.points[:, 0], 0.0)


def _check_duplicates(mesh: Mesh, source: str) -> None:
    """Two nodes at one place split the mesh there (elements on either side do not exchange heat): refuse."""
    scale = max(float(np.max(np.ptp(mesh.points, axis=0))), 1e-300)
    keys = np.round(mesh.points / (1e-9 * scale)).astype(np.int64)  # equal to a billionth of the mesh's size
    order = np.lexsort(keys.T[::-1])
    same = np.flatnonzero((np.diff(keys[order], axis=0) == 0).all(axis=1))
    if len(same):
        a, b = int(order[same[0]]), int(order[same[0] + 1])
        raise InputError(f"{len(same)} duplicate node(s): nodes at the same place (e.g. nodes {a} and {b}) split "
                         f"the mesh there; merge them (e.g. Gmsh Coherence)", source=source)


def _check_extent(mesh: Mesh, units: str, source: str) -> None:
    extent = float(np.max(mesh.points.max(axis=0) - mesh.points.min(axis=0)))
    lo, hi = PLAUSIBLE_EXTENT_M
    if not lo <= extent <= hi:
        as_declared = extent / (1e-3 if units == "mm" else 1.0)
        hint = "m" if units == "mm" else "mm"
        raise InputError(
            f"the mesh spans {as_declared:g} {units} ({extent:g} m), which is not a plausible size for tissue "
            f"(expected {lo * 1e3:g} mm to {hi:g} m); are the coordinates in {hint}?",
            source=source, key="mesh.units")


def _check_tags(mesh: Mesh, source: str) -> None:
    present = set(np.unique(mesh.tet_tags).tolist())
    for name, tag in mesh.regions.items():
        if tag not in present:
            other = " (it tags boundary triangles: a surface, not a region?)" if tag in mesh.facet_tags else ""
            raise InputError(f"region tag {tag} not found among the mesh's tetrahedra (tags present: "
                             f"{sorted(present)}){other}", source=source, key=f"mesh.regions.{name}")
    unnamed = present - set(mesh.regions.values())
    if unnamed:
        raise InputError(f"tetrahedra with tag(s) {sorted(unnamed)} have no region name; add them to mesh.regions",
                         source=source, key="mesh.regions")
    facet_present = set(np.unique(mesh.facet_tags).tolist())
    for name, tag in mesh.surfaces.items():
        if tag not in facet_present:
            other = " (it tags tetrahedra: a region, not a surface?)" if tag in present else ""
            raise InputError(f"surface tag {tag} not found among the mesh's triangles (tags present: "
                             f"{sorted(facet_present) or 'none'}){other}", source=source,
                             key=f"mesh.surfaces.{name}")


def _check_volumes(mesh: Mesh, source: str) -> None:
    vol = signed_volumes(mesh.points, mesh.tets)
    what = "triangles" if mesh.axisymmetric else "tetrahedra"
    dim = mesh.tets.shape[1] - 1
    flat = np.flatnonzero(np.abs(vol) < DEGENERATE_RATIO * longest_edges(mesh.points, mesh.tets) ** dim)
    if len(flat):
        raise InputError(f"{len(flat)} degenerate (zero-{'area' if mesh.axisymmetric else 'volume'}) {what}, e.g. "
                         f"element(s) {flat[:5].tolist()}; repair the mesh", source=source)
    inverted = vol < 0
    if inverted.any():
        swap = [0, 2, 1] if mesh.axisymmetric else [0, 2, 1, 3]
        mesh.tets[inverted] = mesh.tets[inverted][:, swap]
        mesh.notes.append(f"reoriented {int(inverted.sum())} negatively oriented {what}")


def _drop_orphans(mesh: Mesh, source: str) -> None:
    used = np.zeros(mesh.n_nodes, bool)
    used[mesh.tets.ravel()] = True
    if used.all():
        return
    if len(mesh.facets) and not used[mesh.facets.ravel()].all():
        raise InputError("tagged boundary triangles use nodes that belong to no tetrahedron", source=source)
    new_index = np.cumsum(used) - 1
    mesh.notes.append(f"dropped {int((~used).sum())} orphan node(s) used by no tetrahedron")
    mesh.points = mesh.points[used]
    mesh.tets = new_index[mesh.tets]
    mesh.facets = new_index[mesh.facets]
