"""The local error control of the step (StepControl.tolerance): its estimate on known trajectories, the kink
rule, that a tighter tolerance gives a smaller time error on the graded spherical probe, that steps grow
past the old cap as the front slows, and bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import input_order, temperatures_at, with_steps
from benchmarks.radial import TIMES, equivalent_radii, graded_sphere_case
from cryofield.backends import get_backend
from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.timestepping.control import error_weights

SLAB = """
name: slab
mesh:
  generate: {kind: slab, size: [3, 2, 2], cells: [3, 2, 2]}
  units: mm
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol: [{kind: freeze, duration: 1.0, temperature: -70}]
initial: {type: uniform, temperature: 37}
"""


def estimate(T_of_t, times, solidus_straddled=False):
    """The CPU backend's local error of a trajectory T_of_t(t) (every node the same) sampled at ``times``."""
    case = parse_case(SLAB)
    problem = build_problem(case, mesh_of(case))
    be = get_backend("cpu")
    dp = be.load(problem, np.float64)
    n = problem.n_nodes
    fields = [be.to_device(np.full(n, T_of_t(t))) for t in times]
    older, prev, now, new = fields
    counts = np.array([1], np.int32)  # stage 1 (odd) wrote the step's temperature: T_odd = new
    return float(be.local_error(dp, older, prev, now, new, now, counts, error_weights(times)[None, :])[0])


def test_estimate_is_dt_cubed_third_derivative_over_six_on_any_steps():
    times = (0.0, 0.3, 0.5, 1.2)  # uneven steps; the last one is dt = 0.7
    cubic = estimate(lambda t: -60.0 + 0.5 * t ** 3, times)  # T''' = 3: dt³ T''' / 6 = 0.7³ / 2
    assert cubic == pytest.approx(0.7 ** 3 / 2, rel=1e-9)
    assert estimate(lambda t: -60.0 + 4.0 * t - 3.0 * t ** 2, times) == pytest.approx(0.0, abs=1e-9)  # quadratic


def test_nodes_crossing_solidus_or_liquidus_are_left_out():
    times = (0.0, 1.0, 2.0, 3.0)
    muscle_like = parse_case(SLAB)
    problem = build_problem(muscle_like, mesh_of(muscle_like))
    solidus = float(problem.materials[0].solidus)
    crossing = estimate(lambda t: solidus + 1.0 - t ** 3, times)  # passes the solidus in the window
    assert crossing == 0.0
    away = estimate(lambda t: solidus - 5.0 - t ** 3, times)  # frozen throughout: the cubic counts
    assert away == pytest.approx(1.0, rel=1e-9)


def radii(case):
    mesh = mesh_of(case)
    problem, temps, stats = temperatures_at(case, TIMES)
    return equivalent_radii(mesh.points, mesh.tets, input_order(problem, temps)), stats


def with_tolerance(case, tolerance, max_dt, max_change, scheme="rkl2"):
    case = with_steps(case, max_dt, max_change)
    return case.model_copy(update={"solver": case.solver.model_copy(update={"tolerance": tolerance,
                                                                              "scheme": scheme})})


@pytest.fixture(scope="module")
def sphere():
    """The quick graded sphere and its isotherm radii at tight steps (the time error's reference)."""
    case = graded_sphere_case(0.2, 2.0)
    reference, _ = radii(with_tolerance(case, None, 0.25, 1.25))
    return case, reference


@pytest.mark.parametrize("scheme", ["rkl2", "multirate"])
def test_tighter_tolerance_gives_smaller_time_error_and_steps_grow_past_the_old_cap(sphere, scheme):
    case, reference = sphere
    errors, steps = [], []
    for tolerance in (8.0, 0.5):  # max_change 30 K and max_dt 10 s: the tolerance governs
        r, stats = radii(with_tolerance(case, tolerance, 10.0, 30.0, scheme))
        errors.append(np.abs(r / reference - 1).max())
        steps.append(stats.steps)
    assert errors[1] < 0.6 * errors[0], errors
    assert steps[1] > 2 * steps[0]
    assert errors[0] < 1e-3  # even the loose tolerance keeps the time error below 0.1 %
    # the same tolerance with the old 2 s cap takes more steps: the estimate lets late steps grow past it
    _, capped = radii(with_tolerance(case, 8.0, 2.0, 30.0, scheme))
    assert capped.steps > steps[0] + 10


def test_a_tolerance_does_not_loosen_the_default_steps(sphere):
    case, reference = sphere
    with_control, _ = radii(with_tolerance(case, 3.0, 2.0, 10.0))
    without, _ = radii(case)  # the default: no tolerance
    assert np.abs(with_control / reference - 1).max() <= np.abs(without / reference - 1).max() + 1e-5


@pytest.mark.parametrize("value", ["0", "-1", "'three'"])
def test_bad_tolerance_is_refused_naming_the_key(value):
    with pytest.raises(InputError, match="solver.tolerance"):
        parse_case(SLAB + f"solver: {{tolerance: {value}}}\n")


def test_the_tolerance_is_off_by_default_and_set_in_the_case():
    assert parse_case(SLAB).solver.tolerance is None
    assert parse_case(SLAB + "solver: {tolerance: 8}\n").solver.tolerance == 8.0
