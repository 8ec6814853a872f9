"""The occipital phantom: anatomy against the published ranges, mesh validity, probes, cache, refusals.

Measurements are taken on the shipped coarse mesh (meshes/occipital_coarse.msh.xz, the gon_double_freeze
case's mesh: the three-needle tip over the flat GON) and on small phantoms generated here with deliberately
large elements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryofield.cli import main
from cryofield.config.case import TissueSpec, load_case, parse_case
from cryofield.config.meshspec import GAUGES, Anatomy, PhantomSpec, ProbePlacement
from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.mesh import read_mesh
from cryofield.mesh.anatomy import Course, PhantomGeometry
from cryofield.mesh.checks import signed_volumes
from cryofield.mesh.generators import slab
from cryofield.mesh.phantom import REGIONS, SURFACES, mesh_key, phantom_mesh
from cryofield.mesh.placement import Placement, check_poses, resolve
from cryofield.mesh.sources import mesh_of
from cryofield.model.roles import RoleTable
from cryofield.outcomes.clinical import clinical_summary
from cryofield.run.runner import run_case

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "meshes" / "occipital_coarse.msh.xz"
DEMO = REPO / "cases" / "gon_double_freeze.yaml"
#: The demo's phantom line, which tests replace.
DEMO_PHANTOM = "  phantom: {preset: coarse, side: right, anatomy: {gon_state: symptomatic}}"

#: Large elements and a shorter model: a phantom that meshes in seconds (two probes, both ways of placing).
SMALL = """
name: small_phantom
mesh:
  phantom:
    sizes: {tip: 0.6, ice: 2, ice_radius: 3, vessel_divisions: 2, skin: 8, far: 15}
    anatomy: {inferior_extent: 85, superior_extent: 20}
  units: mm
tissues:
  gon: {library: nerve, perfusion: 1.0e-3}
probes:
  - name: beside
    placement:
      gauge: 18G
      active_length: 6
      target: {nerve: gon, side: medial, gap: 0.5}
      approach: {from: superior, angle: 30}
  - name: fixed
    placement: {gauge: 22G, active_length: 4, tip: [30, 40, 11.6], direction: [0, 0.5, -1]}
protocol:
  - {kind: freeze, duration: 4, temperature: -70}
boundaries:
  - {surface: skin_surface, type: convection}
  - {surface: deep, type: fixed, temperature: 37}
"""


@pytest.fixture(scope="module")
def shipped():
    return read_mesh(SHIPPED, "mm")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The SMALL case's phantom, generated into a fresh cache, then fetched from it."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYOFIELD_CACHE", str(cache))
        case = parse_case(SMALL, source="small.yaml")
        placements = {p.name: p.placement for p in case.probes}
        mesh, cached = phantom_mesh(case.mesh.phantom, placements)
        again, cached_again = phantom_mesh(case.mesh.phantom, placements)
        loaded = mesh_of(case)
    return {"case": case, "mesh": mesh, "cached": cached, "again": again, "cached_again": cached_again,
            "loaded": loaded, "cache": cache}


def nodes_of(mesh, region: str) -> np.ndarray:
    """Coordinates (mm) of the nodes of a region."""
    return mesh.points[np.unique(mesh.tets[mesh.tet_tags == mesh.regions[region]])] * 1e3


def test_landmarks_fall_in_the_published_ranges(shipped):
    skin = shipped.points[shipped.surface_nodes("skin_surface")] * 1e3
    np.testing.assert_allclose(skin[:, 2], 0.0, atol=1e-9)  # z is depth below the skin, origin on it
    gon, artery = nodes_of(shipped, "gon"), nodes_of(shipped, "artery")
    at_snl = gon[np.abs(gon[:, 1]) < 1.0]  # the superior nuchal line is y = 0
    lateral, depth = (at_snl.min(axis=0) + at_snl.max(axis=0))[[0, 2]] / 2
    assert 20.0 <= lateral <= 23.0 and 6.0 <= depth <= 8.0  # Shim et al. 2011: 20.5-23.1 mm, 6.8-7.0 mm
    artery_snl = artery[np.abs(artery[:, 1]) < 1.0]
    assert artery_snl[:, 0].mean() > at_snl[:, 0].mean()  # the artery runs lateral of the nerve
    gap = np.min(np.linalg.norm(at_snl[:, None] - artery_snl[None], axis=2))
    assert 1.0 <= gap <= 2.0  # 1.2-1.5 mm between them
    bone = nodes_of(shipped, "bone")
    under_eop = bone[np.hypot(bone[:, 0], bone[:, 1]) < 3.0]
    assert 9.0 <= np.ptp(under_eop[:, 2]) <= 29.0  # occipital bone at the EOP: 15.4 (9-29) mm
    trapezius = nodes_of(shipped, "trapezius")
    below = trapezius[(trapezius[:, 1] > 40) & (trapezius[:, 1] < 50)]
    assert 3.4 <= np.ptp(below[:, 2]) <= 4.9  # Hung et al. 2010
    ton = nodes_of(shipped, "ton")
    ton_exit = ton[np.abs(ton[:, 1] - 44.2) < 1.0]
    assert 10.0 <= ton_exit[:, 0].mean() <= 14.0  # Kim et al. 2018: 12.9 mm lateral, 44.2 mm inferior
    lon = nodes_of(shipped, "lon")
    assert 60.0 <= lon[np.abs(lon[:, 1] - 79.0) < 1.0][:, 0].mean() <= 68.0  # ~64 mm lateral, ~79 mm inferior


def test_landmarks_in_metadata_are_the_geometry(shipped):
    marks = {k: np.array(v) * 1e3 for k, v in shipped.metadata["landmarks"].items()}
    np.testing.assert_allclose(marks["gon_superior_nuchal_line"], [21.8, 0.0, 6.9], atol=1e-9)
    np.testing.assert_allclose(marks["gon_trapezius"][:2], [22.6, 16.3], atol=1e-9)
    centreline = np.array(shipped.metadata["centerlines"]["gon"]) * 1e3
    assert np.min(np.linalg.norm(centreline - marks["gon_superior_nuchal_line"], axis=1)) < 0.3
    left = PhantomGeometry(Anatomy(), "left").landmarks()
    assert left["gon_superior_nuchal_line"][0] == pytest.approx(-21.8)  # x is the patient's right


@pytest.mark.parametrize("which", ["shipped", "small"])
def test_every_tetrahedron_has_positive_volume(which, shipped, small):
    mesh = shipped if which == "shipped" else small["mesh"]
    assert signed_volumes(mesh.points, mesh.tets).min() > 0


def test_all_regions_and_surface_tags_present(shipped, small):
    for mesh, probes, contacts in ((shipped, ["probe"], {"probe_contact"}),
                                   (small["mesh"], ["beside", "fixed"], set())):
        assert set(mesh.regions) == set(REGIONS) - {"pocket"}  # no fluid pockets in these
        assert set(mesh.surfaces) == set(SURFACES) | contacts | {f"{p}_{part}" for p in probes
                                                                 for part in ("active", "shaft")}
        assert set(np.unique(mesh.tet_tags)) == set(mesh.regions.values())
        assert set(np.unique(mesh.facet_tags)) == set(mesh.surfaces.values())
    artery_faces = {tuple(sorted(f)) for t in shipped.tets[shipped.tet_tags == shipped.regions["artery"]]
                    for f in (t[[1, 2, 3]], t[[0, 2, 3]], t[[0, 1, 3]], t[[0, 1, 2]])}
    wall = shipped.surface_facets("artery_wall")
    assert all(tuple(sorted(f)) in artery_faces for f in wall)  # the wall bounds the lumen


def probe_areas(mesh, name: str) -> tuple[float, float]:
    return tuple(fem.facet_areas(mesh.points, mesh.surface_facets(f"{name}_{part}")).sum() * 1e6
                 for part in ("active", "shaft"))


def test_probe_areas_match_the_needle(shipped, small):
    for mesh in (shipped, small["mesh"]):
        for name, meta in mesh.metadata["probes"].items():
            d, length = meta["diameter"] * 1e3, meta["active_length"] * 1e3
            tips = np.array(meta.get("needles", [meta["tip"]])) * 1e3
            active, shaft = probe_areas(mesh, name)
            assert active == pytest.approx(len(tips) * (np.pi * d * length + np.pi * d**2 / 2), rel=0.02)
            axis = np.array(meta["axis"])
            to_skin = -(tips[:, 2] + d / 2 * axis[2]) / axis[2]  # cap centre to skin along the axis
            # 6 elements round each shaft: an inscribed hexagon's perimeter is 4.5 % short
            assert shaft == pytest.approx(np.sum(np.pi * d * (to_skin - length)), rel=0.07)
            nodes = mesh.points[mesh.surface_nodes(f"{name}_active")] * 1e3
            rel = nodes[:, None, :] - (tips + d / 2 * axis)[None]  # to each needle's cap centre
            along = rel @ axis
            radial = np.linalg.norm(rel - along[..., None] * axis, axis=2)
            mine = np.argmin(radial + 1e3 * (along < -d), axis=1)  # the needle each node belongs to
            along, radial = along[np.arange(len(nodes)), mine], radial[np.arange(len(nodes)), mine]
            assert along.min() > -d / 2 - 1e-6 and along.max() < length + 1e-6
            assert np.all(radial[along > 0] <= d / 2 + 1e-6) and np.all(radial[along > 0] > 0.9 * d / 2)


def test_the_demo_device_sits_where_the_case_put_it(shipped):
    """Three 27G needles side by side over the flat GON, 0.2 mm of tissue under them."""
    meta = shipped.metadata["probes"]["probe"]
    assert meta["gauge"] == "27G" and meta["diameter"] == pytest.approx(GAUGES["27G"] * 1e-3)
    assert len(meta["needles"]) == 3 and meta["spacing"] == pytest.approx(1.5e-3)
    course = PhantomGeometry(Anatomy(), "right").courses["gon"]
    for apex in np.array(meta["needles"]) * 1e3:
        gap = course.surface_gap(apex[None] + GAUGES["27G"] / 2 * np.array([0.0, 0.0, -1.0]), 0.02)
        assert 0.1 <= gap - GAUGES["27G"] / 2 <= 0.6  # above the band
    active = shipped.points[shipped.surface_nodes("probe_active")] * 1e3
    gon = nodes_of(shipped, "gon")
    assert np.mean(active[:, 2]) < np.mean(gon[np.abs(gon[:, 1]) < 2, 2])  # superficial to the nerve
    assert "probe_contact" in shipped.surfaces


def test_same_parameters_same_hash_and_the_shipped_mesh_is_current(shipped):
    case = load_case(DEMO)
    spec = case.mesh.phantom
    geometry = PhantomGeometry(spec.anatomy, spec.side)
    poses = [resolve(p.name, p.placement, geometry) for p in case.probes]
    key = mesh_key(spec, poses)
    assert key == mesh_key(PhantomSpec.model_validate(spec.model_dump()),
                           [resolve(p.name, p.placement, PhantomGeometry(spec.anatomy, spec.side))
                            for p in load_case(DEMO).probes])
    assert shipped.metadata["phantom"]["hash"] == key  # regenerate meshes/ (see meshes/README.md) if this fails
    placed = case.probes[0].placement
    absolute = ProbePlacement(gauge=placed.gauge, active_length=placed.active_length, tip=tuple(poses[0].apex),
                              direction=tuple(poses[0].axis), contact_radius=placed.contact_radius,
                              needles={"count": 3, "spacing": placed.needles.spacing, "row": tuple(poses[0].row)})
    assert mesh_key(spec, [resolve("probe", absolute, geometry)]) == key  # the same pose, however it is given
    moved = case.probes[0].placement.model_copy(update={"target": case.probes[0].placement.target.model_copy(
        update={"gap": 0.3})})
    assert mesh_key(spec, [resolve("probe", moved, geometry)]) != key
    finer = PhantomSpec.model_validate(spec.model_dump() | {"sizes": {"tip": 0.1}})
    assert mesh_key(finer, poses) != key
    assert mesh_key(PhantomSpec(preset="coarse", sizes={"tip": 0.25}), poses) == mesh_key(PhantomSpec(), poses)


def test_cache_returns_the_same_mesh(small):
    assert not small["cached"] and small["cached_again"]
    mesh, again = small["mesh"], small["again"]
    np.testing.assert_allclose(again.points, mesh.points, rtol=1e-12, atol=1e-15)
    assert np.array_equal(again.tets, mesh.tets) and np.array_equal(again.facet_tags, mesh.facet_tags)
    assert again.metadata == json.loads(json.dumps(mesh.metadata))
    entries = sorted(p.name for p in (small["cache"] / "meshes").iterdir())
    assert entries == [f"phantom-{mesh.metadata['phantom']['hash']}.{ext}" for ext in ("meta.json", "msh")]


def test_case_with_phantom_uses_the_cache_and_fills_tissues(small):
    case, loaded = small["case"], small["loaded"]
    assert loaded.n_nodes == small["mesh"].n_nodes
    assert [p.surface for p in case.probes] == ["beside_active", "fixed_active"]
    assert case.tissues["trapezius"].library == "muscle" and case.tissues["artery"].library == "blood"
    assert case.tissues["gon"].perfusion == 1.0e-3  # what the case gives wins


BAD_PLACEMENTS = [
    ({"tip": [21.8, 0.0, 6.9], "approach": {"from": "superior", "angle": 15}}, "greater occipital nerve"),
    ({"target": {"nerve": "gon", "side": "lateral", "gap": 1.5}, "approach": {"from": "lateral", "angle": 30}},
     "occipital artery"),
    ({"tip": [20.0, 0.0, -1.0], "approach": {"from": "superior", "angle": 15}}, "outside the body"),
    ({"tip": [15.0, 0.0, 5.0], "direction": [0.0, 0.0, 1.0]}, "does not reach the skin"),
    ({"tip": [15.0, -30.0, 6.0], "approach": {"from": "superior", "angle": 10}}, "superior side"),
    ({"tip": [15.0, 0.0, 2.5], "approach": {"from": "medial", "angle": 30}}, "stick out of the skin"),
    ({"tip": [15.0, -10.0, 9.2], "approach": {"from": "medial", "angle": 30}}, "occipital bone"),
    ({"target": {"nerve": "gon", "at": "nowhere"}, "approach": {"from": "superior", "angle": 15}}, "no landmark"),
]


@pytest.mark.parametrize("where, message", BAD_PLACEMENTS)
def test_impossible_placements_are_refused(where, message):
    geometry = PhantomGeometry(Anatomy(), "right")
    placement = ProbePlacement(gauge="18G", active_length=8, **where)
    with pytest.raises(Placement, match=message) as info:
        check_poses([resolve("p", placement, geometry)], geometry)
    assert info.value.probe == "p"


def test_probes_touching_each_other_are_refused():
    geometry = PhantomGeometry(Anatomy(), "right")
    a = ProbePlacement(gauge="18G", active_length=6, tip=(15.0, 0.0, 6.0), approach={"from": "superior", "angle": 20})
    b = ProbePlacement(gauge="18G", active_length=6, tip=(15.5, 0.0, 6.0), approach={"from": "superior", "angle": 20})
    with pytest.raises(Placement, match="probe 'a'"):
        check_poses([resolve("a", a, geometry), resolve("b", b, geometry)], geometry)


def test_refused_placement_exits_2_naming_the_probe(tmp_path, capsys):
    text = DEMO.read_text().replace("side: superficial, gap: 0.2}", "side: lateral, gap: 0.2}")
    text = text.replace("approach: {from: superior, angle: 15}", "approach: {from: lateral, angle: 20}")
    assert text != DEMO.read_text()
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "probes.0.placement" in err and "occipital artery" in err
    with pytest.raises(InputError, match="phantom is specified in millimetres"):
        parse_case(DEMO.read_text().replace("units: mm", "units: m"))


def test_mesh_check_prints_a_report(capsys):
    assert main(["mesh", "check", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    for text in ("gon", "artery_wall", "probe_active", "bounding box (mm)", "dihedral angles: min",
                 "aspect ratio", "inverted or flat tetrahedra: 0", "sane"):
        assert text in out
    assert main(["mesh", "check", str(SHIPPED), "--units", "m"]) == 2  # 95 m across: not tissue


def test_clinical_lengths_on_a_known_field():
    """The block is the nerve (its centreline along x); lesion lengths are exact for linear fields."""
    mesh = slab((10.0, 6.0, 6.0), (20, 12, 12), 1e-3)
    x, y = mesh.points[:, 0] * 1e3, mesh.points[:, 1] * 1e3
    meta = {"centerlines": {"tissue": [[0.0, 3e-3, 3e-3], [10e-3, 3e-3, 3e-3]]}}
    args = (mesh.points, mesh.tets, np.zeros(mesh.n_tets, int), ["tissue"])

    def table(library: str, metadata: dict = meta) -> RoleTable:
        return RoleTable.decide(["tissue"], {"tissue": TissueSpec(library=library)}, metadata, *args[:3])

    along = clinical_summary(*args, -40.0 + 10.0 * x, table("nerve"), {"tissue": -1.0})
    lesion = along["nerves"]["tissue"]["lesion_length"]
    lesion_along = lesion["-20"]
    assert lesion["-20"]["whole_section_mm"] == pytest.approx(2.0, abs=1e-9)  # T <= -20 for x <= 2 mm
    assert lesion["-20"]["any_part_mm"] == pytest.approx(2.0, abs=1e-9)
    assert lesion["-40"]["any_part_mm"] == pytest.approx(0.0, abs=1e-9)
    assert along["nerves"]["tissue"]["min_temperature_C"] == pytest.approx(-40.0)
    assert not along["nerves"]["tissue"]["durable_block"]
    across = clinical_summary(*args, -35.0 + 10.0 / 3.0 * (y - 3.0), table("nerve"), {"tissue": -1.0})
    lesion = across["nerves"]["tissue"]["lesion_length"]  # the section spans -45 .. -25 °C everywhere
    assert lesion["-20"]["whole_section_mm"] == pytest.approx(10.0, abs=1e-9)
    assert lesion["-40"]["whole_section_mm"] == 0.0 and lesion["-40"]["any_part_mm"] == pytest.approx(10.0, abs=1e-9)
    assert across["nerves"]["tissue"]["durable_block"]
    assert across["thresholds"] == RoleTable.decide([], {}, {}, *args[:3]).thresholds.to_dict()
    # without the metadata's centreline, the one estimated along the block gives the same lengths
    estimated = clinical_summary(*args, -40.0 + 10.0 * x, table("nerve", {}), {"tissue": -1.0})
    assert estimated["nerves"]["tissue"]["centreline"] == "estimated"
    assert estimated["nerves"]["tissue"]["lesion_length"]["-20"] == pytest.approx(lesion_along, abs=1e-9)
    assert clinical_summary(*args, -35.0 + 0 * x, table("muscle"), {"tissue": -1.0}) is None  # no nerve


def test_run_on_the_shipped_mesh_reports_the_clinical_outcome(tmp_path):
    """The demo case on the shipped file (metadata from its sidecar), for 4 s of freezing."""
    text = DEMO.read_text().replace(DEMO_PHANTOM, f"  file: {SHIPPED}")
    assert f"file: {SHIPPED}" in text
    start, end = text.index("probes:"), text.index("initial:")
    text = (text[:start] + "probes: [{name: probe, surface: probe_active}]\n"
            "protocol: [{kind: freeze, duration: 4, temperature: -70}]\n" + text[end:])
    summary = run_case(parse_case(text, source=str(tmp_path / "c.yaml")), tmp_path / "out", progress=False).summary
    clinical = summary["clinical"]
    assert set(clinical["nerves"]) == {"gon", "ton", "lon"} and set(clinical["vessels"]) == {"artery"}
    gon = clinical["nerves"]["gon"]
    assert gon["min_temperature_C"] == pytest.approx(summary["regions"]["gon"]["min_temperature_C"])
    assert gon["min_temperature_C"] < 30 < summary["regions"]["ton"]["min_temperature_C"]
    assert gon["lesion_length"]["-20"]["whole_section_mm"] <= gon["lesion_length"]["-20"]["any_part_mm"]
    assert not clinical["skin"]["froze"] and clinical["skin"]["min_temperature_C"] > 20


def test_mesh_phantom_command_prints_and_writes(tmp_path):
    out = tmp_path / "p.msh"
    env = os.environ | {"CRYOFIELD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "cryofield", "mesh", "phantom", "--side", "left", "-o", str(out),
                           "--no-cache"], check=False, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "occipital phantom left, coarse" in proc.stdout and "minimum dihedral angle" in proc.stdout
    mesh = read_mesh(out, "mm")
    assert mesh.points[:, 0].max() < 0.011 and mesh.metadata["phantom"]["side"] == "left"
    assert not (tmp_path / "cache").exists()


def section_area(points: np.ndarray, tets: np.ndarray, origin: np.ndarray, normal: np.ndarray) -> float:
    """Area of the cut of the tetrahedra ``tets`` by the plane through ``origin`` normal to ``normal``."""
    d = (points - origin) @ normal
    dt = d[tets]
    total = 0.0
    crossing = (dt.min(axis=1) < 0) & (dt.max(axis=1) > 0)
    for t, dd in zip(tets[crossing], dt[crossing]):
        cut = np.array([points[t[a]] + dd[a] / (dd[a] - dd[b]) * (points[t[b]] - points[t[a]])
                        for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)) if (dd[a] < 0) != (dd[b] < 0)])
        centre = cut.mean(axis=0)
        e1 = (cut[0] - centre) / np.linalg.norm(cut[0] - centre)
        order = np.argsort(np.arctan2((cut - centre) @ np.cross(normal, e1), (cut - centre) @ e1))
        ring = cut[order] - centre
        total += 0.5 * np.linalg.norm(np.cross(ring, np.roll(ring, -1, axis=0)), axis=1).sum()
    return total


def test_the_gon_is_a_flattened_band_parallel_to_the_skin(shipped):
    """Cho, Haun & Kettner 2012: 4.1 mm² symptomatic, 3.8 mm wide; the meshed section within a few %."""
    course = PhantomGeometry(Anatomy(), "right").courses["gon"]
    assert course.area == pytest.approx(4.1, rel=1e-9)
    assert [2 * v for v in course.semi_axes] == pytest.approx([3.8, 1.3738], abs=1e-4)
    gon = shipped.tets[shipped.tet_tags == shipped.regions["gon"]]
    points = shipped.points * 1e3
    u = course.stations["superior_nuchal_line"]
    area = section_area(points, gon, course.point(u), course.tangent(u))
    assert area == pytest.approx(4.1, rel=0.05)
    at_snl = nodes_of(shipped, "gon")
    at_snl = at_snl[np.abs(at_snl[:, 1]) < 0.3]
    assert np.ptp(at_snl[:, 0]) == pytest.approx(3.8, abs=0.3)  # wide across the skin
    assert np.ptp(at_snl[:, 2]) == pytest.approx(1.37, abs=0.3)  # thin into the depth
    sections = shipped.metadata["sections"]["gon"]
    assert sections["width"] == pytest.approx(3.8e-3) and sections["area"] == pytest.approx(4.1e-6)


def test_gon_state_presets_and_overrides():
    assert Anatomy().gon_section() == pytest.approx((3.8, 4 * 4.1 / (np.pi * 3.8)))
    width, thickness = Anatomy(gon_state="asymptomatic").gon_section()
    assert np.pi * width * thickness / 4 == pytest.approx(2.0)
    assert width / thickness == pytest.approx(3.8 / 1.37374, rel=1e-3)  # the symptomatic band's aspect
    assert Anatomy(gon_width=3.0, gon_thickness=1.0).gon_section() == (3.0, 1.0)
    assert np.pi * 4.0 * Anatomy(gon_width=4.0).gon_section()[1] / 4 == pytest.approx(4.1)  # the preset's area
    tilted = PhantomGeometry(Anatomy(gon_orientation=90.0), "right").courses["gon"]
    _, long, _ = tilted.section_axes(tilted.stations["superior_nuchal_line"])
    assert abs(long[2]) > 0.99  # turned on edge
    with pytest.raises(ValueError, match="must not exceed gon_width"):
        Anatomy(gon_width=1.0, gon_thickness=2.0)


@pytest.mark.parametrize("anatomy, key, message", [
    ("{gon_diameter: 3.85}", "mesh.phantom.anatomy", "gon_diameter is replaced by gon_width and gon_thickness"),
    ("{gon_state: acute}", "mesh.phantom.anatomy.gon_state", "symptomatic"),
    ("{gon_width: -1}", "mesh.phantom.anatomy.gon_width", "greater than 0"),
    ("{gon_orientation: 120}", "mesh.phantom.anatomy.gon_orientation", "less than or equal to 90"),
])
def test_anatomy_key_errors_exit_2_naming_the_key(tmp_path, capsys, anatomy, key, message):
    text = DEMO.read_text().replace(DEMO_PHANTOM, f"  phantom: {{preset: coarse, side: right, anatomy: {anatomy}}}")
    assert anatomy in text
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-render"]) == 2
    err = capsys.readouterr().err
    assert key in err and message in err
    assert not (tmp_path / "out").exists()


def test_elliptical_sections_reach_and_gap():
    """A straight band along y, 4 x 1 mm: its reach is the semi-axis in each direction, exact gaps outside."""
    course = Course.through("gon", 2.0, np.array([[0.0, -10.0, 5.0], [0.0, 0.0, 5.0], [0.0, 10.0, 5.0]]),
                            {}, minor=0.5)
    t, long, short = course.section_axes(0.0)
    np.testing.assert_allclose(np.abs([t, long, short]), np.eye(3)[[1, 0, 2]], atol=1e-12)
    assert course.support(0.0, np.array([1.0, 0.0, 0.0])) == pytest.approx(2.0)
    assert course.support(0.0, np.array([0.0, 0.0, -1.0])) == pytest.approx(0.5)
    assert course.support(0.0, np.array([1.0, 0.0, 1.0]) / np.sqrt(2)) == pytest.approx(np.sqrt(2.125))
    assert course.surface_gap(np.array([[3.0, 1.0, 5.0]]), 0.05) == pytest.approx(1.0, abs=1e-3)
    assert course.surface_gap(np.array([[0.0, 1.0, 4.0]]), 0.05) == pytest.approx(0.5, abs=1e-3)
    assert course.surface_gap(np.array([[0.0, 1.0, 5.2]]), 0.05) < 0  # inside


def test_a_probe_above_the_flat_nerve_keeps_its_gap():
    geometry = PhantomGeometry(Anatomy(), "right")
    placement = ProbePlacement(gauge="18G", active_length=4, target={"nerve": "gon", "side": "superficial", "gap": 0.5},
                               approach={"from": "superior", "angle": 15})
    pose = resolve("p", placement, geometry)
    check_poses([pose], geometry)
    course = geometry.courses["gon"]
    gap = course.surface_gap(pose.cap_centre[None], 0.02, keep=geometry.in_box) - pose.radius
    assert gap == pytest.approx(0.5, abs=0.02)  # 0.5 mm of tissue above a 1.37 mm thick band
    assert pose.cap_centre[2] == pytest.approx(6.9 - 1.3738 / 2 - 0.5 - pose.radius, abs=0.05)


#: A three-needle 27G tip straight into the skin over the GON, a skin contact round its entries and a
#: saline pocket round the nerve: large elements elsewhere, so that it meshes in seconds.
DEVICE = """
name: device_phantom
mesh:
  phantom:
    sizes: {ice: 1.0, ice_radius: 3, vessel_divisions: 2, skin: 8, far: 15}
    anatomy: {inferior_extent: 85, superior_extent: 20}
    pockets:
      - {target: {nerve: gon, at: superior_nuchal_line, along: 6, side: around}, size: [6, 6, 2.6]}
  units: mm
probes:
  - name: tip
    placement:
      gauge: 27G
      active_length: 3
      needles: {count: 3, spacing: 1.5, row: along}
      target: {nerve: gon, side: superficial, gap: 0.3}
      approach: {from: superior, angle: 90}
      contact_radius: 3
protocol:
  - {kind: freeze, duration: 2, temperature: -70}
boundaries:
  - {surface: skin_surface, type: convection}
  - {surface: deep, type: fixed, temperature: 37}
"""


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYOFIELD_CACHE", str(cache))
        case = parse_case(DEVICE, source="device.yaml")
        return case, mesh_of(case)


def test_a_multi_needle_tip_is_one_device_with_every_needle_conformal(device):
    case, mesh = device
    meta = mesh.metadata["probes"]["tip"]
    needles = np.array(meta["needles"]) * 1e3
    assert len(needles) == 3 and np.array(meta["tip"]) * 1e3 == pytest.approx(needles[1])
    np.testing.assert_allclose(np.linalg.norm(np.diff(needles, axis=0), axis=1), 1.5, atol=1e-9)
    axis, row = np.array(meta["axis"]), np.array(meta["row"])
    assert abs(axis @ row) < 1e-9 and axis[2] == pytest.approx(-1.0)  # straight into the skin, the row across it
    course = PhantomGeometry(case.mesh.phantom.anatomy, "right").courses["gon"]
    tangent = course.tangent(course.stations["superior_nuchal_line"])
    assert abs(row @ tangent) > 0.99 * np.linalg.norm(tangent - (tangent @ axis) * axis)  # along the nerve
    d, length = GAUGES["27G"], 3.0
    active, _ = probe_areas(mesh, "tip")
    assert active == pytest.approx(3 * (np.pi * d * length + np.pi * d**2 / 2), rel=0.03)
    nodes = mesh.points[mesh.surface_nodes("tip_active")] * 1e3
    for apex in needles:  # every needle has its own conformal hole
        centre = apex + d / 2 * axis
        rel = nodes - centre
        along = rel @ axis
        mine = (along > 0.1) & (np.linalg.norm(rel - along[:, None] * axis, axis=1) < d)
        assert mine.sum() > 20
        np.testing.assert_allclose(np.linalg.norm(rel[mine] - along[mine, None] * axis, axis=1), d / 2, rtol=0.02)
    assert {"tip_active", "tip_shaft", "tip_contact"} <= set(mesh.surfaces)


def test_the_skin_contact_lies_round_the_entry_points(device):
    case, mesh = device
    contact = mesh.surface_facets("tip_contact")
    centres = mesh.points[contact].mean(axis=1) * 1e3
    entries = np.array(mesh.metadata["probes"]["tip"]["needles"]) * 1e3
    entries[:, 2] = 0.0
    assert np.all(np.abs(centres[:, 2]) < 1e-9)  # on the skin
    assert np.all(np.min(np.linalg.norm(centres[:, None] - entries[None], axis=2), axis=1) <= 3.0)
    skin = mesh.surface_facets("skin_surface")
    assert not set(map(tuple, np.sort(contact, axis=1))) & set(map(tuple, np.sort(skin, axis=1)))


def test_a_fluid_pocket_is_a_conformal_saline_region_round_the_nerve(device):
    case, mesh = device
    assert case.tissues["pocket"].library == "saline" and "pocket" in mesh.regions
    _, volumes = fem.gradients_and_volumes(mesh.points, mesh.tets)
    pocket = volumes[mesh.tet_tags == mesh.regions["pocket"]].sum() * 1e9
    ellipsoid = 4 / 3 * np.pi * 3 * 3 * 1.3
    nerve_inside = 4.1 * 6 * 0.85  # the band through it, about 6 mm of it (less where the ellipsoid narrows)
    assert pocket == pytest.approx(ellipsoid - nerve_inside, rel=0.12)
    meta = mesh.metadata["pockets"][0]
    centre = np.array(meta["centre"]) * 1e3
    course = PhantomGeometry(case.mesh.phantom.anatomy, "right").courses["gon"]
    u = course.arc_parameter(course.stations["superior_nuchal_line"], 6)
    np.testing.assert_allclose(centre, course.point(u), atol=1e-9)  # centred on the nerve
    fluid = nodes_of(mesh, "pocket")
    assert fluid[:, 2].min() > 2.0  # below the skin layer
    without = parse_case(SMALL, source="small.yaml")
    assert "pocket" not in without.tissues


@pytest.mark.parametrize("change, key, message", [
    ("size: [6, 6, 2.6]", "mesh.phantom.pockets.0", "into the skin layer"),
    ("side: around}, size: [6, 6, 2.6]", "mesh.phantom.pockets.0", "occipital bone"),
    ("size: [6, 6, 2.6]", "mesh.phantom.pockets.0.size", "greater than 0"),
    ("spacing: 1.5", "probes.0.placement", "would touch"),
    ("row: along", "probes.0.placement.needles.row", "Input should be"),
    ("count: 3", "probes.0.placement.needles.count", "less than or equal to 9"),
    ("contact_radius: 3", "probes.0.placement.contact_radius", "greater than 0"),
    ("angle: 90", "probes.0.placement.approach.angle", "less than or equal to 90"),
])
def test_device_and_pocket_key_errors_exit_2_naming_the_key(tmp_path, capsys, change, key, message):
    replacement = {
        "into the skin layer": "size: [6, 6, 11]",
        "occipital bone": "side: deep, gap: 1}, size: [6, 6, 6]",
        "greater than 0": {"mesh.phantom.pockets.0.size": "size: [6, 0, 2]",
                           "probes.0.placement.contact_radius": "contact_radius: 0"}.get(key),
        "would touch": "spacing: 0.45",
        "Input should be": "row: sideways",
        "less than or equal to 9": "count: 12",
        "less than or equal to 90": "angle: 95",
    }[message]
    text = DEVICE.replace(change, replacement)
    assert text != DEVICE
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    env_cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRYOFIELD_CACHE", str(env_cache))
        assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-render"]) == 2
    err = capsys.readouterr().err
    assert key in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_row_across_needs_a_target_or_a_direction():
    with pytest.raises(ValueError, match="needs a nerve target"):
        ProbePlacement(gauge="27G", active_length=3, tip=(20.0, 0.0, 5.0), direction=(0, 0, -1),
                       needles={"count": 3, "row": "across"})
    placement = ProbePlacement(gauge="27G", active_length=3, tip=(15.0, 0.0, 5.0), direction=(0, 0, -1),
                               needles={"count": 2, "spacing": 1.0, "row": (1.0, 0.0, 0.5)})
    geometry = PhantomGeometry(Anatomy(), "right")
    pose = resolve("p", placement, geometry)
    np.testing.assert_allclose(pose.row, [1.0, 0.0, 0.0], atol=1e-12)  # made normal to the needles
    np.testing.assert_allclose([n.apex for n in pose.needles()], [[14.0, 0.0, 5.0], [15.0, 0.0, 5.0]])
