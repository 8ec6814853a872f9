"""The multirate scheme (cryofield.timestepping.multirate): its coefficients, its levels, its accuracy and work against
single-rate RKL2 on the graded spherical probe, bad settings, and CPU/CUDA agreement (simulator or GPU)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.common import GENERIC_BLOOD, input_order, temperatures_at, with_steps
from benchmarks.radial import GRADED_SPHERE_CASE, SPHERE, TIMES, equivalent_radii, graded_sphere_case
from benchmarks.verification import FREEZING_TISSUE
from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.mesh.sources import mesh_of
from cryofield.run.plan import nodal_radii, prepare
from cryofield.timestepping.multirate import levels_from_cuts, plan_levels, rkc_rows, rkc_stages


def multirate(case, cuts=None, **solver):
    return case.model_copy(update={"solver": case.solver.model_copy(
        update={"scheme": "multirate", "multirate_cuts": cuts, **solver})})


def chebyshev_amplification(s: int, z: np.ndarray) -> np.ndarray:
    """R_s(z) of the RKC recursion, run on the scalar test equation y' = lambda y (z = dt lambda)."""
    rows, _ = rkc_rows(s)
    older, previous = np.ones_like(z), 1.0 + rows[1, 2] * z
    for j in range(2, s + 1):
        mu, nu, mu_t = rows[j]
        older, previous = previous, mu * previous + nu * older + mu_t * z * previous
    return previous


@pytest.mark.parametrize("s", [1, 2, 5, 17, 60])
def test_damped_chebyshev_stages_are_stable_to_beta_s_squared_and_first_order(s):
    _, beta = rkc_rows(s)
    z = -np.linspace(0.0, beta * s * s, 4001)
    R = chebyshev_amplification(s, z)
    assert np.abs(R).max() <= 1.0 + 1e-9
    assert np.abs(R[-1]) > 0.5  # the bound is tight: just past it the polynomial leaves [-1, 1]
    small = -1e-4
    assert chebyshev_amplification(s, np.array([small]))[0] == pytest.approx(np.exp(small), abs=1e-7)
    assert rkc_stages(beta * s * s * 0.999) <= s


@pytest.fixture(scope="module")
def sphere():
    """The quick graded sphere: its case and the isotherm radii of single-rate RKL2 at the default steps."""
    case = graded_sphere_case(0.2, 2.0)
    return case, radii_of(case)


def radii_of(case):
    mesh = mesh_of(case)
    problem, temps, stats = temperatures_at(case, TIMES)
    return equivalent_radii(mesh.points, mesh.tets, input_order(problem, temps)), stats


def test_levels_hold_the_stiff_nodes_their_elements_and_a_halo(sphere):
    plan = prepare(sphere[0])
    rho, tets = nodal_radii(plan.problem, plan.timeline), plan.problem.mesh.tets
    levels = levels_from_cuts(rho, tets, (8.0, 3.0), 0.9)
    assert levels.depth == 2 and levels.cuts == (8.0, 3.0)
    assert np.all(np.diff(levels.rho) > 0)  # each level stiffer than the one below
    for k in range(1, levels.depth + 1):
        nodes, n_active = levels.nodes[k - 1], levels.active[k - 1]
        active = np.zeros(len(rho), bool)
        active[nodes[:n_active]] = True
        assert np.array_equal(active, levels.level >= k)
        assert np.array_equal(levels.elems[k - 1], np.flatnonzero(active[tets].any(axis=1)))
        assert set(nodes[n_active:]) == set(tets[levels.elems[k - 1]].ravel()) - set(nodes[:n_active])
        assert 0 < levels.weight[k] < levels.weight[k - 1]
    automatic = plan_levels(rho, tets, 2.0, 0.9)
    assert automatic.depth >= 1
    single = plan_levels(rho, tets, 2.0, 0.9, cuts=())
    assert single.depth == 0
    assert automatic.work_per_step(2.0) < 0.7 * single.work_per_step(2.0)


def test_multirate_keeps_the_isotherms_of_single_rate_at_far_less_work(sphere):
    """Same steps, the isotherm radii within 0.05 % of single-rate RKL2 (the averaging's own error), for fewer
    than 60 % of its full-mesh-equivalent operator applications."""
    case, (reference, single) = sphere
    radii, stats = radii_of(multirate(case))
    assert np.abs(radii / reference - 1.0).max() < 5e-4
    assert stats.equivalent_applications < 0.6 * single.equivalent_applications
    assert stats.operator_applications > stats.equivalent_applications  # partial applications are counted as such


def test_multirate_converges_in_time_to_the_single_rate_answer(sphere):
    """Halving every step moves the radii towards the single-rate RKL2 answer at tight steps."""
    case = sphere[0]
    tight, _ = radii_of(with_steps(case, 0.25, 1.25))
    gaps = [np.abs(radii_of(multirate(with_steps(case, dt, 5 * dt)))[0] / tight - 1.0).max() for dt in (2.0, 0.5)]
    assert gaps[1] < gaps[0] and gaps[1] < 2e-4, gaps


@pytest.mark.parametrize("solver, key", [("{scheme: multirate, stages: 20}", "solver.stages"),
                                         ("{scheme: rkl2, multirate_cuts: [8]}", "solver.multirate_cuts")])
def test_settings_the_multirate_scheme_cannot_use_are_refused(solver, key):
    text = tiny_case_text().replace("solver: {scheme: multirate}", f"solver: {solver}")
    with pytest.raises(InputError) as err:
        prepare(parse_case(text))
    assert err.value.key == key


def test_a_cut_of_one_or_less_is_refused():
    with pytest.raises(InputError, match="multirate_cuts"):
        parse_case(tiny_case_text().replace("solver: {scheme: multirate}",
                                            "solver: {scheme: multirate, multirate_cuts: [0.5]}"))


def tiny_case_text() -> str:
    """The graded sphere coarsened for the CUDA simulator, 1 s of freezing, multirate with two levels below."""
    values = {**SPHERE, "h": 0.5, "H": 4.0, "duration": 1.0}
    text = GRADED_SPHERE_CASE.format(blood=GENERIC_BLOOD, tissue=FREEZING_TISSUE, **values)
    return text + "solver: {scheme: multirate}\n"


def tiny_case():
    return multirate(parse_case(tiny_case_text()), cuts=[8.0, 3.0], max_dt=0.5)


def backend_differences() -> dict:
    """The tiny multirate freeze on the CPU and on CUDA: the largest temperature difference (K)."""
    case = tiny_case()
    temps = {b: temperatures_at(case, [0.5, 1.0], backend=b)[1] for b in ("cpu", "cuda")}
    return {"nodes": int(len(temps["cpu"][0])), "min_C": float(temps["cpu"][1].min()),
            "temperature_K": max(float(np.abs(a - b).max()) for a, b in zip(temps["cpu"], temps["cuda"]))}


def check_backends(record: dict) -> None:
    assert record["min_C"] < -20.0
    assert record["temperature_K"] <= 1e-9, record


@pytest.mark.device
def test_the_multirate_kernels_agree_on_gpu():
    check_backends(backend_differences())


@pytest.mark.nodevice
def test_the_multirate_kernels_agree_under_simulator(under_simulator):
    check_backends(under_simulator("test_multirate", "backend_differences()"))
