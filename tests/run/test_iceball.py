"""Ice-ball shape metrics: width at mid active length, length along the probe, reach beyond the tip."""

from __future__ import annotations

import numpy as np
import pytest

from cryofield.config.case import parse_case
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.run.observers.iceball import IceBallRecorder

BLOCK = """
mesh: {generate: {kind: slab, size: [12, 12, 12], cells: [30, 30, 30]}, units: mm}
tissues: {tissue: {library: water}}
probes: [{name: needle, surface: xmin}]
protocol: [{kind: freeze, duration: 1}]
"""


def test_a_spherical_ice_ball_measures_its_diameter_everywhere():
    case = parse_case(BLOCK)
    problem = build_problem(case, mesh_of(case))
    tip, axis = np.array([0.006, 0.006, 0.004]), np.array([0.0, 0.0, 1.0])  # the shaft goes up from the tip
    radius, active = 0.2e-3, 3.8e-3  # the active part ends 4 mm above the tip; its middle at z = 6 mm
    problem.mesh.metadata["probes"] = {"needle": {"tip": tip.tolist(), "axis": axis.tolist(), "diameter": 2 * radius,
                                                  "active_length": active}}
    recorder = IceBallRecorder(problem, [-20.0, -60.0])
    centre = tip + 0.5 * (radius + active) * axis
    T = -50.0 + 10.0 * np.linalg.norm(problem.mesh.points - centre, axis=1) * 1e3  # -20 °C on a 3 mm sphere
    lines = recorder.lines["needle"]
    shape = lines.measure(T, -20.0)
    assert shape["width"] == pytest.approx(6.0e-3, abs=0.05e-3)
    assert shape["width_max"] - shape["width_min"] < 0.05e-3
    assert shape["beyond_tip"] == pytest.approx(3.0e-3 - 2.0e-3, abs=0.05e-3)
    offset = 1.05 * radius
    assert shape["length"] == pytest.approx(1.0e-3 + 2.0e-3 + np.sqrt(9e-6 - offset**2), abs=0.06e-3)
    warm = lines.measure(T, -60.0)  # colder than anything: no ice ball at that level
    assert warm == {"width": 0.0, "width_min": 0.0, "width_max": 0.0, "length": 0.0, "beyond_tip": 0.0}


def test_probes_without_a_pose_are_not_measured():
    case = parse_case(BLOCK)
    recorder = IceBallRecorder(build_problem(case, mesh_of(case)), [-20.0])
    assert recorder.lines == {} and recorder.largest() == {} and recorder.summary(None) is None
