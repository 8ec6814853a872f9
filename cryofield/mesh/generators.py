"""Built-in mesh generators for reference problems (no mesh file needed).

Each generator returns a :class:`Mesh` in metres with named regions and surfaces. Sizes are given in
the case's declared units.
"""

from __future__ import annotations

import itertools

import numpy as np

from cryofield.mesh.checks import signed_volumes
from cryofield.mesh.core import Mesh
from cryofield.mesh.topology import boundary_faces

SLAB_SURFACES = {"xmin": 1, "xmax": 2, "ymin": 3, "ymax": 4, "zmin": 5, "zmax": 6}


def slab(size: tuple[float, float, float], cells: tuple[int, int, int], scale: float = 1.0) -> Mesh:
    """A box ``[0, Lx] x [0, Ly] x [0, Lz]`` split into ``cells`` hexahedra, six tetrahedra each.

    The Kuhn (Freudenthal) split makes the mesh conforming; one region ``tissue`` and the six faces
    ``xmin`` ... ``zmax`` are tagged.

    Examples
    --------
    >>> m = slab((1.0, 1.0, 1.0), (2, 2, 2))
    >>> m.n_nodes, m.n_tets
    (27, 48)
    """
    nx, ny, nz = cells
    axes = [np.linspace(0.0, length * scale, n + 1) for length, n in zip(size, cells)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    index = np.arange(grid.shape[0]).reshape(nx + 1, ny + 1, nz + 1)
    corner = index[:-1, :-1, :-1].ravel()
    offsets = {(dx, dy, dz): index[dx, dy, dz] - index[0, 0, 0] for dx, dy, dz in itertools.product((0, 1), repeat=3)}
    tets = []
    for perm in itertools.permutations(range(3)):
        path = [np.zeros(3, int)]
        for axis in perm:
            step = path[-1].copy()
            step[axis] = 1
            path.append(step)
        tets.append(np.stack([corner + offsets[tuple(v)] for v in path], axis=1))
    tets = np.concatenate(tets)
    negative = signed_volumes(grid, tets) < 0
    tets[negative] = tets[negative][:, [0, 2, 1, 3]]
    facets = boundary_faces(tets)
    centre = grid[facets].mean(axis=1)
    upper = np.array(size) * scale
    facet_tags = np.zeros(len(facets), np.int64)
    for axis, (lo_name, hi_name) in enumerate([("xmin", "xmax"), ("ymin", "ymax"), ("zmin", "zmax")]):
        tol = 1e-9 * upper[axis]
        facet_tags[np.abs(centre[:, axis]) < tol] = SLAB_SURFACES[lo_name]
        facet_tags[np.abs(centre[:, axis] - upper[axis]) < tol] = SLAB_SURFACES[hi_name]
    return Mesh(points=grid, tets=tets, tet_tags=np.ones(len(tets), np.int64), facets=facets,
                facet_tags=facet_tags, regions={"tissue": 1}, surfaces=dict(SLAB_SURFACES),
                source=f"slab {size} cells {cells}")


def sphere_octant_shell(inner_radius: float, outer_radius: float, size_inner: float, size_outer: float,
                        scale: float = 1.0) -> Mesh:
    """One octant (x, y, z >= 0) of a spherical shell, meshed by Gmsh.

    Element size grows linearly with radius from ``size_inner`` to ``size_outer``. Surfaces: ``inner``,
    ``outer`` and ``symmetry`` (the three planes); region ``tissue``.
    """
    import gmsh

    r0, r1 = inner_radius * scale, outer_radius * scale
    h0, h1 = size_inner * scale, size_outer * scale
    with gmsh_session():
        occ = gmsh.model.occ
        shell = occ.cut([(3, occ.addSphere(0, 0, 0, r1))], [(3, occ.addSphere(0, 0, 0, r0))])[0]
        octant = occ.intersect(shell, [(3, occ.addBox(0, 0, 0, r1, r1, r1))])[0]
        occ.synchronize()
        volume = octant[0][1]
        groups: dict[str, list[int]] = {"inner": [], "outer": [], "symmetry": []}
        for _, tag in gmsh.model.getBoundary(octant, oriented=False):
            radius = np.linalg.norm(occ.getCenterOfMass(2, tag))
            if abs(radius - r0) / r0 < 0.5 and _is_spherical(tag):
                groups["inner"].append(tag)
            elif _is_spherical(tag):
                groups["outer"].append(tag)
            else:
                groups["symmetry"].append(tag)
        gmsh.model.addPhysicalGroup(3, [volume], 1, name="tissue")
        for i, (name, tags) in enumerate(groups.items(), start=1):
            gmsh.model.addPhysicalGroup(2, tags, i, name=name)
        field = gmsh.model.mesh.field.add("MathEval")
        slope = (h1 - h0) / (r1 - r0)
        gmsh.model.mesh.field.setString(field, "F", f"{h0} + {slope}*(Sqrt(x*x+y*y+z*z) - {r0})")
        gmsh.model.mesh.field.setAsBackgroundMesh(field)
        for opt in ("Mesh.MeshSizeFromPoints", "Mesh.MeshSizeFromCurvature", "Mesh.MeshSizeExtendFromBoundary"):
            gmsh.option.setNumber(opt, 0)
        gmsh.model.mesh.generate(3)
        mesh = mesh_from_gmsh()
    mesh.source = f"sphere octant shell r0={inner_radius} r1={outer_radius} h={size_inner}..{size_outer}"
    return mesh


def needle_profile(occ, cap_centre: np.ndarray, axis: np.ndarray, radius: float, active_length: float,
                   length: float, side: np.ndarray | None = None) -> int:
    """The half-profile of a closed-end needle as one OCC plane face: the quarter circle of the hemispherical
    tip round ``cap_centre``, the active line ``active_length`` long, the shaft line to ``length`` from the
    cap centre along the unit ``axis``, back along the axis; in the plane of the axis and the unit ``side``
    (perpendicular to it; by default any). Revolved, it is :func:`needle_solid`; cut from an r–z plane, it
    is the needle's hole in an axisymmetric mesh."""
    c, u, r = np.asarray(cap_centre, float), np.asarray(axis, float), radius
    if side is None:
        side = np.cross(u, [1.0, 0.0, 0.0] if abs(u[0]) < 0.9 else [0.0, 1.0, 0.0])
    n = np.asarray(side, float) / np.linalg.norm(side)
    p = [occ.addPoint(*q) for q in (c - r * u, c + r * n, c + active_length * u + r * n, c + length * u + r * n,
                                    c + length * u)]
    centre = occ.addPoint(*c)
    loop = occ.addCurveLoop([occ.addCircleArc(p[0], centre, p[1]), occ.addLine(p[1], p[2]), occ.addLine(p[2], p[3]),
                             occ.addLine(p[3], p[4]), occ.addLine(p[4], p[0])])
    face = occ.addPlaneSurface([loop])
    occ.remove([(0, centre)])
    return face


def needle_solid(occ, cap_centre: np.ndarray, axis: np.ndarray, radius: float, active_length: float,
                 length: float) -> tuple[int, int]:
    """A closed-end needle as one OCC solid of revolution whose faces split at the active/shaft junction.

    Its half-profile (:func:`needle_profile`) is revolved about the axis, so a hole cut with it has three
    faces: the tip, the active cylinder and the shaft.
    """
    face = needle_profile(occ, cap_centre, axis, radius, active_length, length)
    out = occ.revolve([(2, face)], *np.asarray(cap_centre, float), *np.asarray(axis, float), 2 * np.pi)
    return next(dt for dt in out if dt[0] == 3)


def _is_spherical(surface_tag: int) -> bool:
    import gmsh

    return gmsh.model.getType(2, surface_tag) == "Sphere"


class gmsh_session:
    """Context manager: an initialised, quiet, single-model Gmsh session, always finalised."""

    def __init__(self, threads: int = 0):
        self.threads = threads

    def __enter__(self):
        import threading

        import gmsh

        # Gmsh's Ctrl-C handler can only be installed from the main thread (a sweep's worker runs a case in another)
        gmsh.initialize(readConfigFiles=False, interruptible=threading.current_thread() is threading.main_thread())
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("General.Verbosity", 1)
        if self.threads:
            gmsh.option.setNumber("General.NumThreads", self.threads)
        gmsh.model.add("cryofield")
        return gmsh

    def __exit__(self, *exc):
        import gmsh

        gmsh.finalize()
        return False


def mesh_from_gmsh(dim: int = 3) -> Mesh:
    """Extract the linear elements of the current Gmsh model's physical groups: tetrahedra and boundary
    triangles (``dim`` 3), or the triangles and boundary segments of an axisymmetric r–z mesh (``dim`` 2)."""
    import gmsh

    node_tags, coords, _ = gmsh.model.mesh.getNodes()
    lookup = np.zeros(int(node_tags.max()) + 1, np.int64)
    lookup[node_tags.astype(np.int64)] = np.arange(len(node_tags))
    points = coords.reshape(-1, 3)
    gmsh_type, width = {3: 4, 2: 2, 1: 1}, {3: 4, 2: 3, 1: 2}  # Gmsh's linear element of each dimension
    blocks = {dim: ([], []), dim - 1: ([], [])}
    names = {dim: {}, dim - 1: {}}
    for d, tag in gmsh.model.getPhysicalGroups():
        if d not in blocks:
            continue
        names[d][gmsh.model.getPhysicalName(d, tag) or f"{'region' if d == dim else 'surface'}_{tag}"] = tag
        for entity in gmsh.model.getEntitiesForPhysicalGroup(d, tag):
            _, enodes = gmsh.model.mesh.getElementsByType(gmsh_type[d], entity)
            conn = lookup[enodes.astype(np.int64)].reshape(-1, width[d])
            blocks[d][0].append(conn)
            blocks[d][1].append(np.full(len(conn), tag, np.int64))
    tets, tet_tags = (np.concatenate(b) for b in blocks[dim])
    facets, facet_tags = np.zeros((0, width[dim - 1]), np.int64), np.zeros(0, np.int64)
    if blocks[dim - 1][0]:
        facets, facet_tags = (np.concatenate(b) for b in blocks[dim - 1])
    used = np.unique(np.concatenate([tets.ravel(), facets.ravel()]))
    remap = np.full(len(points), -1, np.int64)
    remap[used] = np.arange(len(used))
    return Mesh(points=points[used].copy(), tets=remap[tets], tet_tags=tet_tags, facets=remap[facets],
                facet_tags=facet_tags, regions=names[dim], surfaces=names[dim - 1], source="gmsh")
