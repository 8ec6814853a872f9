"""Neumann two-phase planar freezing: front position against the closed form (docs/physics.md §7)."""

import numpy as np
import pytest

from cryofield.config.case import load_case
from cryofield.fem.closed_forms import neumann_lambda, planar_front_position
from cryofield.io import read_result
from cryofield.run.runner import run_case


def test_lambda_matches_physics_reference():
    lam = neumann_lambda(2.0, 0.5, 1.8e6, 3.6e6, 250e6, -88.0, -1.0, 37.0)
    assert lam == pytest.approx(0.4073, abs=2e-4)


def test_front_within_two_percent(cases_dir, tmp_path):
    case = load_case(cases_dir / "neumann_planar.yaml")
    report = run_case(case, tmp_path, backend="cpu", progress=False)
    result = read_result(report.paths["h5"])
    mat = case.tissues["tissue"].material("tissue")
    lam = neumann_lambda(mat.conductivity_frozen, mat.conductivity, mat.heat_capacity_frozen,
                         mat.heat_capacity_unfrozen, mat.latent_heat, -88.0, -1.0, 37.0)
    alpha_s = mat.conductivity_frozen / mat.heat_capacity_frozen
    for t in (60.0, 90.0):
        k = int(np.argmin(np.abs(result.snapshot_times - t)))
        assert result.snapshot_times[k] == pytest.approx(t, abs=1e-9)
        x = planar_front_position(result.points, result.snapshot(k), -1.0)
        exact = 2 * lam * np.sqrt(alpha_s * t)
        assert abs(x / exact - 1) < 0.02, (t, x, exact)
    # the probe never goes below its set temperature and nothing overshoots it
    assert result.fields["min_temperature"].min() >= -88.0 - 1e-6
