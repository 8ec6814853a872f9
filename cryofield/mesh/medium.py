"""Needles in a block or cylinder of one medium (gel, water, tissue): the mesh of bench experiments.

:func:`probe_in_medium` builds the mesh a :class:`~cryofield.config.meshspec.ProbeInMediumGenerator` describes
with Gmsh: the medium (a cylinder about z or a block centred on it, bottom at z = 0), each needle carved
out as a closed-end tube parallel to z whose shaft leaves through the top or the bottom
(:func:`.generators.needle_solid`), optionally cut to the quarter x, y >= 0, and graded from the needles'
surfaces. In ``axisymmetric`` symmetry the mesh is the r–z half plane instead (points ``(r, 0, z)``,
triangles, boundary segments), the needles' half-profiles (:func:`.generators.needle_profile`) cut from
the rectangle ``[0, radius] x [0, height]``. Tags: region ``medium``; surfaces ``NAME_active`` (the rounded
tip and the active length) and ``NAME_shaft`` of every needle, ``top``, ``bottom``, ``side`` and, in
quarter symmetry, ``symmetry`` (axisymmetric: ``axis``). The needles' poses (metres) go to the
mesh metadata, as the phantom's do, so that the ice-ball shape is measured (:mod:`cryofield.run.observers.iceball`)
and a controlled probe's tip sensor found. Meshes are cached by the generator's keys
(:mod:`.cache`).
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from cryofield.config.meshspec import MediumNeedle, ProbeInMediumGenerator
from cryofield.mesh import cache
from cryofield.mesh.core import Mesh
from cryofield.mesh.generators import gmsh_session, mesh_from_gmsh, needle_profile, needle_solid

GENERATOR_VERSION = "probe-in-medium-2"
#: How far the needles' shafts reach above the top (mesh units), so that the cut leaves a clean hole.
OVERSHOOT = 1.0


def probe_in_medium(spec: ProbeInMediumGenerator, scale: float, use_cache: bool = True) -> Mesh:
    """The mesh of ``spec`` (lengths times ``scale`` give metres), from the cache when it was built before."""
    shape = {"generator": GENERATOR_VERSION, "spec": spec.model_dump(mode="json"), "scale": scale}
    name = "medium-" + hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:24]
    if not use_cache:
        return build(spec, scale)
    mesh = cache.load(name)
    if mesh is not None:
        return mesh
    with cache.building(name):
        mesh = cache.load(name)
        if mesh is None:
            mesh = build(spec, scale)
            mesh.source = str(cache.store(name, mesh))
    return mesh


def build(spec: ProbeInMediumGenerator, scale: float) -> Mesh:
    """Generate the mesh with Gmsh (module doc)."""
    import gmsh

    t0 = time.perf_counter()
    with gmsh_session():
        occ = gmsh.model.occ
        for option, value in {"Mesh.MeshSizeFromPoints": 0, "Mesh.MeshSizeFromCurvature": 0,
                              "Mesh.MeshSizeExtendFromBoundary": 0, "Mesh.Algorithm": 6, "Mesh.Algorithm3D": 10,
                              "Mesh.Optimize": 1}.items():
            gmsh.option.setNumber(option, value)
        dim = 2 if spec.symmetry == "axisymmetric" else 3
        pieces, _ = occ.cut([_medium(occ, spec)], [_hole(occ, spec, n) for n in spec.needles])
        if spec.symmetry == "quarter":
            reach = 2 * (spec.radius if spec.shape == "cylinder" else max(spec.size))
            pieces, _ = occ.intersect(pieces, [(3, occ.addBox(0, 0, -1, reach, reach, spec.height + 2))])
        occ.synchronize()
        domains = [tag for d, tag in pieces if d == dim]
        gmsh.model.addPhysicalGroup(dim, domains, 1, name="medium")
        groups = _faces(gmsh, spec, dim, domains)
        for i, (name, tags) in enumerate(groups.items(), start=1):
            gmsh.model.addPhysicalGroup(dim - 1, tags, i, name=name)
        _grading(gmsh, spec, dim, [t for name, tags in groups.items() if name.endswith(("_active", "_shaft"))
                                   for t in tags])
        try:
            gmsh.model.mesh.generate(dim)
        except Exception as exc:  # Gmsh raises bare Exceptions
            raise RuntimeError(f"Gmsh could not mesh the medium ({exc}); size_at_probe {spec.size_at_probe} too "
                               "coarse for the needles?") from exc
        mesh = mesh_from_gmsh(dim)
    mesh.points *= scale
    mesh.source = f"{len(spec.needles)} needle(s) in a {spec.shape} ({spec.symmetry} symmetry)"
    mesh.metadata = {"probes": {n.name: pose(n, scale) for n in spec.needles},
                     "medium": {"generator": GENERATOR_VERSION, "symmetry": spec.symmetry, "shape": spec.shape,
                                "generation_s": round(time.perf_counter() - t0, 2)}}
    if dim == 2:
        mesh.points[:, 1] = 0.0  # the r-z plane exactly (the rotation into it leaves rounding in y)
        mesh.metadata["axisymmetric"] = True
    return mesh


def pose(needle: MediumNeedle, scale: float) -> dict:
    """A needle's pose in metres, as the phantom writes them: tip (apex), axis (towards the shaft), diameter,
    active length."""
    x, y = needle.position
    return {"tip": (np.array([x, y, needle.tip]) * scale).tolist(), "axis": [0.0, 0.0, needle.direction],
            "diameter": needle.size * scale, "active_length": needle.active_length * scale, "gauge": needle.gauge}


def _cap_centre(needle: MediumNeedle) -> np.ndarray:
    x, y = needle.position
    return np.array([x, y, needle.tip + needle.direction * needle.size / 2])


def _hole(occ, spec: ProbeInMediumGenerator, needle: MediumNeedle) -> tuple[int, int]:
    """The needle's solid (3-D), or its half-profile in the r-z plane (axisymmetric), its shaft reaching
    :data:`OVERSHOOT` beyond the face it leaves through."""
    c, axis = _cap_centre(needle), np.array([0.0, 0.0, needle.direction])
    length = (spec.height - c[2] if needle.entry == "top" else c[2]) + OVERSHOOT
    if spec.symmetry == "axisymmetric":
        return 2, needle_profile(occ, c, axis, needle.size / 2, needle.active_length, length, np.array([1.0, 0, 0]))
    return needle_solid(occ, c, axis, needle.size / 2, needle.active_length, length)


def _medium(occ, spec: ProbeInMediumGenerator) -> tuple[int, int]:
    if spec.symmetry == "axisymmetric":  # the rectangle [0, R] x [0, H], turned from the x-y into the x-z plane
        face = occ.addRectangle(0, 0, 0, spec.radius, spec.height)
        occ.rotate([(2, face)], 0, 0, 0, 1, 0, 0, np.pi / 2)
        return 2, face
    if spec.shape == "cylinder":
        return 3, occ.addCylinder(0, 0, 0, 0, 0, spec.height, spec.radius)
    sx, sy = spec.size
    return 3, occ.addBox(-sx / 2, -sy / 2, 0, sx, sy, spec.height)


def _faces(gmsh, spec: ProbeInMediumGenerator, dim: int, domains: list[int]) -> dict[str, list[int]]:
    """The boundary faces (curves of an r-z mesh) by name: each needle's active and shaft faces (those whose
    bounding box lies within the needle's radius of its axis, split at the end of the active length), the
    top and bottom, the symmetry planes (or the axis), the rest the side."""
    groups: dict[str, list[int]] = {f"{n.name}_{part}": [] for n in spec.needles for part in ("active", "shaft")}
    groups |= {"top": [], "bottom": [], "side": []} | {"quarter": {"symmetry": []}, "axisymmetric": {"axis": []}
                                                       }.get(spec.symmetry, {})
    tol = 1e-6 * spec.height
    for _, tag in gmsh.model.getBoundary([(dim, v) for v in domains], oriented=False, combined=True):
        box = np.array(gmsh.model.getBoundingBox(dim - 1, abs(tag))).reshape(2, 3)
        name = _needle_face(box, spec.needles)
        if name is None:
            if box[0, 2] > spec.height - tol:
                name = "top"
            elif box[1, 2] < tol:
                name = "bottom"
            elif spec.symmetry == "quarter" and (np.abs(box[:, 0]).max() < tol or np.abs(box[:, 1]).max() < tol):
                name = "symmetry"
            elif spec.symmetry == "axisymmetric" and np.abs(box[:, 0]).max() < tol:
                name = "axis"
            else:
                name = "side"
        groups[name].append(abs(tag))
    return groups


def _needle_face(box: np.ndarray, needles: list[MediumNeedle]) -> str | None:
    """The needle face whose bounding box ``box`` (min and max corners) is, or None. An r-z curve on the
    axis (x = 0 along its whole length) is the axis, not a needle's."""
    for n in needles:
        c, r = _cap_centre(n), n.size / 2
        slack = 1e-3 * r + 1e-9
        if box[1, 0] - box[0, 0] < slack and box[1, 1] - box[0, 1] < slack and abs(box[0, 0] - c[0]) < slack:
            continue  # along the axis itself: no face of the needle (the r-z profile's closing line)
        within = np.all(box[:, :2] >= c[:2] - r - slack) and np.all(box[:, :2] <= c[:2] + r + slack)
        if n.entry == "top" and within and box[0, 2] >= n.tip - slack:
            return f"{n.name}_{'active' if box[1, 2] <= c[2] + n.active_length + slack else 'shaft'}"
        if n.entry == "bottom" and within and box[1, 2] <= n.tip + slack:
            return f"{n.name}_{'active' if box[0, 2] >= c[2] - n.active_length - slack else 'shaft'}"
    return None


def _grading(gmsh, spec: ProbeInMediumGenerator, dim: int, needle_faces: list[int]) -> None:
    """Element size ``size_at_probe`` on the needles, growing linearly to ``size_far`` at ``grading``."""
    field = gmsh.model.mesh.field
    distance = field.add("Distance")
    field.setNumbers(distance, "SurfacesList" if dim == 3 else "CurvesList", needle_faces)
    field.setNumber(distance, "Sampling", 40)
    threshold = field.add("Threshold")
    field.setNumber(threshold, "InField", distance)
    field.setNumber(threshold, "SizeMin", spec.size_at_probe)
    field.setNumber(threshold, "SizeMax", spec.size_far)
    field.setNumber(threshold, "DistMin", 0.0)
    field.setNumber(threshold, "DistMax", spec.grading)
    field.setAsBackgroundMesh(threshold)


def estimated_nodes(spec: ProbeInMediumGenerator) -> float:
    """Nodes the mesh will have, roughly: about one per size³ over the medium (per size² over the r-z plane
    of an axisymmetric one), the size graded as :func:`_grading`."""
    height, plane = spec.height, spec.symmetry == "axisymmetric"
    area = np.pi * spec.radius**2 if spec.shape == "cylinder" else spec.size[0] * spec.size[1]
    n = spec.radius * height / spec.size_far**2 if plane else area * height / spec.size_far**3
    for needle in spec.needles:
        rho = np.linspace(needle.size / 2, needle.size / 2 + spec.grading, 400)
        h = spec.size_at_probe + (spec.size_far - spec.size_at_probe) * (rho - rho[0]) / spec.grading
        low, high = needle.z_extent(height)
        n += float(np.trapezoid((high - low) / h**2 if plane else 2 * np.pi * rho * (high - low) / h**3, rho))
    return n / 4 if spec.symmetry == "quarter" else n
