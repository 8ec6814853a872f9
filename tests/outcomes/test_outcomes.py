"""The clinical outcome (cryofield/clinical.py): injury grades and their lengths along a nerve, the durable
block, the recovery forecast, skin and vessel-wall safety, off-target frozen and threshold-damaged volumes,
on fields whose answers are known by hand; and the case's ``clinical`` keys."""

from __future__ import annotations

import numpy as np
import pytest

from cryofield.config.case import TissueSpec, parse_case
from cryofield.errors import InputError
from cryofield.mesh.generators import slab
from cryofield.model.roles import RoleTable, Thresholds
from cryofield.outcomes.clinical import ClinicalReading, clinical_summary, damage_fraction, section_extremes

#: A 10 x 2 x 2 mm block, all nerve, its centreline along x from x = 0 (proximal) to 10 mm (distal).
MESH = slab((10.0, 2.0, 2.0), (40, 4, 4), 1e-3)
X = MESH.points[:, 0] * 1e3
LINE = {"nerve": [[0.0, 1e-3, 1e-3], [10e-3, 1e-3, 1e-3]]}


def reading(thresholds: Thresholds = Thresholds(), end_organs: dict | None = None, regions: int = 1):
    elem = np.zeros(MESH.n_tets, int)
    names = ["nerve"]
    tissues = {"nerve": TissueSpec(library="nerve")}
    if regions == 2:  # the block's far half is skin, its near half the nerve
        elem = (MESH.points[MESH.tets].mean(axis=1)[:, 0] > 5e-3).astype(int)
        names, tissues = ["nerve", "skin"], tissues | {"skin": TissueSpec(library="skin")}
    table = RoleTable.decide(names, tissues, {"centerlines": LINE}, MESH.points, MESH.tets, elem, thresholds,
                             end_organs)
    return ClinicalReading(MESH.points, MESH.tets, elem, names, table, {n: -1.0 for n in names}), elem


def test_grades_and_their_lengths_along_the_nerve():
    """T = -120 + 20 x: neurotmesis to x = 1 mm, axonotmesis to 5 mm, neurapraxia (<= 10 °C) to 6.5 mm."""
    r, _ = reading(end_organs={"nerve": 20e-3})
    out = r.summary(-120.0 + 20.0 * X, time_below=np.where(X <= 5.0, 60.0 - 10.0 * X, 0.0))
    nerve = out["nerves"]["nerve"]
    g = nerve["grades"]
    assert g["neurotmesis"]["any_part_mm"] == pytest.approx(1.0, abs=1e-9)
    assert g["axonotmesis"]["any_part_mm"] == pytest.approx(4.0, abs=1e-9)
    assert g["axonotmesis"]["whole_section_mm"] == pytest.approx(4.0, abs=1e-9)
    assert g["neurapraxia"]["any_part_mm"] == pytest.approx(1.5, abs=1e-9)
    assert nerve["block_length_mm"] == pytest.approx(5.0, abs=1e-9) and nerve["durable_block"]
    assert nerve["max_time_below_injury_s"] == pytest.approx(60.0)
    assert [(s["grade"], s["from_mm"], s["to_mm"]) for s in nerve["segments"]] == [
        ("neurotmesis", 0.0, 1.0), ("axonotmesis", 1.0, 5.0), ("neurapraxia", 5.0, 6.5)]
    assert all(s["whole_section"] for s in nerve["segments"])
    # 10 mm to the distal end of the centreline plus 20 mm beyond it, at 2 and at 1 mm a day
    recovery = nerve["recovery"]
    assert recovery["distance_mm"] == pytest.approx(30.0, abs=1e-9)
    assert recovery["weeks"] == pytest.approx([30 / 2 / 7, 30 / 1 / 7])


def test_a_short_or_partial_lesion_is_no_durable_block():
    r, _ = reading(Thresholds(durable_block_mm=6.0))
    nerve = r.summary(-120.0 + 20.0 * X)["nerves"]["nerve"]
    assert not nerve["durable_block"] and nerve["recovery"]["weeks"] is None
    y = MESH.points[:, 1] * 1e3  # only half of the cross-section cold: a lesion, but no block
    half = r.summary(np.where(y < 1.0, -60.0, 20.0) - 0.0 * X)["nerves"]["nerve"]
    assert half["grades"]["axonotmesis"]["any_part_mm"] == pytest.approx(10.0, abs=1e-9)
    assert half["block_length_mm"] == 0.0 and not half["durable_block"]


def test_profiles_are_the_exact_section_extremes():
    r, _ = reading()
    y = MESH.points[:, 1] * 1e3
    T = -50.0 + 5.0 * X + 10.0 * y  # across the section from T(x, y=0) to T(x, y=2)
    profile = r.profiles(T, np.zeros(MESH.n_nodes))["nerve"]
    np.testing.assert_allclose(profile["s_mm"], np.arange(0.25, 10.0, 0.5))
    np.testing.assert_allclose(profile["coldest_C"], -50.0 + 5.0 * profile["s_mm"], atol=1e-9)
    np.testing.assert_allclose(profile["warmest_C"], -30.0 + 5.0 * profile["s_mm"], atol=1e-9)
    assert profile["grade"].tolist()[:3] == [2, 2, 2] and profile["whole_section_grade"][0] == 2
    lo, hi = section_extremes(np.array([[0.0, 2.0, 0.0, 0.0]]), np.array([[0.0, 4.0, 1.0, 3.0]]), np.array([1.0]))
    assert (lo[0], hi[0]) == (2.0, 3.5)  # the corners of the cut: midpoints of the edges from node 1


def test_skin_wall_off_target_and_damage():
    r, elem = reading(regions=2)
    T = np.where(X > 5.0, -3.0, 20.0)  # the skin half at -3 °C
    wall = np.flatnonzero(X > 9.0)
    out = r.summary(T, damage=damage_fraction(T, np.where(X > 5.0, 25.0, 0.0), Thresholds()),
                    walls={"nerve": wall})
    skin = out["skin"]
    assert skin["frostbite"] and skin["froze"] and not skin["melanocyte_damage"]  # -3: below 0 and -1, above -4
    frozen = out["off_target_frozen_mm3"]
    assert frozen["skin"] == pytest.approx(20.0 - 0.0, rel=0.06)  # about the 5 x 2 x 2 mm half (P1 at its edge)
    assert "nerve" not in frozen  # the target
    damaged = out["damage"]["damaged_mm3"]
    assert damaged["skin"] == pytest.approx(0.5 * 20.0, rel=0.06)  # 25 s of the 50 s at 0 °C: half
    assert out["damage"]["necrotic_mm3"]["skin"] == 0.0


def test_the_vessel_wall_judges_thrombosis():
    points, tets = MESH.points, MESH.tets
    elem = np.zeros(MESH.n_tets, int)
    table = RoleTable.decide(["artery"], {"artery": TissueSpec(library="blood")}, {}, points, tets, elem)
    assert clinical_summary(points, tets, elem, ["artery"], X * 0 - 30.0, table, {"artery": -1.0}) is None  # no nerve
    nerve_table = RoleTable.decide(["nerve", "artery"], {"nerve": TissueSpec(library="nerve"),
                                                         "artery": TissueSpec(library="blood")},
                                   {"centerlines": LINE}, points, tets, (MESH.points[tets].mean(axis=1)[:, 0]
                                                                         > 5e-3).astype(int))
    region = (MESH.points[tets].mean(axis=1)[:, 0] > 5e-3).astype(int)
    T = np.where(X > 9.5, -20.0, 10.0)
    wall = np.flatnonzero(np.isclose(X, 6.0))  # the wall stays warm: no thrombosis, though the lumen froze
    out = clinical_summary(points, tets, region, ["nerve", "artery"], T, nerve_table, {"nerve": -1, "artery": -1},
                           walls={"artery": wall})
    vessel = out["vessels"]["artery"]
    assert vessel["froze"] and not vessel["thrombosis_risk"] and vessel["wall_min_temperature_C"] == 10.0


def test_damage_fraction_by_hand():
    limits = Thresholds()
    np.testing.assert_allclose(damage_fraction(np.array([1.0, -1.0, -10.0, -20.0]), np.array([0.0, 10.0, 60.0, 0.0]),
                                               limits), [0.0, 0.2, 1.0, 1.0])


def test_role_table_keeps_end_organs():
    r, _ = reading(end_organs={"nerve": 0.1})
    table = r.roles
    assert RoleTable.from_json(table.to_json()).end_organs == {"nerve": 0.1}
    assert table.thresholds.regrowth_mm_per_day == (1.0, 2.0)


CASE = """
mesh: {{generate: {{kind: slab, size: [4, 4, 4], cells: [2, 2, 2]}}, units: mm}}
tissues: {{tissue: {{library: muscle}}}}
clinical: {clinical}
"""


@pytest.mark.parametrize("clinical, key, message", [
    ("{durable_block_mm: 0}", "clinical.durable_block_mm", "greater than 0"),
    ("{regrowth_mm_per_day: [2, 1]}", "clinical.regrowth_mm_per_day", "slowest, fastest"),
    ("{regrowth_mm_per_day: [0, 1]}", "clinical.regrowth_mm_per_day.0", "greater than 0"),
    ("{end_organ_mm: {gon: -5}}", "clinical.end_organ_mm.gon", "greater than or equal to 0"),
    ("{durable: 4}", "clinical.durable", "unknown key"),
])
def test_clinical_key_errors_name_the_key(clinical, key, message):
    with pytest.raises(InputError) as info:
        parse_case(CASE.format(clinical=clinical))
    assert info.value.key == key and message in info.value.message


def test_the_case_sets_the_thresholds():
    case = parse_case(CASE.format(clinical="{durable_block_mm: 6, regrowth_mm_per_day: [0.5, 3]}"))
    limits = case.clinical.thresholds()
    assert limits.durable_block_mm == 6.0 and limits.regrowth_mm_per_day == (0.5, 3.0)


RUN_CASE = """
name: rod
mesh: {file: rod.msh, units: mm, regions: {nerve: 1}, surfaces: {probe: 1, far: 2}}
tissues: {nerve: {library: nerve}}
probes: [{name: tip, surface: probe}]
protocol:
  - {kind: freeze, duration: 20, temperature: -120}
initial: {type: uniform, temperature: 37}
boundaries: [{surface: far, type: fixed, temperature: 37}]
outputs: {snapshot_interval: 10, metrics_interval: 2}
clinical: {durable_block_mm: 1, end_organ_mm: {nerve: 50}}
"""


def test_a_run_writes_the_outcome_everywhere(tmp_path):
    """A nerve rod frozen from one end: the JSON, the HDF5 profiles and fields, the printed table, the picture."""
    import json

    import h5py

    from cryofield.cli import main
    from cryofield.mesh import write_mesh
    from cryofield.viz.data import VizResult
    from cryofield.viz.plots import nerve_figure

    mesh = slab((10.0, 1.0, 1.0), (40, 2, 2), 1e-3)
    mesh.metadata = {"centerlines": {"nerve": [[0.0, 0.5e-3, 0.5e-3], [10e-3, 0.5e-3, 0.5e-3]]}}
    write_mesh(mesh, tmp_path / "rod.msh", units="mm")
    (tmp_path / "rod.yaml").write_text(RUN_CASE)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "rod.yaml"), "-o", str(out), "--backend", "cpu", "--no-progress",
                 "--no-render"]) == 0
    nerve = json.loads((out / "rod.json").read_text())["clinical"]["nerves"]["nerve"]
    g = nerve["grades"]
    assert nerve["min_temperature_C"] < -100 and g["neurotmesis"]["any_part_mm"] > 0
    assert g["axonotmesis"]["whole_section_mm"] > 0 and nerve["durable_block"]
    assert nerve["max_time_below_injury_s"] > 10 and nerve["segments"][0]["grade"] == "neurotmesis"
    weeks = nerve["recovery"]["weeks"]
    assert weeks[0] == pytest.approx(nerve["recovery"]["distance_mm"] / 2 / 7)
    assert nerve["recovery"]["distance_mm"] == pytest.approx(60.0, abs=0.3)  # from x = 0 to the end, then 50 mm
    with h5py.File(out / "rod.h5") as f:
        profile = {k: f["clinical/nerve"][k][()] for k in f["clinical/nerve"]}
        damage = f["fields/damage_fraction"][()]
        T_min = f["fields/min_temperature"][()]
    assert profile["coldest_C"][0] < -100 and profile["grade"][0] == 3 and profile["grade"][-1] == 0
    assert np.all(profile["coldest_C"] <= profile["warmest_C"] + 1e-9)
    np.testing.assert_array_equal(damage[T_min <= -20], 1.0)
    vr = VizResult.open(out / "rod.h5")
    assert vr.clinical["nerves"]["nerve"]["block_length_mm"] == pytest.approx(nerve["block_length_mm"])
    fig = nerve_figure(vr, (600, 400))
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles[0].startswith("nerve: ") and "durable block" in titles[0] and "weeks" in titles[0]
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["coldest part of the section"].get_ydata(), profile["coldest_C"])
