"""The time stepper: kernels against the assembled operator, RKL2 order and stability, steady limit."""

import numpy as np
import pytest
import scipy.linalg

from cryofield.backends import get_backend
from cryofield.config.case import parse_case
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.problem.steady import steady_state, system
from cryofield.timestepping.control import StepControl
from cryofield.timestepping.rkl2 import rkl2_coefficients, rkl2_max_dt, rkl2_stages
from cryofield.timestepping.stepper import Stepper

CASE = """
name: small
mesh:
  generate: {kind: slab, size: [6, 4, 3], cells: [6, 4, 3]}
  units: mm
tissues: {tissue: {library: muscle}}
probes: [{name: p, surface: xmin}]
protocol: [{kind: freeze, duration: 20, temperature: -60}]
boundaries:
  - {surface: xmax, type: fixed, temperature: 37}
  - {surface: zmax, type: convection, heat_transfer_coefficient: 10, temperature: 22}
"""


@pytest.fixture(scope="module")
def problem():
    case = parse_case(CASE)
    return case, build_problem(case, mesh_of(case))


def test_operator_equals_assembled_system(problem):
    """F(T) = V^-1 (b - A T) at free nodes: matrix-free kernels and scipy assembly agree."""
    _, p = problem
    be = get_backend("cpu")
    rng = np.random.default_rng(0)
    T = 37 + 5 * rng.standard_normal(p.n_nodes)  # unfrozen: f_l = 1, k(T) = k_u
    state = p.boundary_state(None)
    stepper = Stepper(be, p, p.enthalpy(T), StepControl("rkl2", 1e-3, 1.0))
    be.upload_boundaries(stepper.dp, state, np.float64)
    out = be.empty(p.n_nodes, np.float64)
    be.apply_operator(stepper.dp, be.to_device(T), out)
    A, b = system(p, state, T)
    expected = (b - A @ T) / p.lumped
    free = ~state.fixed
    np.testing.assert_allclose(out[free], expected[free], rtol=1e-10, atol=1e-9 * np.abs(expected).max())
    assert np.all(out[state.fixed] == 0)


def test_rkl2_coefficients_sum_and_stability():
    for s in (2, 5, 17, 64):
        c = rkl2_coefficients(s)
        assert np.all(np.isfinite(c[1:]))
        assert rkl2_stages(rkl2_max_dt(s, 1.0), 1.0) == s


def _rkl2_amplification(z, s):
    """Apply RKL2 to y' = λy with z = λ dt; returns y1/y0."""
    c = rkl2_coefficients(s)
    y0 = 1.0
    prev2, prev = y0, y0 + c[1, 2] * z * y0
    for j in range(2, s + 1):
        mu, nu, mut, gt = c[j]
        prev2, prev = prev, mu * prev + nu * prev2 + (1 - mu - nu) * y0 + mut * z * prev + gt * z * y0
    return prev


def test_rkl2_stable_up_to_its_limit_and_second_order():
    for s in (3, 10, 40):
        zmax = 2.0 * (s * s + s - 2) / 4  # dt_FE = 2/|λ|
        amp = [abs(_rkl2_amplification(-z, s)) for z in np.linspace(0, zmax, 400)]
        assert max(amp) <= 1.0 + 1e-12
    errs = [abs(_rkl2_amplification(-z, 8) - np.exp(-z)) for z in (0.1, 0.05, 0.025)]
    assert np.polyfit(np.log([0.1, 0.05, 0.025]), np.log(errs), 1)[0] == pytest.approx(3.0, abs=0.15)  # local error


def test_rkl2_second_order_in_time_on_diffusion(problem):
    """Linear diffusion with fixed boundaries: compare with the matrix exponential; global error ~ dt²."""
    _, p = problem
    be = get_backend("cpu")
    state = p.boundary_state(None)
    T0 = np.full(p.n_nodes, 37.0) + 3 * np.sin(p.mesh.points[:, 0] / 6e-3 * np.pi)
    T0[state.fixed] = state.fixed_temperature[state.fixed]
    A, b = system(p, state, T0)
    C = p.materials[0].heat_capacity_unfrozen
    free = ~state.fixed
    M = (A[free][:, free].toarray()) / (p.lumped[free, None] * C)
    g = (b[free] - A[free][:, state.fixed] @ T0[state.fixed]) / (p.lumped[free] * C)
    steady = np.linalg.solve(M, g)
    t_end = 5.0
    exact = steady + scipy.linalg.expm(-M * t_end) @ (T0[free] - steady)
    dt_fe = 2.0 / p.spectral_radius_bound(state.robin_coef, state.fixed)
    errors = []
    dts = (1.0, 0.5, 0.25)
    for dt in dts:
        control = StepControl("rkl2", 0.9 * dt_fe, dt, max_change=1e9)
        stepper = Stepper(be, p, p.enthalpy(T0), control)
        stepper.set_boundaries(state)
        stepper.dt = dt
        stepper.advance(t_end)
        errors.append(np.abs(stepper.temperature_host()[free] - exact).max())
    order = np.polyfit(np.log(dts), np.log(errors), 1)[0]
    assert 1.8 <= order <= 2.3, (errors, order)


def test_long_run_reaches_steady_state(problem):
    case, p = problem
    be = get_backend("cpu")
    state = p.boundary_state(case.protocol[0])
    control = StepControl("rkl2", 0.9 * 2.0 / p.spectral_radius_bound(state.robin_coef, state.fixed), 20.0)
    stepper = Stepper(be, p, p.enthalpy(np.full(p.n_nodes, 37.0)), control)
    stepper.set_boundaries(state)
    stepper.advance(4000.0)
    T_steady = steady_state(p, state, 0.0)
    np.testing.assert_allclose(stepper.temperature_host(), T_steady, atol=2e-3)


def test_float32_close_to_float64(problem):
    case, p = problem
    be = get_backend("cpu")
    state = p.boundary_state(case.protocol[0])
    out = []
    for dtype in (np.float64, np.float32):
        control = StepControl("rkl2", 0.9 * 2.0 / p.spectral_radius_bound(state.robin_coef, state.fixed), 1.0)
        stepper = Stepper(be, p, p.enthalpy(np.full(p.n_nodes, 37.0)), control, dtype=dtype)
        stepper.set_boundaries(state)
        stepper.advance(20.0)
        out.append(stepper.temperature_host())
    assert np.abs(out[0] - out[1]).max() < 0.05
