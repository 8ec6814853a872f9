"""Meshes of the benchmark problems that the case generators do not make, written where a case can read them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryofield.mesh import Mesh, write_mesh
from cryofield.mesh.generators import slab

#: Surface names of :func:`annular_sector` (the slab's faces in (r, θ, z)).
SECTOR_SURFACES = {"inner": 1, "outer": 2, "theta_start": 3, "theta_end": 4, "bottom": 5, "top": 6}


def annular_sector(inner_radius: float, outer_radius: float, angle: float, thickness: float, radial_cells: int,
                   angular_cells: int) -> Mesh:
    """The sector r0 <= r <= r1, 0 <= θ <= ``angle``, 0 <= z <= ``thickness`` (metres), region ``tissue``.

    A structured slab in (r, θ, z) mapped to Cartesian coordinates; every node lies exactly on its arc, and
    the edge θ = 0, z = 0 is the x axis (where :func:`cryofield.fem.closed_forms.planar_front_position` reads a
    radial front). Surfaces: :data:`SECTOR_SURFACES`.
    """
    base = slab((outer_radius - inner_radius, angle, thickness), (radial_cells, angular_cells, 1))
    r = inner_radius + base.points[:, 0]
    theta = base.points[:, 1]
    points = np.stack([r * np.cos(theta), r * np.sin(theta), base.points[:, 2]], axis=1)
    return Mesh(points=points, tets=base.tets, tet_tags=base.tet_tags, facets=base.facets,
                facet_tags=base.facet_tags, regions=base.regions, surfaces=dict(SECTOR_SURFACES),
                source=f"annular sector r={inner_radius}..{outer_radius} m, {angle} rad, cells "
                       f"{radial_cells}x{angular_cells}")


def write_case_mesh(mesh: Mesh, directory: Path, name: str) -> Path:
    """Write ``mesh`` as ``directory/name.msh`` in millimetres (tags and names kept) and return the path."""
    path = Path(directory) / f"{name}.msh"
    write_mesh(mesh, path, units="mm")
    return path


#: Layout of :func:`probe_block` (mm): block half-width, depth, fat thickness, needle radius (18G), tip depth
#: below the skin, active length, nerve radius and the nerve axis' distance from the needle axis.
PROBE_BLOCK = {"half_width": 10.0, "depth": 15.0, "fat": 4.0, "radius": 0.635, "tip_depth": 10.0, "active": 6.0,
               "nerve_radius": 1.0, "nerve_offset": 3.0}


def probe_block(size_tip: float, size_far: float) -> Mesh:
    """A needle cryoprobe beside a nerve in a two-layer block (fat over muscle), meshed by Gmsh.

    Lengths in mm (:data:`PROBE_BLOCK`), the mesh in metres. The block is ``[-w, w]² x [0, depth]`` with
    the skin at z = depth; an 18G needle enters the skin at the centre, its active tip (the last
    ``active`` mm and the end disk) ``tip_depth`` mm below the skin. A nerve runs along y through the
    muscle, its axis ``nerve_offset`` mm from the needle's at the middle of the active length. Element
    size grows from ``size_tip`` on the active surface to ``size_far`` 8 mm away. Regions ``fat``,
    ``muscle``, ``nerve``; surfaces ``skin``, ``far`` (the sides and the bottom), ``probe_active``,
    ``probe_shaft``.
    """
    import gmsh

    from cryofield.mesh.generators import gmsh_session, mesh_from_gmsh

    g = PROBE_BLOCK
    w, depth, r = g["half_width"], g["depth"], g["radius"]
    z_tip = depth - g["tip_depth"]
    z_fat = depth - g["fat"]
    z_top = z_tip + g["active"]
    with gmsh_session():
        occ = gmsh.model.occ
        layers = [(3, occ.addBox(-w, -w, 0, 2 * w, 2 * w, z_fat)),
                  (3, occ.addBox(-w, -w, z_fat, 2 * w, 2 * w, g["fat"]))]
        nerve = (3, occ.addCylinder(g["nerve_offset"], -w, z_tip + g["active"] / 2, 0, 2 * w, 0, g["nerve_radius"]))
        needle = [(3, occ.addCylinder(0, 0, z_tip, 0, 0, g["active"], r)),
                  (3, occ.addCylinder(0, 0, z_top, 0, 0, depth - z_top, r))]
        tissue, _ = occ.cut(layers, needle)
        tissue, _ = occ.fragment(tissue, [nerve])
        occ.synchronize()
        regions: dict[str, list[int]] = {"muscle": [], "fat": [], "nerve": []}
        for _, tag in tissue:
            x0, _, _, x1, _, _ = gmsh.model.getBoundingBox(3, tag)
            if x1 - x0 < 2 * g["nerve_radius"] + 1e-6:
                regions["nerve"].append(tag)
            else:
                regions["fat" if occ.getCenterOfMass(3, tag)[2] > z_fat else "muscle"].append(tag)
        surfaces: dict[str, list[int]] = {"skin": [], "far": [], "probe_active": [], "probe_shaft": []}
        for _, tag in gmsh.model.getBoundary(tissue, combined=True, oriented=False):
            x0, y0, z0, x1, y1, _ = gmsh.model.getBoundingBox(2, tag)
            if max(x1 - x0, y1 - y0) < 2 * r + 1e-6:  # on the needle
                surfaces["probe_active" if z0 < z_top - 1e-6 else "probe_shaft"].append(tag)
            else:
                surfaces["skin" if z0 > depth - 1e-6 else "far"].append(tag)
        for i, (name, tags) in enumerate(regions.items(), start=1):
            gmsh.model.addPhysicalGroup(3, tags, i, name=name)
        for i, (name, tags) in enumerate(surfaces.items(), start=1):
            gmsh.model.addPhysicalGroup(2, tags, i, name=name)
        distance = gmsh.model.mesh.field.add("Distance")
        gmsh.model.mesh.field.setNumbers(distance, "SurfacesList", surfaces["probe_active"])
        threshold = gmsh.model.mesh.field.add("Threshold")
        for key, value in (("InField", distance), ("SizeMin", size_tip), ("SizeMax", size_far), ("DistMin", 0.0),
                           ("DistMax", 8.0)):
            gmsh.model.mesh.field.setNumber(threshold, key, value)
        gmsh.model.mesh.field.setAsBackgroundMesh(threshold)
        for opt in ("Mesh.MeshSizeFromPoints", "Mesh.MeshSizeFromCurvature", "Mesh.MeshSizeExtendFromBoundary"):
            gmsh.option.setNumber(opt, 0)
        gmsh.model.mesh.generate(3)
        mesh = mesh_from_gmsh()
    mesh.points *= 1e-3
    mesh.source = f"probe in a two-layer block, sizes {size_tip}..{size_far} mm"
    return mesh
