"""Physical sanity of a running solution: the range a run's temperatures can reach, and what to say when
they leave it (:class:`cryofield.timestepping.control.BlowUp` in a step,
:class:`cryofield.run.observers.range_guard.OutOfRange` at an output time)."""

from __future__ import annotations

import math

import numpy as np

from cryofield.errors import RunFailed
from cryofield.model.curves import bounds
from cryofield.run.observers.range_guard import OutOfRange
from cryofield.timestepping.control import BlowUp
from cryofield.timestepping.schemes import SCHEMES

#: Kelvin allowed beyond the coldest and warmest temperature a run imposes (metabolic heat above the
#: arterial temperature, overshoot of a step at the ice front).
MARGIN_K = 25.0


def physical_range(plan) -> tuple[float, float]:
    """The lowest and highest temperature (°C) the run can reach: its boundaries, probes, blood and initial state.

    Temperatures imposed anywhere (held surfaces, the ambient of every Robin surface, each phase's probe set
    point, the arterial blood, a uniform initial state) bound the solution, with :data:`MARGIN_K` either side.
    A surface that draws heat out at a fixed flux removes the lower bound (absolute zero); one that puts heat in,
    or a tissue with metabolic heat but no perfusion, removes the upper bound.
    """
    case, problem = plan.case, plan.problem
    temps = [case.blood.arterial_temperature]
    if case.initial.type == "uniform":
        temps.append(case.initial.temperature)
    states = [problem.boundary_state(None)] + [problem.boundary_state(p, t) for p, t in sample_times(plan)]
    temps += [v for p in plan.timeline.phases if p.probe_temperature is not None for v in bounds(p.probe_temperature)]
    flux_out = flux_in = False
    for state in states:
        temps += state.fixed_temperature[state.fixed].tolist()
        robin = state.robin_coef > 0
        temps += (state.robin_rhs[robin] / state.robin_coef[robin]).tolist()  # ambient (with any flux) of Robin nodes
        loose = ~robin & ~state.fixed
        flux_out |= bool((state.robin_rhs[loose] < 0).any())
        flux_in |= bool((state.robin_rhs[loose] > 0).any())
    heated = any(m.perfusion == 0 and m.metabolic_heat > 0 for m in problem.materials)
    low = -273.15 if flux_out else max(-273.15, min(temps) - MARGIN_K)
    high = math.inf if (flux_in or heated) else max(temps) + MARGIN_K
    return low, high


def sample_times(plan) -> list[tuple]:
    """(phase, t) pairs at which every value given as a table takes each of its rows (and each phase's start):
    a piecewise-linear value is extreme at a row, so these bound what the boundaries impose."""
    curves = plan.problem.boundaries.curves()
    out = []
    for p in plan.timeline.phases:
        times = {p.start}
        for c in curves:
            times |= {p.start + r if c.time == "phase" else r for r, _ in c.table}
        out += [(p, t) for t in sorted(times) if p.start <= t <= p.end]
    return out


def largest_change(low: float, high: float) -> float:
    """The most a node can change in one step (K): the whole physical span, or 1000 K when it is unbounded."""
    return high - low if math.isfinite(high - low) else 1000.0


def explain(plan, exc: BlowUp | OutOfRange) -> RunFailed:
    """A :class:`RunFailed` that says when, where (node and region) and the likely cause."""
    problem = plan.problem
    region = problem.region_names[int(problem.node_mat[exc.node])]
    point = np.round(problem.mesh.points[exc.node] * 1e3, 3).tolist()
    solver = plan.case.solver
    causes = ("unstable settings (solver.scheme, solver.stages or solver.safety) or a property in the wrong units "
              f"(tissues.{region}: conductivity in W/m/K, heat capacities in J/m³/K, perfusion in 1/s)")
    if not SCHEMES[solver.scheme].super_steps:
        causes = "forward Euler past its stability limit (use scheme: rkl2), or " + causes
    return RunFailed(f"{exc}; node {exc.node} is in region '{region}' at {point} mm; likely cause: {causes}")
