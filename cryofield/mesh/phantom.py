"""The occipital phantom: a tetrahedral model of the posterior head and upper neck with embedded probes.

Geometry and frame are described in :mod:`.anatomy`, probes in :mod:`.placement`. Gmsh (OpenCASCADE)
builds the layers, sweeps the nerves and the artery as tubes, carves every probe out as a hole and
fragments everything into one conformal model. Regions and surfaces (names as in :data:`REGIONS`,
:data:`SURFACES`; each probe ``NAME`` adds the surfaces ``NAME_active`` and ``NAME_shaft``):

* regions ``skin``, ``fat``, ``trapezius``, ``semispinalis``, ``bone``, ``gon``, ``ton``, ``lon``, ``artery``
  (the artery region is the blood in the lumen);
* ``pocket``: fluid pockets (hydrodissection; ellipsoids, :class:`~cryofield.config.meshspec.Pocket`), when the
  phantom has any;
* surfaces ``skin_surface`` (the skin to room air), ``deep`` (the deep boundary: inner table of the
  bone and deep neck), ``cut`` (the four sides where the model is cut out of the body), ``artery_wall``
  (the lumen wall, an interior surface), and the probes' active and shaft surfaces (holes in the tissue;
  one of each for all the needles of a multi-needle tip), and ``NAME_contact`` (skin round a probe's entry
  points, with placement ``contact_radius``).

Element sizes grade from ``tip`` on the active surfaces through ``ice`` within ``ice_radius`` of them to
``far``; nerves and the artery get ``diameter / vessel_divisions`` (the diameter of the circle of the same
area for the elliptical GON), the skin layer at most ``skin``.
"""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np

from cryofield.config.meshspec import TISSUE_OF, PhantomSpec, ProbePlacement
from cryofield.mesh import cache
from cryofield.mesh.anatomy import PhantomGeometry
from cryofield.mesh.core import Mesh
from cryofield.mesh.generators import gmsh_session, mesh_from_gmsh, needle_solid
from cryofield.mesh.placement import PocketPose, ProbePose, check_pockets, check_poses, resolve, resolve_pocket

#: Bumped whenever a change to this package changes the mesh generated from the same parameters.
GENERATOR_VERSION = "occipital-phantom-3"  # 3: the elliptical GON, multi-needle tips, pockets, coarser shafts

REGIONS = {"skin": 1, "fat": 2, "trapezius": 3, "semispinalis": 4, "bone": 5, "gon": 6, "ton": 7, "lon": 8,
           "artery": 9, "pocket": 10}
SURFACES = {"skin_surface": 11, "deep": 12, "cut": 13, "artery_wall": 14}
#: Surface tags of probe ``i`` (0-based): active ``PROBE_TAG0 + 2 i``, shaft one more; its skin contact
#: (placement ``contact_radius``) ``CONTACT_TAG0 + i``.
PROBE_TAG0 = 101
CONTACT_TAG0 = 201
#: Which region owns a piece that several solids overlap: nerves and vessels, then fluid pockets, then layers.
PRIORITY = {"nerve": 2, "blood": 2, "saline": 1}


def phantom_mesh(spec: PhantomSpec, placements: dict[str, ProbePlacement], use_cache: bool = True,
                 threads: int = 0) -> tuple[Mesh, bool]:
    """The phantom with these probes, from the cache when it was generated before.

    Returns the mesh (metres, metadata filled in) and whether it came from the cache.

    Raises
    ------
    ~cryofield.mesh.anatomy.AnatomyError
        For anatomy parameters that make an impossible geometry.
    Placement
        For a probe that leaves the body or pierces a nerve, the artery, the bone or another probe.
    """
    geometry = PhantomGeometry(spec.anatomy, spec.side)
    geometry.check()
    check_pockets(pockets(spec, geometry), geometry)
    poses = [resolve(name, placement, geometry) for name, placement in placements.items()]
    check_poses(poses, geometry)
    name = f"phantom-{mesh_key(spec, poses)}"
    if not use_cache:
        return build_mesh(spec, poses, threads), False
    mesh = cache.load(name)
    if mesh is not None:
        return mesh, True
    with cache.building(name):  # concurrent requests for one mesh (a sweep's workers): one builds, the rest wait
        mesh = cache.load(name)
        if mesh is not None:
            return mesh, True
        mesh = build_mesh(spec, poses, threads)
        mesh.source = str(cache.store(name, mesh))
    return mesh, False


def mesh_key(spec: PhantomSpec, poses: list[ProbePose]) -> str:
    """Hash of everything that shapes the mesh: generator version, anatomy, side, sizes, probe poses and pockets."""
    shape = {"generator": GENERATOR_VERSION, "side": spec.side, "anatomy": spec.anatomy.model_dump(mode="json"),
             "sizes": spec.resolved_sizes(), "probes": [p.key() for p in poses]}
    if spec.pockets:
        shape["pockets"] = [p.key() for p in pockets(spec, PhantomGeometry(spec.anatomy, spec.side))]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:24]


def pockets(spec: PhantomSpec, geometry: PhantomGeometry) -> list[PocketPose]:
    """The phantom's fluid pockets, resolved (:func:`~.placement.resolve_pocket`)."""
    return [resolve_pocket(p, geometry, i) for i, p in enumerate(spec.pockets)]


def build_mesh(spec: PhantomSpec, poses: list[ProbePose], threads: int = 0) -> Mesh:
    """Generate the phantom with ``poses`` carved out (poses already checked, see :mod:`.placement`).

    Returns a :class:`Mesh` in metres with :attr:`Mesh.metadata` filled in (see :func:`metadata`).
    """
    import gmsh

    geometry = PhantomGeometry(spec.anatomy, spec.side)
    sizes = spec.resolved_sizes()
    t0 = time.perf_counter()
    with gmsh_session(threads):
        _options(gmsh)
        fluid = pockets(spec, geometry)
        pieces = _solids(gmsh.model.occ, geometry, poses, fluid)
        gmsh.model.occ.synchronize()
        volumes = _regions(gmsh, pieces)
        _surfaces(gmsh, geometry, poses, volumes)
        _size_fields(gmsh, geometry, poses, sizes, fluid)
        try:
            gmsh.model.mesh.generate(3)
        except Exception as exc:  # Gmsh raises bare Exceptions
            raise RuntimeError(f"Gmsh could not mesh the phantom ({exc}); element sizes too coarse for its "
                               f"nerves or probes? sizes: {sizes}") from exc
        mesh = mesh_from_gmsh()
    _contacts(mesh, poses)
    mesh.points *= 1e-3
    mesh.source = f"occipital phantom ({spec.side}, {spec.preset})"
    mesh.metadata = metadata(spec, geometry, poses)
    mesh.metadata["phantom"]["generation_s"] = round(time.perf_counter() - t0, 2)
    return mesh


def metadata(spec: PhantomSpec, geometry: PhantomGeometry, poses: list[ProbePose]) -> dict:
    """Mesh metadata (metres): frame, phantom parameters and hash, probes, centrelines, diameters, landmarks."""
    import gmsh

    m = 1e-3
    extra = {"pockets": [p.metadata(m) for p in pockets(spec, geometry)]} if spec.pockets else {}
    return extra | {
        "frame": "origin: skin over the external occipital protuberance; x: towards the patient's right; "
                 "y: inferior; z: depth below the skin; metres",
        "phantom": {"hash": mesh_key(spec, poses), "generator": GENERATOR_VERSION, "gmsh": gmsh.__version__,
                    "side": spec.side, "preset": spec.preset, "anatomy_mm": spec.anatomy.model_dump(mode="json"),
                    "sizes_mm": spec.resolved_sizes(), "tissues": spec.tissues(),
                    "pockets_mm": [p.model_dump(mode="json") for p in spec.pockets]},
        "probes": {p.name: p.metadata(m) for p in poses},
        "end_organs": {"gon": _beyond(geometry, "gon", "superior_nuchal_line", spec.anatomy.gon_territory) * m},
        "centerlines": {n: (geometry.clipped_samples(n, 0.5) * m).tolist() for n in geometry.courses},
        "diameters": {n: 2 * c.radius * m for n, c in geometry.courses.items()},
        "sections": {n: {"width": 2 * c.semi_axes[0] * m, "thickness": 2 * c.semi_axes[1] * m,
                         "orientation_deg": c.roll, "area": c.area * m * m} for n, c in geometry.courses.items()},
        "landmarks": {k: (v * m).tolist() for k, v in geometry.landmarks().items()},
    }


def _beyond(g: PhantomGeometry, name: str, station: str, territory: float) -> float:
    """How far (mm) the nerve runs on past the distal end of its modelled centreline to its end organ, which
    lies ``territory`` mm along it from the landmark ``station``."""
    line = g.clipped_samples(name, 0.5)
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    at = int(np.argmin(np.linalg.norm(line - g.courses[name].point(g.courses[name].stations[station]), axis=1)))
    return max(territory - float(lengths[at:].sum()), 0.0)


def _options(gmsh) -> None:
    # sizes come from the fields alone; Frontal-Delaunay surfaces, HXT volumes (fast, deterministic)
    for name, value in {
        "Mesh.MeshSizeFromPoints": 0, "Mesh.MeshSizeFromCurvature": 0, "Mesh.MeshSizeExtendFromBoundary": 0,
        "Mesh.Algorithm": 6, "Mesh.Algorithm3D": 10, "Mesh.Optimize": 1, "Geometry.OCCBooleanPreserveNumbering": 1,
    }.items():
        gmsh.option.setNumber(name, value)


def _apply(operation, owned: list[tuple[str, tuple]], tools: list[tuple], **kwargs) -> list[tuple[str, tuple]]:
    """Run an OCC boolean on owned solids and keep track of which region each resulting piece belongs to."""
    objects = [dt for _, dt in owned]
    _, children = operation(objects, tools, **kwargs)
    return [(region, child) for (region, _), kids in zip(owned, children[:len(objects)]) for child in kids]


def _solids(occ, g: PhantomGeometry, poses: list[ProbePose], fluid: list[PocketPose] = ()) -> list[tuple[str, tuple]]:
    """Layers, tubes and probe holes, fragmented into one conformal set of (region, (3, tag)) pieces.

    Tubes overlap the layers until the final fragment splits them; :func:`_regions` then gives each
    overlap to the tube. Probes are cut only from the pieces their bounding box meets (OCC booleans
    against the swept tubes are the slow part).
    """
    (x0, x1), (y0, y1) = g.x_range, g.y_range
    w, h, d = x1 - x0, y1 - y0, g.depth
    bone = _bone(occ, g)
    layers = [("skin", (3, occ.addBox(x0, y0, 0, w, h, g.z_skin))),
              ("fat", (3, occ.addBox(x0, y0, g.z_skin, w, h, g.z_fat - g.z_skin))),
              ("bone", bone)]
    muscles = [("trapezius", (3, occ.addBox(x0, 0, g.z_fat, w, y1, g.z_trap - g.z_fat))),
               ("semispinalis", (3, occ.addBox(x0, 0, g.z_trap, w, y1, d - g.z_trap)))]
    pieces = layers + _apply(occ.cut, muscles, [bone], removeTool=False)
    for name, course in g.courses.items():
        box = occ.addBox(x0, y0, 0, w, h, d)
        pieces += _apply(occ.intersect, [(name, _tube(occ, course))], [(3, box)])
    pieces += [("pocket", _ellipsoid(occ, pocket)) for pocket in fluid]
    for needle in [n for pose in poses for n in pose.needles()]:
        tool = _probe_solid(occ, needle)
        hit = [p for p in pieces if _boxes_meet(occ, p[1], tool)]
        pieces = [p for p in pieces if p not in hit] + _apply(occ.cut, hit, [tool])
    return _apply(occ.fragment, pieces, [])


def _ellipsoid(occ, pocket: PocketPose) -> tuple[int, int]:
    """A fluid pocket: the unit sphere mapped onto the pocket's axes and centre."""
    sphere = occ.addSphere(0.0, 0.0, 0.0, 1.0)
    linear = pocket.axes.T * pocket.semi  # columns: each semi-axis along its direction
    occ.affineTransform([(3, sphere)], np.hstack([linear, pocket.centre[:, None]]).ravel().tolist())
    return (3, sphere)


def _boxes_meet(occ, a: tuple[int, int], b: tuple[int, int]) -> bool:
    ba, bb = np.array(occ.getBoundingBox(*a)), np.array(occ.getBoundingBox(*b))
    return bool(np.all(ba[:3] <= bb[3:]) and np.all(bb[:3] <= ba[3:]))


def _bone(occ, g: PhantomGeometry) -> tuple[int, int]:
    """The occipital bone: its (y, z) profile in the plane x = x0, extruded across the model."""
    x0, x1 = g.x_range
    y0 = g.y_range[0]
    yc, zc = g.bone_centre
    p = [occ.addPoint(x0, y0, g.z_fat), occ.addPoint(x0, 0, g.z_fat), occ.addPoint(x0, g.bone_end, g.depth),
         occ.addPoint(x0, y0, g.depth)]
    centre = occ.addPoint(x0, yc, zc)
    loop = occ.addCurveLoop([occ.addLine(p[0], p[1]), occ.addCircleArc(p[1], centre, p[2]),
                             occ.addLine(p[2], p[3]), occ.addLine(p[3], p[0])])
    face = occ.addPlaneSurface([loop])
    occ.remove([(0, centre)])
    out = occ.extrude([(2, face)], x1 - x0, 0, 0)
    return next(dt for dt in out if dt[0] == 3)


#: Spacing (mm) of the cross-sections an elliptical tube is lofted through.
LOFT_STEP = 1.5


def _tube(occ, course) -> tuple[int, int]:
    """A tube along the course: circular, swept along its B-spline (the exact curve :class:`Course`
    evaluates); elliptical, lofted through its cross-sections every :data:`LOFT_STEP` mm.

    A swept ellipse would turn with the sweep's trihedron and end up standing on edge; the loft puts each
    section in its own frame (:meth:`Course.section_axes`: long axis parallel to the skin).
    """
    if not course.is_round:
        return _lofted_tube(occ, course)
    poles = [occ.addPoint(*p) for p in course.poles]
    knots, mult = np.unique(course.knots, return_counts=True)
    curve = occ.addBSpline(poles, degree=3, knots=knots.tolist(), multiplicities=mult.tolist())
    wire = occ.addWire([curve])
    lo, _ = course.bounds
    start, tangent = course.point(lo), course.tangent(lo)
    circle = occ.addCircle(*start, course.radius, zAxis=tangent.tolist())
    disk = occ.addPlaneSurface([occ.addCurveLoop([circle])])
    out = occ.addPipe([(2, disk)], wire, "DiscreteTrihedron")
    occ.remove([(2, disk)], recursive=True)
    occ.remove([(1, wire), (1, curve)] + [(0, t) for t in poles])
    return next(dt for dt in out if dt[0] == 3)


def _lofted_tube(occ, course) -> tuple[int, int]:
    u = course.sample_parameters(LOFT_STEP)
    tangent, long, _ = course.section_axes(u)
    a, b = course.semi_axes
    wires = [occ.addWire([occ.addEllipse(*course.point(ui), a, b, zAxis=t.tolist(), xAxis=e.tolist())])
             for ui, t, e in zip(u, tangent, long)]
    out = occ.addThruSections(wires, makeSolid=True, makeRuled=False)
    occ.remove([(1, w) for w in wires], recursive=True)
    return next(dt for dt in out if dt[0] == 3)


def _probe_solid(occ, pose: ProbePose) -> tuple[int, int]:
    """The needle as one solid of revolution whose faces split at the active/shaft junction.

    Its half-profile (hemisphere arc, active line, shaft line through the skin, back to the axis) is
    revolved about the axis, so the hole's faces are the tip, the active cylinder and the shaft.
    """
    beyond = pose.skin_distance + 2.0 * pose.radius / -pose.axis[2] + 1.0  # clear of the skin plane at any angle
    return needle_solid(occ, pose.cap_centre, pose.axis, pose.radius, pose.active_length, beyond)


def _regions(gmsh, pieces: list[tuple[str, tuple]]) -> dict[str, list[int]]:
    """Physical volumes; a piece shared by several solids belongs to the one of highest :data:`PRIORITY` (a
    layer's overlap with a tube to the tube, with a pocket to the pocket)."""
    owner: dict[int, str] = {}
    for region, (_, tag) in pieces:
        if tag not in owner or PRIORITY.get(TISSUE_OF[region], 0) > PRIORITY.get(TISSUE_OF[owner[tag]], 0):
            owner[tag] = region
    volumes: dict[str, list[int]] = {name: [] for name in REGIONS}
    for tag, region in owner.items():
        volumes[region].append(tag)
    for name, tag in REGIONS.items():
        if volumes[name] or name != "pocket":
            gmsh.model.addPhysicalGroup(3, sorted(volumes[name]), tag, name=name)
    return volumes


def _surfaces(gmsh, g: PhantomGeometry, poses: list[ProbePose], volumes: dict[str, list[int]]) -> None:
    """Tag the boundary: skin, deep, cut sides, the artery wall and each probe's active and shaft faces."""
    model = gmsh.model
    all_volumes = [(3, t) for tags in volumes.values() for t in tags]
    boundary = [t for _, t in model.getBoundary(all_volumes, combined=True, oriented=False)]
    faces: dict[str, list[int]] = {name: [] for name in SURFACES}
    for p in poses:
        faces[f"{p.name}_active"], faces[f"{p.name}_shaft"] = [], []
    tol = 1e-3  # mm; OCC's bounding boxes are padded by its tolerances
    (x0, x1), (y0, y1) = g.x_range, g.y_range
    for tag in boundary:
        bx0, by0, bz0, bx1, by1, bz1 = model.getBoundingBox(2, tag)
        if bz1 < tol:
            faces["skin_surface"].append(tag)
        elif bz0 > g.depth - tol:
            faces["deep"].append(tag)
        elif bx1 < x0 + tol or bx0 > x1 - tol or by1 < y0 + tol or by0 > y1 - tol:
            faces["cut"].append(tag)
        else:
            faces[_probe_face(model.occ.getCenterOfMass(2, tag), poses, tag)].append(tag)
    artery = set(volumes["artery"])
    for tag in {t for v in artery for _, t in model.getBoundary([(3, v)], oriented=False)}:
        up, _ = model.getAdjacencies(2, tag)
        if len(up) == 2 and len(artery.intersection(up)) == 1:
            faces["artery_wall"].append(tag)
    tags = SURFACES | {f"{p.name}_{part}": PROBE_TAG0 + 2 * i + k for i, p in enumerate(poses)
                       for k, part in enumerate(("active", "shaft"))}
    for name, tag in tags.items():
        model.addPhysicalGroup(2, faces[name], tag, name=name)


def _probe_face(centre_of_mass, poses: list[ProbePose], tag: int) -> str:
    """Which probe surface a hole face belongs to: the one whose axis it surrounds, active up to the junction
    (every needle of a multi-needle tip gives the tip's one active and one shaft surface)."""
    com = np.array(centre_of_mass)
    for needle in [n for pose in poses for n in pose.needles()]:
        rel = com - needle.cap_centre
        along = rel @ needle.axis
        if np.linalg.norm(rel - along * needle.axis) <= needle.radius * (1 + 1e-6) and along > -needle.radius * 1.001:
            return f"{needle.name}_{'active' if along < needle.active_length else 'shaft'}"
    raise RuntimeError(f"boundary face {tag} at {com.round(3).tolist()} mm belongs to no probe or side of the model")


def _contacts(mesh: Mesh, poses: list[ProbePose]) -> None:
    """Give each probe with a ``contact_radius`` its skin contact ``NAME_contact``: the skin triangles (mesh in
    mm) whose centroid lies within that radius of one of its needles' entry points."""
    skin = mesh.facet_tags == SURFACES["skin_surface"]
    centroids = mesh.points[mesh.facets].mean(axis=1)
    for i, pose in enumerate(poses):
        if pose.contact_radius is None:
            continue
        distance = np.min(np.linalg.norm(centroids[:, None, :] - pose.entries()[None], axis=2), axis=1)
        mine = skin & (distance <= pose.contact_radius)
        if not mine.any():  # a radius smaller than the triangles: the nearest one
            mine = skin & (distance == distance[skin].min())
        mesh.facet_tags[mine] = CONTACT_TAG0 + i
        mesh.surfaces[f"{pose.name}_contact"] = CONTACT_TAG0 + i


def _size_fields(gmsh, g: PhantomGeometry, poses: list[ProbePose], sizes: dict[str, float],
                 fluid: list[PocketPose] = ()) -> None:
    """Background size: the minimum of probe, vessel and skin refinements, capped at ``far``.

    Distances are measured to the probes' axes and the vessels' centrelines, added as free curves that
    belong to no volume (so they shape the sizes but not the mesh).
    """
    occ, field = gmsh.model.occ, gmsh.model.mesh.field
    far = sizes["far"]
    parts = []

    def threshold(curves: list[int], size_min: float, size_max: float, dist_min: float, dist_max: float,
                  sampling: int, keep: bool = True) -> int:
        dist = field.add("Distance")
        field.setNumbers(dist, "CurvesList", curves)
        field.setNumber(dist, "Sampling", sampling)
        th = field.add("Threshold")
        field.setNumber(th, "InField", dist)
        # StopAtDistMax: beyond dist_max the field leaves the size to the others (and to ``far``)
        for key, value in (("SizeMin", size_min), ("SizeMax", size_max), ("DistMin", dist_min),
                           ("DistMax", dist_max), ("StopAtDistMax", 1)):
            field.setNumber(th, key, value)
        if keep:
            parts.append(th)
        return th

    for pose in [n for p in poses for n in p.needles()]:
        fine = np.pi * pose.diameter / 12  # at least 12 elements round the active part: its area within ~1 %
        coarse = np.pi * pose.diameter / 6  # at least 6 round the shaft where it leaves the skin
        r, tip, ice, radius = pose.radius, min(sizes["tip"], fine), sizes["ice"], sizes["ice_radius"]
        active = [occ.addLine(occ.addPoint(*pose.cap_centre), occ.addPoint(*pose.junction))]
        shaft = [occ.addLine(occ.addPoint(*pose.junction), occ.addPoint(*(pose.cap_centre + pose.skin_distance
                                                                           * pose.axis)))]
        occ.synchronize()
        sampling = int(pose.active_length / min(tip, r)) + 2
        threshold(active, tip, ice, r + 0.5 * tip, r + 0.5 * radius, sampling)
        threshold(active, ice, far, r + radius, r + radius + 4 * far, sampling)
        # Round the shaft: 6 elements round it (the active part has its 12), coarser away from it. Where a
        # needle leaves the skin at a shallow angle the skin and the shaft meet in a wedge of that angle, whose
        # thin elements would otherwise set the stable time step of the whole run; finer shaft elements (12
        # round, as on the active part) made thin needles' shafts set it, at 0.4 of the step.
        near_shaft = threshold(shaft, min(ice, coarse), far, r + fine, r + 4 * far,
                               int(pose.skin_distance / fine) + 2, keep=False)
        along = threshold(active, min(ice, fine), max(coarse, min(ice, fine)), radius, 2 * radius, sampling,
                          keep=False)
        graded = field.add("Max")
        field.setNumbers(graded, "FieldsList", [near_shaft, along])
        parts.append(graded)
    for course in g.courses.values():
        poles = [occ.addPoint(*p) for p in course.poles]
        knots, mult = np.unique(course.knots, return_counts=True)
        curve = occ.addBSpline(poles, degree=3, knots=knots.tolist(), multiplicities=mult.tolist())
        occ.synchronize()
        size = 2 * np.sqrt(np.prod(course.semi_axes)) / sizes["vessel_divisions"]  # of the equal-area circle
        lo, hi = course.bounds
        threshold([curve], size, far, course.radius + size, course.radius + 4 * far, int((hi - lo) / size) + 2)
    for pocket in fluid:  # a few elements across the pocket's thinnest axis, out to its longest
        centre = occ.addPoint(*pocket.centre)
        occ.synchronize()
        dist = field.add("Distance")
        field.setNumbers(dist, "PointsList", [centre])
        th = field.add("Threshold")
        inside = min(sizes["ice"], float(pocket.semi.min()) / 2)
        reach = float(pocket.semi.max())
        for key, value in (("InField", dist), ("SizeMin", inside), ("SizeMax", far), ("DistMin", reach + inside),
                           ("DistMax", reach + 4 * far), ("StopAtDistMax", 1)):
            field.setNumber(th, key, value)
        parts.append(th)
    skin = field.add("Box")
    (x0, x1), (y0, y1) = g.x_range, g.y_range
    for key, value in (("VIn", min(sizes["skin"], far)), ("VOut", far), ("XMin", x0), ("XMax", x1), ("YMin", y0),
                       ("YMax", y1), ("ZMin", -1.0), ("ZMax", g.z_skin), ("Thickness", g.z_skin)):
        field.setNumber(skin, key, value)
    parts.append(skin)
    background = field.add("Min")
    field.setNumbers(background, "FieldsList", parts)
    field.setAsBackgroundMesh(background)
    gmsh.option.setNumber("Mesh.MeshSizeMax", far)
