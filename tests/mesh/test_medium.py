"""probe_in_medium: needles in a gel cylinder or block, graded, tagged, cached, quarter or full symmetry."""

from __future__ import annotations

import numpy as np
import pytest

from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.mesh.sources import estimated_nodes, mesh_of
from cryofield.run.plan import prepare

CASE = """
mesh:
  generate:
    kind: probe_in_medium
    shape: cylinder
    radius: 8
    height: 16
    symmetry: SYMMETRY
    needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 5}]
    size_at_probe: 0.25
    size_far: 2.0
    grading: 6
  units: mm
tissues: {medium: {library: agar}}
probes: [{name: probe, surface: probe_active}]
protocol: [{kind: freeze, duration: 20, temperature: {table: [[0, 0], [5, -120], [20, -150]]}}]
initial: {type: uniform, temperature: 22}
boundaries: [{surface: side, type: fixed, temperature: 22}]
outputs: {snapshot_interval: 10, metrics_interval: 5, isotherms: [0, -20]}
solver: {max_dt: 1.0}
"""


@pytest.mark.parametrize("symmetry, fraction", [("quarter", 0.25), ("full", 1.0)])
def test_a_needle_in_agar_is_meshed_tagged_and_graded(symmetry, fraction):
    case = parse_case(CASE.replace("SYMMETRY", symmetry))
    mesh = mesh_of(case)
    expected = {"probe_active", "probe_shaft", "top", "bottom", "side"} | ({"symmetry"} if symmetry == "quarter"
                                                                           else set())
    assert set(mesh.surfaces) == expected and set(mesh.regions) == {"medium"}
    r, L, tip = 0.75e-3, 6e-3, 5e-3
    needle = np.pi * r**2 * (16e-3 - tip - r) + 2 / 3 * np.pi * r**3  # the hole below the top
    volume = abs(np.linalg.det(mesh.points[mesh.tets[:, 1:]] - mesh.points[mesh.tets[:, :1]])).sum() / 6
    assert volume == pytest.approx(fraction * (np.pi * 8e-3**2 * 16e-3 - needle), rel=0.01)
    active = mesh.points[mesh.surface_nodes("probe_active")]
    assert active[:, 2].min() == pytest.approx(tip, abs=1e-5) and active[:, 2].max() == pytest.approx(tip + r + L,
                                                                                                      abs=1e-5)
    edges = np.linalg.norm(mesh.points[mesh.tets[:, 1]] - mesh.points[mesh.tets[:, 0]], axis=1)
    near = np.linalg.norm(mesh.points[mesh.tets[:, 0], :2], axis=1) < 1.2e-3
    assert np.median(edges[near]) < 0.5e-3 < np.median(edges[~near])  # graded from the needle
    pose = mesh.metadata["probes"]["probe"]
    assert pose["tip"] == pytest.approx([0, 0, tip]) and pose["diameter"] == pytest.approx(1.5e-3)
    assert 0.3 < mesh.n_nodes / estimated_nodes(case.mesh) < 3.0


def test_the_ice_ball_of_a_quarter_mesh_is_measured_whole():
    from cryofield.run.driver import drive
    from cryofield.run.observers.iceball import IceBallRecorder

    plan = prepare(parse_case(CASE.replace("SYMMETRY", "quarter")))
    recorder = IceBallRecorder(plan.problem, [0.0, -20.0])
    drive(plan.timeline, plan.stepper("cpu"), [recorder])
    shape = recorder.arrays()["probe"]
    width, length, beyond = shape["width_mm"][-1], shape["length_mm"][-1], shape["beyond_tip_mm"][-1]
    assert 1.5 < width[1] < width[0] < 16  # wider than the needle, the 0 °C front outside the -20 °C one
    assert length[0] > 6.75 and beyond[0] > 0  # longer than the active part, past the tip
    assert np.all(np.diff(shape["width_mm"][:, 0]) >= -0.05)  # the ice ball grows


@pytest.mark.parametrize("change, key", [
    ("needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 5}]",
     "needles: [{name: probe, diameter: 1.5, gauge: 18G, active_length: 6, tip: 5}]"),
    ("needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 5}]",
     "needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 5, position: [2, 0]}]"),
    ("needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 5}]",
     "needles: [{name: probe, diameter: 1.5, active_length: 6, tip: 17}]"),
])
def test_bad_needles_are_refused_naming_the_key(change, key):
    text = CASE.replace("SYMMETRY", "quarter").replace(change, key)
    with pytest.raises(InputError, match="mesh.generate.needles|mesh.generate"):
        parse_case(text)
