"""Region roles decided once: the order of the evidence, estimated centrelines, the table stored in the
result, and the clinical summary and the pictures reading the same table."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cryofield.config.case import TissueSpec, load_case, parse_case
from cryofield.errors import CorruptResult, InputError
from cryofield.io import read_result
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab
from cryofield.model.roles import (
    ROLES,
    THRESHOLDS,
    RoleTable,
    Thresholds,
    estimated_centreline,
    region_role,
)
from cryofield.run.runner import run_case

CUSTOM_NERVE = dict(density=1075, specific_heat=3613, conductivity=0.49, perfusion=2.9e-3,
                    conductivity_frozen=1.5, heat_capacity_frozen=2.0e6, latent_heat=215e6,
                    metabolic_heat=1000)


@pytest.mark.parametrize("name, tissue, role", [
    ("greater_occipital_nerve", None, "nerve"), ("occipital_artery", None, "artery"), ("skin", None, "skin"),
    ("fat", None, "fat"), ("trapezius", None, "muscle"), ("semispinalis", None, "muscle"),
    ("bone", None, "bone"),
    ("gon", TissueSpec(library="nerve"), "nerve"), ("lon", None, "nerve"), ("tonsil", None, "tissue"),
    ("block", TissueSpec(library="muscle"), "muscle"), ("tissue", TissueSpec(library="generic"), "tissue"),
    ("vessel_lumen", TissueSpec(library="blood"), "artery"),
    ("nerve_sheath", TissueSpec(library="fat"), "fat"),  # the library entry before the words of the name
    ("block", TissueSpec(library="muscle", role="nerve"), "nerve"),  # an explicit role before everything
    ("skin", TissueSpec(library="skin", role="tissue"), "tissue"),
])
def test_region_roles(name, tissue, role):
    assert region_role(name, tissue) == role


def test_explicit_role_wins_over_the_library_entry():
    case = parse_case("""
name: r
mesh: {file: m.msh, regions: {block: 1}, surfaces: {probe: 1}}
tissues:
  block: {library: muscle, role: nerve}
""")
    assert case.tissues["block"].role == "nerve"
    assert case.tissues["block"].material("block").conductivity == pytest.approx(0.49)  # role is no property
    mesh = slab((4.0, 1.0, 1.0), (8, 2, 2), 1e-3)
    table = RoleTable.decide(["block"], case.tissues, {}, mesh.points, mesh.tets, np.zeros(mesh.n_tets, int))
    assert table.roles == {"block": "nerve"} and table.centreline_source == {"block": "estimated"}
    with pytest.raises(InputError, match="tissues.block.role"):
        parse_case("name: r\nmesh: {file: m.msh, regions: {block: 1}}\n"
                   "tissues: {block: {library: muscle, role: vein}}")


def test_custom_tissue_named_as_a_nerve_is_a_nerve():
    spec = TissueSpec(**CUSTOM_NERVE)
    assert spec.library is None and region_role("greater_occipital_nerve", spec) == "nerve"
    assert region_role("gon_left", spec) == "nerve" and region_role("splenius", spec) == "muscle"


def tube(length: float = 12e-3, radius: float = 0.8e-3, seed: int = 3):
    """A slab mesh turned to an oblique direction, with a straight tube (region 1) along its long axis:
    points, tets, region of each tet and the tube's unit axis."""
    mesh = slab((length * 1e3, 4.0, 4.0), (24, 10, 10), 1e-3)
    centroid = mesh.points[mesh.tets].mean(axis=1)
    region = (np.hypot(centroid[:, 1] - 2e-3, centroid[:, 2] - 2e-3) < radius).astype(int)
    rotation, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return mesh.points @ rotation.T, mesh.tets, region, rotation[:, 0]


def polyline_length(line: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum())


def test_nerve_without_a_centreline_gets_one_along_it():
    points, tets, region, axis = tube()
    tissues = {"muscle": TissueSpec(library="muscle"), "nerve": TissueSpec(library="nerve")}
    one_point = {"centerlines": {"nerve": [[0, 0, 0]]}}
    table = RoleTable.decide(["muscle", "nerve"], tissues, one_point, points, tets, region)
    assert table.roles == {"muscle": "muscle", "nerve": "nerve"}
    assert table.centreline_source == {"nerve": "estimated"}  # one point is no centreline
    line = table.centrelines["nerve"]
    assert polyline_length(line) == pytest.approx(12e-3, rel=0.01)  # as long as the tube
    nodes = points[np.unique(tets[region == 1])]
    centre = nodes.mean(axis=0)
    off_axis = (line - centre) - np.outer((line - centre) @ axis, axis)
    assert np.abs(np.linalg.norm(off_axis, axis=1)).max() < 0.1e-3  # and on its axis
    np.testing.assert_allclose(estimated_centreline(nodes), line)
    given = [[0.0, 0.0, 0.0], [1e-3, 0.0, 0.0], [2e-3, 0.0, 0.0]]
    table = RoleTable.decide(["muscle", "nerve"], tissues, {"centerlines": {"nerve": given}}, points, tets,
                             region)
    assert table.centreline_source == {"nerve": "mesh"}
    np.testing.assert_array_equal(table.centrelines["nerve"], given)


def test_table_and_thresholds_round_trip_as_json():
    points, tets, region, _ = tube()
    table = RoleTable.decide(["fat", "occipital_artery"], {}, {}, points, tets, region,
                             Thresholds(lesion_c=(-25.0, -45.0), durable_block_mm=5.0))
    back = RoleTable.from_json(table.to_json())
    assert back == table and back.roles == {"fat": "fat", "occipital_artery": "artery"}
    np.testing.assert_array_equal(back.centrelines["occipital_artery"], table.centrelines["occipital_artery"])
    assert back.thresholds.injury_c == -25.0 and back.thresholds.durable_block_mm == 5.0
    assert Thresholds.from_dict(THRESHOLDS.to_dict()) == THRESHOLDS == Thresholds()
    limits = (THRESHOLDS.lesion_c, THRESHOLDS.durable_block_mm, THRESHOLDS.thrombosis_c)
    assert limits == ((-20.0, -40.0), 4.0, -15.0)
    with pytest.raises(ValueError, match="unknown threshold"):
        Thresholds.from_dict({"lesion_c": [-20.0], "block_mm": 4.0})
    with pytest.raises(ValueError, match="unknown role"):
        RoleTable({"a": "tendon"})
    assert "tissue" in ROLES and len(ROLES) == 7


SLAB_CASE = """
name: nerve_slab
mesh: {file: block.msh, units: mm, regions: {block: 1, greater_occipital_nerve: 2},
       surfaces: {probe: 1, far: 2}}
tissues:
  block: {library: muscle, role: muscle}
  greater_occipital_nerve: {density: 1075, specific_heat: 3613, conductivity: 0.49, perfusion: 2.9e-3,
                            conductivity_frozen: 1.5, heat_capacity_frozen: 2.0e6, latent_heat: 215e6,
                            metabolic_heat: 1000}
probes: [{name: tip, surface: probe}]
protocol:
  - {kind: freeze, duration: 20, temperature: -80}
boundaries:
  - {surface: far, type: fixed, temperature: 37}
outputs: {snapshot_interval: 10, metrics_interval: 5}
"""


@pytest.fixture(scope="module")
def nerve_run(tmp_path_factory):
    """A block frozen from one face (x = 0), a custom nerve along x through it, no centreline in the mesh."""
    work = tmp_path_factory.mktemp("nerve_slab")
    mesh = slab((10.0, 4.0, 4.0), (20, 8, 8), 1e-3)
    centroid = mesh.points[mesh.tets].mean(axis=1)
    mesh.tet_tags = np.where(np.hypot(centroid[:, 1] - 2e-3, centroid[:, 2] - 2e-3) < 0.8e-3, 2, 1)
    mesh.regions = {"block": 1, "greater_occipital_nerve": 2}
    write_mesh(mesh, work / "block.msh", units="mm")
    (work / "case.yaml").write_text(SLAB_CASE)
    return run_case(load_case(work / "case.yaml"), work / "out", backend="cpu", progress=False)


def test_the_result_stores_the_roles_and_the_summary_and_pictures_read_them(nerve_run):
    from cryofield.viz.data import VizResult
    from cryofield.viz.geometry import NerveLength, nerve_centrelines

    result = read_result(nerve_run.paths["h5"])
    table = result.roles
    assert table.roles == {"block": "muscle", "greater_occipital_nerve": "nerve"}
    assert table.centreline_source == {"greater_occipital_nerve": "estimated"}
    assert polyline_length(table.centrelines["greater_occipital_nerve"]) == pytest.approx(10e-3, rel=0.01)
    assert table.thresholds == THRESHOLDS
    clinical = nerve_run.summary["clinical"]
    assert list(clinical["nerves"]) == ["greater_occipital_nerve"] and clinical["vessels"] == {}
    assert clinical["thresholds"] == table.thresholds.to_dict()
    nerve = clinical["nerves"]["greater_occipital_nerve"]
    assert nerve["centreline"] == "estimated"
    vr = VizResult.open(nerve_run.paths["h5"])
    assert vr.roles == ["muscle", "nerve"] and vr.thresholds == table.thresholds
    np.testing.assert_array_equal(nerve_centrelines(vr)["greater_occipital_nerve"],
                                  table.centrelines["greater_occipital_nerve"])
    drawn = NerveLength(vr)(result.fields["min_temperature"], THRESHOLDS.injury_c)["greater_occipital_nerve"]
    printed = nerve["lesion_length"][f"{THRESHOLDS.injury_c:g}"]
    assert printed["any_part_mm"] > 1.0  # the freeze does reach along the nerve
    assert drawn.any_part * 1e3 == pytest.approx(printed["any_part_mm"], abs=1e-9)
    assert drawn.whole * 1e3 == pytest.approx(printed["whole_section_mm"], abs=1e-9)


def test_a_result_without_roles_is_refused(nerve_run, tmp_path):
    from cryofield.viz.data import VizResult

    old = tmp_path / "old.h5"
    old.write_bytes(Path(nerve_run.paths["h5"]).read_bytes())
    with h5py.File(old, "a") as f:
        del f["roles"]
        f.attrs["format_version"] = 1
    with pytest.raises(ValueError, match="without the /roles table.*run its case again"):
        read_result(old)
    with pytest.raises(CorruptResult, match="run its case again"):  # render: exit 1, naming the file
        VizResult.open(old)


def test_the_case_schema_offers_every_role():
    from typing import get_args

    offered = get_args(TissueSpec.model_fields["role"].annotation)
    assert set(get_args(offered[0])) == set(ROLES)
