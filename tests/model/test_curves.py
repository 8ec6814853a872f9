"""Boundary values as tables in time: probe set points, heater power, surface temperatures, coefficients, fluxes."""

from __future__ import annotations

import numpy as np
import pytest

from cryofield.config.case import case_to_yaml, parse_case
from cryofield.errors import InputError
from cryofield.model.curves import Curve
from cryofield.run.driver import Observer, drive
from cryofield.run.guards import physical_range
from cryofield.run.plan import prepare

CASE = """
mesh: {generate: {kind: slab, size: [4, 3, 3], cells: [6, 3, 3]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol:
  - {kind: freeze, duration: 6, temperature: {table: [[0, 20], [2, -40], [5, -85]]}}
  - {kind: passive_thaw, duration: 2}
initial: {type: uniform, temperature: 37}
boundaries:
  - {surface: xmax, type: fixed, temperature: {table: [[0, 37], [8, 30]], time: absolute}}
  - {surface: zmax, type: convection, heat_transfer_coefficient: {table: [[0, 10], [4, 50]]}, temperature: 22}
outputs: {snapshot_interval: 1, metrics_interval: 0.5}
solver: {max_dt: 0.25}
"""
PROBE_CURVE = Curve(table=[[0, 20], [2, -40], [5, -85]])


class ProbeRecorder(Observer):
    def __init__(self):
        self.rows = []

    def at_output(self, run, segment):
        T = run.temperature()
        far = T[run.problem.mesh.surface_nodes("xmax")]
        self.rows.append((segment.end, T[run.problem.probes[0].nodes].mean(), far))


def test_a_freeze_follows_its_table_even_above_zero_and_surfaces_follow_theirs():
    plan = prepare(parse_case(CASE))
    recorder = ProbeRecorder()
    drive(plan.timeline, plan.stepper("cpu"), [recorder])
    freeze = [(t, probe) for t, probe, _ in recorder.rows if 0 < t <= 6]
    assert len(freeze) == 12
    for t, probe in freeze:  # a held probe is set to its table's value at the end of every step
        assert probe == pytest.approx(PROBE_CURVE.at(t), abs=1e-9), t
    for t, _, far in recorder.rows[1:]:
        assert np.allclose(far, 37 - 7 * t / 8, atol=1e-9)  # absolute time, across both phases
    assert freeze[0][1] > 0  # the probe starts warm: a freeze set point above 0 °C from a table


def test_coefficients_and_the_physical_range_take_every_row():
    plan = prepare(parse_case(CASE))
    problem, phase = plan.problem, plan.timeline.phases[0]
    zmax = problem.mesh.surface_nodes("zmax")
    xmin = set(problem.probes[0].nodes.tolist())
    only_zmax = np.array([n for n in zmax if n not in xmin and n not in set(problem.mesh.surface_nodes("xmax"))])
    h_of = [problem.boundary_state(phase, t).robin_coef[only_zmax].sum() for t in (0.0, 2.0, 4.0, 6.0)]
    assert h_of[1] / h_of[0] == pytest.approx(30 / 10) and h_of[2] / h_of[0] == pytest.approx(5.0)
    assert h_of[3] == pytest.approx(h_of[2])  # constant after the last row
    low, high = physical_range(plan)
    assert low == pytest.approx(-85 - 25) and high == pytest.approx(37 + 25)


def test_a_case_with_tables_survives_its_stored_yaml():
    case = parse_case(CASE)
    again = parse_case(case_to_yaml(case))
    assert again.protocol[0].temperature == case.protocol[0].temperature
    assert isinstance(again.protocol[0].temperature, Curve)


@pytest.mark.parametrize("bad, key, words", [
    ("{table: [[0, 20], [2, -40], [1, -85]]}", "protocol.0.temperature", "must increase"),
    ("{table: [[0, 20], [2, -300]]}", "protocol.0.temperature", "row 1"),
    ("{table: [[0, 20]], time: sometimes}", "protocol.0.temperature", "phase"),
    ("{table: [[0, 20]], units: C}", "protocol.0.temperature", "units"),
    ("{table: [[-1, 20]]}", "protocol.0.temperature", "greater than or equal to 0"),
])
def test_bad_tables_are_refused_naming_the_key(bad, key, words):
    text = CASE.replace("{table: [[0, 20], [2, -40], [5, -85]]}", bad)
    with pytest.raises(InputError) as err:
        parse_case(text)
    assert key in str(err.value) and words in str(err.value)


def test_a_bad_row_of_a_model_key_is_named():
    text = CASE.replace("heat_transfer_coefficient: {table: [[0, 10], [4, 50]]}",
                        "heat_transfer_coefficient: {table: [[0, 10], [4, -5]]}")
    with pytest.raises(InputError) as err:
        parse_case(text)
    assert "boundaries.1.heat_transfer_coefficient" in str(err.value) and "row 1" in str(err.value)
    assert "curve-" not in str(err.value)


def test_a_heater_power_table_and_a_flux_table():
    text = CASE.replace("  - {kind: passive_thaw, duration: 2}",
                        "  - {kind: active_thaw, duration: 2, power: {table: [[0, 0.5], [2, 2.0]]}}")
    text = text.replace("type: convection, heat_transfer_coefficient: {table: [[0, 10], [4, 50]]}, temperature: 22",
                        "type: flux, heat_flux: {table: [[0, 0], [8, 500]], time: absolute}")
    plan = prepare(parse_case(text))
    problem, thaw = plan.problem, plan.timeline.phases[1]
    zmax = set(problem.mesh.surface_nodes("zmax").tolist())
    probe = np.array([n for n in problem.probes[0].nodes if n not in zmax])  # away from the flux surface
    heat = [problem.boundary_state(thaw, t).robin_rhs[probe].sum() for t in (6.0, 7.0, 8.0)]
    assert heat[0] > 0 and heat[1] / heat[0] == pytest.approx(1.25 / 0.5) and heat[2] / heat[0] == pytest.approx(4.0)
    flux = np.array(sorted(zmax - set(problem.probes[0].nodes.tolist()) - set(problem.mesh.surface_nodes("xmax"))))
    q = [problem.boundary_state(thaw, t).robin_rhs[flux].sum() for t in (6.0, 8.0)]
    assert q[0] / q[1] == pytest.approx(375 / 500)
