"""The boundary-model registry: built-in terms against hand computations, schema errors, and a model added
in this file alone that runs through ``cryofield run``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cryofield.cli import main
from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab
from cryofield.model import boundaries
from cryofield.model.boundaries import BoundaryModel, BoundaryState, Params, SolverView, Surface, register
from cryofield.model.quantities import Temperature

SLAB_CASE = """
name: ramp
mesh: {{file: block.msh, units: mm, regions: {{muscle: 1}}, surfaces: {{probe: 1, far: 2}}}}
tissues: {{muscle: {{library: muscle}}}}
probes: [{{name: tip, surface: probe, {probe}}}]
protocol:
  - {{kind: freeze, duration: 4, temperature: -60}}
  - {{kind: passive_thaw, duration: 2}}
initial: {{type: uniform, temperature: 37}}
boundaries: [{{surface: far, type: fixed, temperature: 37}}]
outputs: {{snapshot_interval: 2, metrics_interval: 0.5}}
"""


class RampProbe(BoundaryModel):
    """A probe whose surface is held at a set point falling linearly from ``start`` at ``rate`` K/s after
    the phase begins, down to the phase's temperature: a toy of a probe that takes time to cool."""

    kind, role = "ramp", "probe"

    class Params(Params):
        start: Temperature = 37.0
        rate: float = -30.0

    def set_point(self, phase, t: float) -> float | None:
        if phase is None or phase.probe_temperature is None:
            return None
        return max(phase.probe_temperature, self.params.start + self.params.rate * (t - phase.start))

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        target = self.set_point(phase, t)
        if target is not None:
            state.fixed[self.surface.nodes] = True
            state.fixed_temperature[self.surface.nodes] = target

    def update(self, view: SolverView) -> bool:
        return self.set_point(getattr(self, "phase", None), view.t) is not None


@pytest.fixture
def ramp_model(monkeypatch):
    monkeypatch.setitem(boundaries.MODELS, ("probe", "ramp"), RampProbe)
    return RampProbe


def write_slab(tmp_path, probe: str) -> str:
    write_mesh(slab((6.0, 3.0, 3.0), (6, 3, 3), 1e-3), tmp_path / "block.msh", units="mm")
    path = tmp_path / "case.yaml"
    path.write_text(SLAB_CASE.format(probe=probe))
    return str(path)


def test_a_model_defined_in_a_test_runs_through_cryofield_run(ramp_model, tmp_path):
    assert register(RampProbe) is RampProbe
    case = write_slab(tmp_path, "model: ramp, rate: -20")
    out = tmp_path / "out"
    assert main(["run", case, "-o", str(out), "--backend", "cpu", "--no-progress", "--no-render"]) == 0
    with h5py.File(out / "ramp.h5") as f:
        t = f["metrics/time"][()]
        probe = f["metrics/probe_temperature"][()][:, 0]
        stored = f["case"][()].decode()
    expected = np.where(t <= 4.0, np.maximum(-60.0, 37.0 - 20.0 * t), np.nan)
    freeze = (t > 0) & (t <= 4.0)
    np.testing.assert_allclose(probe[freeze], expected[freeze], atol=1e-9)
    assert probe[-1] > probe[t == 4.0][0]  # passive thaw: the probe warms again
    assert "model: ramp" in stored and "start: 37.0" in stored  # the stored case has the model's defaults
    summary = json.loads((out / "ramp.json").read_text())
    assert summary["probes"]["tip"]["min_temperature_C"] == pytest.approx(-43.0, abs=1e-9)


def test_a_model_key_error_names_the_key_and_writes_nothing(ramp_model, tmp_path, capsys):
    case = write_slab(tmp_path, "model: ramp, rate: fast")
    assert main(["run", case, "-o", str(tmp_path / "out"), "--backend", "cpu", "--no-render"]) == 2
    assert "probes.0.rate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("probe, key, message", [
    ("model: nope", "probes.0.model", "unknown probe model 'nope'"),
    ("model: convective, heat_transfer_coefficient: 0", "probes.0.heat_transfer_coefficient", "greater than 0"),
    ("model: fixed, heat_transfer_coefficient: 10", "probes.0.heat_transfer_coefficient", "unknown key"),
])
def test_probe_model_schema_errors(probe, key, message):
    text = SLAB_CASE.format(probe=probe)
    with pytest.raises(InputError) as info:
        parse_case(text)
    assert info.value.key == key and message in info.value.message


@pytest.mark.parametrize("boundary, key, message", [
    ("{surface: far, type: fixed}", "boundaries.0.temperature", "Field required"),
    ("{surface: far, type: flux, heat_flux: 10, temperature: 3}", "boundaries.0.temperature", "unknown key"),
    ("{surface: far, type: radiant}", "boundaries.0.type", "unknown surface model 'radiant'"),
])
def test_surface_model_schema_errors(boundary, key, message):
    text = SLAB_CASE.format(probe="model: fixed").replace("[{surface: far, type: fixed, temperature: 37}]",
                                                          f"[{boundary}]")
    with pytest.raises(InputError) as info:
        parse_case(text)
    assert info.value.key == key and message in info.value.message


def unit_square_surface() -> tuple[Surface, np.ndarray]:
    """Two triangles of a 1 mm square: each corner's lumped area by hand is (1e-6 m²) / 2 / 3 per triangle."""
    points = np.array([[0, 0, 0], [1e-3, 0, 0], [1e-3, 1e-3, 0], [0, 1e-3, 0]], float)
    facets = np.array([[0, 1, 2], [0, 2, 3]])
    area = fem.lumped_facet_areas(points, facets, 4)
    np.testing.assert_allclose(area, np.array([2, 1, 2, 1]) * 1e-6 / 6)
    return Surface("square", np.arange(4), area, facets), area


def test_builtin_terms_against_a_hand_computation():
    surface, area = unit_square_surface()
    convection = boundaries.build("surface", "convection",
                                  boundaries.parse_params("surface", "convection", {"heat_transfer_coefficient": 10,
                                                                                    "temperature": 20}), surface)
    flux = boundaries.build("surface", "flux", boundaries.parse_params("surface", "flux", {"heat_flux": -500}),
                            surface)
    probe = boundaries.build("probe", "convective", boundaries.parse_params("probe", "convective", {}), surface)
    state = BoundaryState.empty(4)
    for model in (convection, flux):
        model.assemble(state, None, 0.0)
    probe.assemble(state, None, 0.0)  # the basal state: probes off
    np.testing.assert_allclose(state.robin_coef, 10 * area)
    np.testing.assert_allclose(state.robin_rhs, 10 * area * 20 - 500 * area)

    class Freeze:
        probe_temperature, start = -80.0, 0.0

    probe.assemble(state, Freeze, 0.0)
    np.testing.assert_allclose(state.robin_coef, 10 * area + 3000 * area)
    np.testing.assert_allclose(state.robin_rhs, 200 * area - 500 * area + 3000 * area * -80)
    np.testing.assert_allclose(boundaries.BoundarySet([convection, flux, probe], 4).stability_conductance(),
                               3010 * area)
