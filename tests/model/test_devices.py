"""Device models (cryofield/model/boundaries: cryogen_probe, controlled_probe, warmer, vessel): each term
against a hand computation, the controller holding its set point, the records in the result, and an error
naming the key for every new case key."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from cryofield.cli import main
from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab, sphere_octant_shell
from cryofield.model import boundaries
from cryofield.model.boundaries import BoundaryState, Context, SolverView, Surface
from cryofield.model.boundaries.controlled_probe import ControlledProbe
from cryofield.model.boundaries.cryogens import CRYOGENS
from cryofield.model.boundaries.sensors import locate
from cryofield.model.boundaries.vessel import nusselt
from cryofield.model.schedule import Phase


def square() -> Surface:
    """Two triangles of a 1 mm square: corner areas (2, 1, 2, 1) x 1e-6/6 m² (as in test_boundary_models)."""
    points = np.array([[0, 0, 0], [1e-3, 0, 0], [1e-3, 1e-3, 0], [0, 1e-3, 0]], float)
    facets = np.array([[0, 1, 2], [0, 2, 3]])
    return Surface("square", np.arange(4), fem.lumped_facet_areas(points, facets, 4), facets)


AREA = np.array([2, 1, 2, 1]) * 1e-6 / 6
FREEZE = Phase(0, "freeze", 0.0, 10.0, -70.0)
THAW = Phase(1, "active_thaw", 10.0, 20.0, 20.0)
HEATED = Phase(2, "active_thaw", 20.0, 30.0, None, 0.5)
PASSIVE = Phase(3, "passive_thaw", 30.0, 40.0, None)


def model(role: str, kind: str, values: dict, surface: Surface | None = None, context: Context | None = None):
    surface = surface or square()
    return boundaries.build(role, kind, boundaries.parse_params(role, kind, values), surface, context)


def assembled(m, phase) -> BoundaryState:
    state = BoundaryState.empty(4)
    m.assemble(state, phase, 0.0 if phase is None else phase.start)
    return state


def test_cryogen_probe_terms_by_hand():
    n2o = model("probe", "cryogen", {})
    s = assembled(n2o, FREEZE)  # the cryogen's temperature, not the phase's -70
    np.testing.assert_allclose(s.robin_coef, 2.0e4 * AREA)
    np.testing.assert_allclose(s.robin_rhs, 2.0e4 * AREA * -88.5)
    s = assembled(n2o, THAW)  # gas at the thaw's 20 °C through the same film
    np.testing.assert_allclose(s.robin_rhs, 2.0e4 * AREA * 20.0)
    s = assembled(n2o, HEATED)  # a heater of 0.5 W spread by area
    np.testing.assert_allclose(s.robin_coef, 0.0)
    np.testing.assert_allclose(s.robin_rhs, 0.5 * AREA / AREA.sum())
    assert not assembled(n2o, PASSIVE).robin_coef.any() and not assembled(n2o, None).robin_rhs.any()
    argon = model("probe", "cryogen", {"cryogen": "argon", "flow_rate": 3.0})
    np.testing.assert_allclose(assembled(argon, FREEZE).robin_coef, 1.0e4 * 3.0**0.8 * AREA)
    np.testing.assert_allclose(argon.stability_conductance(), 1.0e4 * 3.0**0.8 * AREA)
    ln2 = model("probe", "cryogen", {"cryogen": "ln2", "cryogen_temperature": -190, "heat_transfer_coefficient": 800})
    np.testing.assert_allclose(assembled(ln2, FREEZE).robin_rhs, 800 * AREA * -190)
    assert CRYOGENS["ln2"].temperature == pytest.approx(-195.8)


def test_heater_power_reaches_the_fixed_and_convective_probes():
    for kind in ("fixed", "convective"):
        s = assembled(model("probe", kind, {}), HEATED)
        np.testing.assert_allclose(s.robin_rhs, 0.5 * AREA / AREA.sum())
        assert not s.fixed.any() and not s.robin_coef.any()


def view(t: float, temperature: np.ndarray) -> SolverView:
    return SolverView(t, np.empty(0), lambda nodes: np.asarray(temperature, float)[nodes])


def test_controller_law_by_hand():
    """ln u = Kp e + Ki I with conditional integration: full flow while too warm, then the law."""
    probe = model("probe", "controlled", {"sensor": {"at": "surface"}, "gains": {"proportional": 0.1, "integral": 0.2}})
    s = assembled(probe, FREEZE)
    np.testing.assert_allclose(s.robin_coef, 2.0e4 * AREA)  # a freeze starts at full flow
    probe.update(view(1.0, np.full(4, -60.0)))  # 10 K too warm: saturated, no integration
    assert probe.u == 1.0 and probe.integral == 0.0
    probe.update(view(2.0, np.full(4, -72.0)))  # 2 K too cold: I = -2 K s, ln u = -0.2 - 0.4
    assert probe.integral == pytest.approx(-2.0)
    assert probe.u == pytest.approx(np.exp(-0.6))
    np.testing.assert_allclose(assembled(probe, FREEZE).robin_coef, np.exp(-0.6) * 2.0e4 * AREA)
    r = probe.records()
    assert list(r["flow"]) == pytest.approx([1.0, np.exp(-0.6)]) and list(r["set_point_C"]) == [-70.0, -70.0]
    # cooling during the second step at the first step's flow: sum h A (T - T_c) dt
    assert r["cooling_W"][1] == pytest.approx(2.0e4 * AREA.sum() * (-72.0 + 88.5))
    probe.update(view(3.0, np.full(4, -200.0)))  # far too cold: floor of the valve, the integral held there
    held = probe.integral
    probe.update(view(4.0, np.full(4, -200.0)))
    assert probe.u == pytest.approx(ControlledProbe.MIN_FLOW) and probe.integral == held  # anti-windup


def test_cartridge_runs_down():
    probe = model("probe", "controlled", {"sensor": {"at": "surface"}, "cartridge": 1e-6})  # 0.376 mJ of N2O
    assembled(probe, FREEZE)
    probe.update(view(1.0, np.full(4, 37.0)))
    assert probe.h_max == 0.0 and probe.summary()["cartridge_left"] == 0.0


BALL_CASE = """
name: ball
mesh: {{file: ball.msh, units: mm, regions: {{tissue: 1}}, surfaces: {{probe: 1, outer: 2, symmetry: 3}}}}
tissues: {{tissue: {{library: muscle}}}}
probes: [{{name: tip, surface: probe, {probe}}}]
protocol:
{protocol}
initial: {{type: uniform, temperature: 37}}
boundaries: [{{surface: outer, type: fixed, temperature: 37}}]
outputs: {{snapshot_interval: 30, metrics_interval: 5}}
"""

STEP_PROTOCOL = """  - {kind: freeze, duration: 60, temperature: -60}
  - {kind: freeze, duration: 60, temperature: -40}
  - {kind: active_thaw, duration: 10, power: 0.05}"""


def ball_case(tmp_path, probe: str, protocol: str = STEP_PROTOCOL) -> str:
    write_mesh(sphere_octant_shell(0.5, 8.0, 0.15, 1.2, 1e-3), tmp_path / "ball.msh", units="mm")
    path = tmp_path / "ball.yaml"
    path.write_text(BALL_CASE.format(probe=probe, protocol=protocol))
    return str(path)


@pytest.mark.parametrize("cryogen", ["n2o", "ln2"])
def test_controller_holds_its_set_point_within_1_K_after_a_step_change(tmp_path, cryogen):
    """A 1 mm ball probe: set point -60 °C, then a step to -40 °C; within 1 K over each phase's second half."""
    case = ball_case(tmp_path, f"model: controlled, cryogen: {cryogen}, sensor: {{at: surface}}")
    out = tmp_path / "out"
    assert main(["run", case, "-o", str(out), "--backend", "cpu", "--no-progress", "--no-render"]) == 0
    with h5py.File(out / "ball.h5") as f:
        g = f["devices/tip"]
        r = {k: g[k][()] for k in g}
        assert g.attrs["model"] == "controlled" and json.loads(g.attrs["summary"])["cryogen"] == cryogen
    for phase, target in ((0, -60.0), (1, -40.0)):
        rows = (r["phase"] == phase) & (r["time"] >= 30.0 + 60.0 * phase)
        assert np.all(np.abs(r["sensor_C"][rows] - target) < 1.0)
        assert np.all(r["set_point_C"][r["phase"] == phase] == target)
    assert np.all((r["flow"] > 0) & (r["flow"] <= 1))
    assert r["heating_W"][r["phase"] == 2] == pytest.approx(0.05)  # the heater, open loop, in the thaw
    summary = json.loads((out / "ball.json").read_text())["devices"]["tip"]
    assert summary["settled_error_K"] < 1.0 and summary["cooling_delivered_J"] > 0
    assert summary["heating_delivered_J"] == pytest.approx(0.05 * 10, rel=1e-6)


def test_a_tissue_sensor_is_read_with_p1_weights():
    mesh = slab((4.0, 4.0, 4.0), (4, 4, 4), 1e-3)
    x = np.array([1.3e-3, 2.1e-3, 0.7e-3])
    nodes, weights = locate(mesh.points, mesh.tets, x)
    field = 3.0 + mesh.points @ np.array([1e3, -2e3, 5e2])  # linear: P1 interpolation is exact
    assert weights @ field[nodes] == pytest.approx(3.0 + x @ np.array([1e3, -2e3, 5e2]))
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="outside the mesh"):
        locate(mesh.points, mesh.tets, np.array([5e-3, 1e-3, 1e-3]), "probes.0.sensor.point")


def test_warmer_terms_and_power_limit():
    warmer = model("surface", "warmer", {"temperature": 42, "heat_transfer_coefficient": 500, "max_power": 1e-4})
    assert not assembled(warmer, None).robin_coef.any()  # off in the basal state by default
    s = assembled(warmer, FREEZE)
    np.testing.assert_allclose(s.robin_coef, 500 * AREA)
    np.testing.assert_allclose(s.robin_rhs, 500 * AREA * 42)
    full = 500 * AREA.sum() * (42 - 10.0)  # 2.67e-4 W wanted at 10 °C, more than the 1e-4 W limit
    assert warmer.update(view(1.0, np.full(4, 10.0)))  # the limit cuts in: terms changed
    np.testing.assert_allclose(assembled(warmer, FREEZE).robin_coef, 500 * AREA * 1e-4 / full)
    assert warmer.records()["power_W"][0] == pytest.approx(full)  # during the step, before the cut
    always = model("surface", "warmer", {"during": "always"})
    np.testing.assert_allclose(assembled(always, None).robin_coef, 1000 * AREA)


def test_vessel_coefficient_by_hand():
    """Occipital artery, 2.5 mm, 37.5 mL/min: laminar, Re about 95, Pr 24, Hausen over 10 mm."""
    vessel = model("surface", "vessel", {"diameter": 2.5}, context=Context("artery_wall", length_scale=1e-3))
    v = 37.5e-6 / 60 / (np.pi * 2.5e-3**2 / 4)
    re, pr = 1050 * v * 2.5e-3 / 3.5e-3, 3.5e-3 * 3617 / 0.52
    gz = re * pr * 2.5e-3 / 10e-3
    nu = 3.66 + 0.0668 * gz / (1 + 0.04 * gz ** (2 / 3))
    assert vessel.reynolds == pytest.approx(re) and vessel.prandtl == pytest.approx(pr)
    assert vessel.h == pytest.approx(nu * 0.52 / 2.5e-3)
    s = assembled(vessel, None)  # always on, the basal state too
    np.testing.assert_allclose(s.robin_coef, vessel.h * AREA)
    np.testing.assert_allclose(s.robin_rhs, vessel.h * AREA * 37.0)
    assert nusselt(100.0, 20.0, 1e-3, 1.0, "fully_developed") == 3.66
    assert nusselt(1e4, 5.0, 1e-3, 1.0, "developing") == pytest.approx(69.9, rel=1e-3)  # Gnielinski by hand
    wall = dataclasses.replace(square(), name="artery_wall")
    from_mesh = model("surface", "vessel", {}, wall, Context("artery_wall", metadata={
        "sections": {"artery": {"width": 2.0e-3}}}, length_scale=1e-3))
    assert from_mesh.diameter == pytest.approx(2.0e-3)
    with pytest.raises(InputError, match="no diameter"):
        model("surface", "vessel", {}, context=Context("wall", key="boundaries.2"))


SLAB = """
name: keys
mesh: {{generate: {{kind: slab, size: [4, 4, 4], cells: [2, 2, 2]}}, units: mm}}
tissues: {{tissue: {{library: muscle}}}}
probes: [{{name: p, surface: zmin, {probe}}}]
protocol:
  - {phase}
initial: {{type: uniform, temperature: 37}}
boundaries: [{boundary}]
"""

BAD_KEYS = [
    ("model: cryogen, cryogen: helium", "", "", "probes.0.cryogen", "'n2o', 'argon' or 'ln2'"),
    ("model: cryogen, flow_rate: 2, heat_transfer_coefficient: 100", "", "", "probes.0", "not both"),
    ("model: cryogen, flow_rate: 0", "", "", "probes.0.flow_rate", "greater than 0"),
    ("model: cryogen, cryogen_temperature: -300", "", "", "probes.0.cryogen_temperature", "greater than"),
    ("model: cryogen", "{kind: freeze, duration: 5, temperature: -70}", "", "protocol.0.temperature",
     "freezes at its cryogen's temperature"),
    ("model: controlled, sensor: {at: nose}", "", "", "probes.0.sensor.at", "'tip', 'surface' or 'point'"),
    ("model: controlled, sensor: {point: [1, 2]}", "", "", "probes.0.sensor.point", "Field required"),
    ("model: controlled, sensor: {at: point}", "", "", "probes.0.sensor", "needs its 'point'"),
    ("model: controlled, gains: {proportional: -1}", "", "", "probes.0.gains.proportional", "greater than or equal"),
    ("model: controlled, gains: {proportional: 0, integral: 0}", "", "", "probes.0.gains", "above 0"),
    ("model: controlled, gains: {derivative: 1}", "", "", "probes.0.gains.derivative", "unknown key"),
    ("model: controlled, heater_power: 0", "", "", "probes.0.heater_power", "greater than 0"),
    ("model: controlled, cartridge: -8", "", "", "probes.0.cartridge", "greater than 0"),
    ("model: controlled, sensor: {point: [40, 1, 1]}", "", "", "probes.0.sensor.point", "outside the mesh"),
    ("model: fixed", "{kind: freeze, duration: 5, power: 1}", "", "protocol.0", "only an active_thaw"),
    ("model: fixed", "{kind: active_thaw, duration: 5, power: 1, temperature: 30}", "", "protocol.0", "not both"),
    ("model: fixed", "{kind: active_thaw, duration: 5, power: 0}", "", "protocol.0.power", "greater than 0"),
    ("model: fixed", "", "{surface: zmax, type: warmer, temperature: hot}", "boundaries.0.temperature",
     "valid number"),
    ("model: fixed", "", "{surface: zmax, type: warmer, max_power: 0}", "boundaries.0.max_power", "greater than 0"),
    ("model: fixed", "", "{surface: zmax, type: warmer, during: never}", "boundaries.0.during", "'protocol' or"),
    ("model: fixed", "", "{surface: zmax, type: vessel, diameter: 2, flow_rate: 0}", "boundaries.0.flow_rate",
     "greater than 0"),
    ("model: fixed", "", "{surface: zmax, type: vessel, diameter: 2, correlation: plug}", "boundaries.0.correlation",
     "'developing' or"),
    ("model: fixed", "", "{surface: zmax, type: vessel, diameter: -2}", "boundaries.0.diameter", "greater than 0"),
    ("model: fixed", "", "{surface: zmax, type: vessel}", "boundaries.0.diameter", "no diameter"),
]


@pytest.mark.parametrize("probe, phase, boundary, key, message", BAD_KEYS)
def test_every_new_key_error_exits_2_naming_it_and_writes_nothing(tmp_path, capsys, probe, phase, boundary, key,
                                                                  message):
    path = tmp_path / "keys.yaml"
    path.write_text(SLAB.format(probe=probe, phase=phase or "{kind: freeze, duration: 5}", boundary=boundary))
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--backend", "cpu", "--no-render"]) == 2
    err = capsys.readouterr().err
    assert key in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_the_device_panels_draw_the_records(tmp_path):
    from cryofield.viz.data import VizResult
    from cryofield.viz.plots import timeseries_figure

    case = ball_case(tmp_path, "model: controlled, sensor: {at: surface}",
                     "  - {kind: freeze, duration: 20, temperature: -60}\n  - {kind: active_thaw, duration: 5}")
    out = tmp_path / "out"
    assert main(["run", case, "-o", str(out), "--backend", "cpu", "--no-progress", "--no-render"]) == 0
    vr = VizResult.open(out / "ball.h5")
    fig = timeseries_figure(vr, (800, 800))
    panels = {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}
    labels = {ln.get_label() for ln in panels["Probe controller"].get_lines()}
    assert {"tip: sensor", "tip: set point"} <= labels
    twin = [ax for ax in fig.axes if ax.get_ylabel() == "flow u"]
    def drawn(line) -> np.ndarray:  # the lines break (NaN) between phases
        y = np.asarray(line.get_ydata(), float)
        return y[np.isfinite(y)]

    series = vr.devices["tip"]["series"]
    assert np.isnan(twin[0].get_lines()[0].get_ydata()).sum() == 1  # one break: freeze | thaw
    np.testing.assert_allclose(drawn(twin[0].get_lines()[0]), series["flow"])
    heat = {ln.get_label(): ln for ln in panels["Heat through the devices"].get_lines()}
    np.testing.assert_allclose(drawn(heat["tip (controlled): drawn out"]), -series["cooling_W"])
    assert "tip (controlled): heater" in heat


def test_the_cryogen_and_vessel_films_match_their_closed_forms():
    """Steady Pennes with the film on the inner surface (docs/physics.md §7); second order in h."""
    from benchmarks.verification import robin_sphere_series, vessel_cylinder_series

    for study in (robin_sphere_series("quick"), vessel_cylinder_series("quick")):
        assert study["errors"]["L2"][-1] < 0.02  # K, root mean square on the finest mesh
        assert study["observed_order"]["L2"] > 1.8
