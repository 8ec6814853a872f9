"""The occipital phantom: anatomy against the published ranges, mesh validity, probes, cache, refusals.

Measurements are taken on the shipped coarse mesh (meshes/occipital_coarse.msh.xz, the gon_double_freeze
case's mesh) and on a small phantom generated here with deliberately large elements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cryofield import fem
from cryofield.case import TissueSpec, load_case, parse_case
from cryofield.cli import main
from cryofield.clinical import clinical_summary
from cryofield.errors import InputError
from cryofield.mesh import read_mesh
from cryofield.mesh.anatomy import PhantomGeometry
from cryofield.mesh.checks import signed_volumes
from cryofield.mesh.generators import slab
from cryofield.mesh.phantom import REGIONS, SURFACES, mesh_key, phantom_mesh
from cryofield.mesh.placement import Placement, check_poses, resolve
from cryofield.mesh.sources import mesh_of
from cryofield.meshspec import GAUGES, Anatomy, PhantomSpec, ProbePlacement
from cryofield.roles import RoleTable
from cryofield.runner import run_case

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "meshes" / "occipital_coarse.msh.xz"
DEMO = REPO / "cases" / "gon_double_freeze.yaml"

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
    for mesh, probes in ((shipped, ["probe"]), (small["mesh"], ["beside", "fixed"])):
        assert set(mesh.regions) == set(REGIONS)
        assert set(mesh.surfaces) == set(SURFACES) | {f"{p}_{part}" for p in probes for part in ("active", "shaft")}
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
            active, shaft = probe_areas(mesh, name)
            assert active == pytest.approx(np.pi * d * length + np.pi * d**2 / 2, rel=0.02)
            tip, axis = np.array(meta["tip"]) * 1e3, np.array(meta["axis"])
            to_skin = -(tip[2] + d / 2 * axis[2]) / axis[2]  # cap centre to skin along the axis
            assert shaft == pytest.approx(np.pi * d * (to_skin - length), rel=0.05)  # 6 elements round it at the skin
            nodes = mesh.points[mesh.surface_nodes(f"{name}_active")] * 1e3 - (tip + d / 2 * axis)
            along = nodes @ axis
            radial = np.linalg.norm(nodes - along[:, None] * axis, axis=1)
            assert along.min() > -d / 2 - 1e-6 and along.max() < length + 1e-6
            assert np.all(radial[along > 0] <= d / 2 + 1e-6) and np.all(radial[along > 0] > 0.9 * d / 2)


def test_probe_sits_where_the_case_put_it(shipped):
    meta = shipped.metadata["probes"]["probe"]
    assert meta["gauge"] == "18G" and meta["diameter"] == pytest.approx(GAUGES["18G"] * 1e-3)
    active = shipped.points[shipped.surface_nodes("probe_active")] * 1e3
    gon = nodes_of(shipped, "gon")
    gap = np.min(np.linalg.norm(active[:, None] - gon[None, ::3], axis=2))
    assert 0.15 <= gap <= 0.6  # 0.2 mm of tissue between needle and nerve in the case
    assert np.mean(active[:, 0]) < 21.8  # medial of the nerve


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
    absolute = ProbePlacement(gauge="18G", active_length=8, tip=tuple(poses[0].apex), direction=tuple(poses[0].axis))
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
    text = DEMO.read_text().replace("side: medial, gap: 0.2", "side: lateral, gap: 0.2")
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
    text = DEMO.read_text().replace("  phantom: {preset: coarse, side: right}", f"  file: {SHIPPED}")
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
    proc = subprocess.run([sys.executable, "-m", "cryofield.cli", "mesh", "phantom", "--side", "left", "-o", str(out),
                           "--no-cache"], check=False, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "occipital phantom left, coarse" in proc.stdout and "minimum dihedral angle" in proc.stdout
    mesh = read_mesh(out, "mm")
    assert mesh.points[:, 0].max() < 0.011 and mesh.metadata["phantom"]["side"] == "left"
    assert not (tmp_path / "cache").exists()
