"""Planning a run: validate the case, assemble the problem, plan the timeline and bound the time step.

:func:`prepare` does everything that can fail on bad input before any output exists, including the
estimates of memory and work (:mod:`cryofield.config.resources`, :func:`estimate`, :func:`refuse`) and the
stability of the solver's settings on the mesh (:func:`stable_step`, :func:`check_solver`). Its
:class:`Plan` is what :mod:`cryofield.run.runner` runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.backends import Backend, get_backend
from cryofield.config import resources
from cryofield.config.case import Case
from cryofield.errors import InputError
from cryofield.mesh.sources import mesh_of
from cryofield.model.roles import RoleTable
from cryofield.model.schedule import build_schedule, phases
from cryofield.outcomes.inputs import ClinicalInputs, clinical_inputs
from cryofield.problem.assemble import Problem, build_problem
from cryofield.problem.steady import steady_state
from cryofield.run.driver import Timeline
from cryofield.run.guards import largest_change, physical_range
from cryofield.timestepping.control import StepControl
from cryofield.timestepping.multirate import Levels, plan_levels
from cryofield.timestepping.rkl2 import rkl2_max_dt, rkl2_stages
from cryofield.timestepping.schemes import SCHEMES
from cryofield.timestepping.stepper import Stepper


@dataclass
class Plan:
    """A validated, ready-to-run case."""

    case: Case
    problem: Problem
    timeline: Timeline
    roles: RoleTable
    dt_fe: float  # forward-Euler stability limit (s), from the Gershgorin bound
    setup_seconds: float
    _levels: Levels | None = None
    _clinical: ClinicalInputs | None = None

    def control(self) -> StepControl:
        """Step-size control for this case."""
        solver = self.case.solver
        return StepControl(scheme=solver.scheme, stable_dt=solver.safety * self.dt_fe, max_dt=solver.max_dt,
                           max_change=solver.max_change, stages=solver.stages, tolerance=solver.tolerance,
                           blow_up_change=largest_change(*physical_range(self)),
                           levels=self.levels() if SCHEMES[solver.scheme].levels else None)

    def levels(self) -> Levels:
        """The multirate levels of this case's mesh (:func:`cryofield.timestepping.multirate.plan_levels`;
        computed once)."""
        if self._levels is None:
            solver = self.case.solver
            self._levels = plan_levels(nodal_radii(self.problem, self.timeline), self.problem.mesh.tets,
                                       solver.max_dt, solver.safety, solver.multirate_cuts)
        return self._levels

    def clinical_inputs(self) -> ClinicalInputs:
        """What the clinical reading of this run needs besides its fields (built once; the result stores it)."""
        if self._clinical is None:
            mesh = self.problem.mesh
            self._clinical = clinical_inputs(self.case, self.problem.region_names,
                                             [m.liquidus for m in self.problem.materials],
                                             {s: mesh.surface_facets(s) for s in mesh.surfaces}, self.roles)
        return self._clinical

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.case.solver.precision)

    def initial_temperature(self) -> np.ndarray:
        """T at t = 0 (°C): uniform, or the basal steady state with the probes off."""
        init = self.case.initial
        if init.type == "uniform":
            return np.full(self.problem.n_nodes, init.temperature)
        return steady_state(self.problem, self.problem.boundary_state(None), self.case.blood.arterial_temperature)

    def stepper(self, backend: Backend | str, T0: np.ndarray | None = None) -> Stepper:
        """A stepper on ``backend`` at the initial state (or ``T0``), in the case's precision."""
        backend = get_backend(backend) if isinstance(backend, str) else backend
        T0 = self.initial_temperature() if T0 is None else T0
        return Stepper(backend, self.problem, self.problem.enthalpy(T0), self.control(), self.dtype)


def prepare(case: Case, force: bool = False) -> Plan:
    """Load and check the mesh, assemble the problem, plan the timeline; raise InputError on bad input.

    A run whose estimated memory or work exceeds the limits (:mod:`cryofield.config.resources`) is bad input
    too, checked before the mesh is generated and again on the mesh, unless ``force``.
    """
    t0 = time.perf_counter()
    check_output_times(case, force)
    mesh = mesh_of(case, check_size=not force)
    problem = build_problem(case, mesh)
    timeline = Timeline(phases(case.protocol), build_schedule(case.protocol, case.outputs.snapshot_interval,
                                                              case.outputs.metrics_interval))
    dt_fe = stable_step(problem, timeline)
    check_solver(case, dt_fe)
    roles = RoleTable.decide(problem.region_names, case.tissues, mesh.metadata, problem.mesh.points,
                             problem.mesh.tets, problem.elem_mat,  # the renumbered mesh elem_mat belongs to
                             case.clinical.thresholds(), {k: v * 1e-3 for k, v in case.clinical.end_organ_mm.items()})
    plan = Plan(case, problem, timeline, roles, dt_fe, time.perf_counter() - t0)
    if not force:
        refuse(estimate(plan), case, ("mesh", "solver"))
    return plan


def check_output_times(case: Case, force: bool = False) -> None:
    """Refuse output intervals so small that the run's timeline alone would not fit in memory."""
    out = case.outputs
    snapshots, outputs = resources.output_times(case.duration, len(case.protocol), out.snapshot_interval,
                                                out.metrics_interval)
    available = resources.available_memory()
    need = resources.BYTES_PER_OUTPUT * outputs
    if force or available is None or need <= available:
        return
    raise InputError(f"about {outputs:.3g} output times ({case.duration:g} s with snapshots every "
                     f"{out.snapshot_interval:g} s and metrics every {out.metrics_interval:g} s) need about "
                     f"{resources.gb(need)} of memory, but {resources.gb(available)} is available; raise the "
                     "intervals, or --force to try anyway", source=case.source, key="outputs")


def estimate(plan: Plan, out_dir: Path | None = None) -> resources.Estimate:
    """What ``plan`` will need: memory, node-applications of the operator, snapshot bytes (at least)."""
    case, n = plan.case, plan.problem.n_nodes
    snapshots, outputs = resources.output_times(case.duration, len(case.protocol), case.outputs.snapshot_interval,
                                                case.outputs.metrics_interval)
    control = plan.control()
    dt = control.dt_limit()
    scheme = SCHEMES[control.scheme]
    if scheme.levels:
        per_step = math.ceil(control.levels.work_per_step(dt))
    else:
        per_step = (control.stages or rkl2_stages(dt, control.stable_dt)) if scheme.super_steps else 1
    steps = max(case.duration / dt if dt > 0 else np.inf, float(len(plan.timeline.segments)))
    fields = len(case.outputs.fields)
    return resources.Estimate(
        nodes=n, snapshots=snapshots, outputs=outputs, steps=steps, applications_per_step=int(per_step),
        memory=resources.run_memory(n, outputs), output_bytes=snapshots * n * fields * 8.0,
        available_memory=resources.available_memory(),
        free_disk=resources.free_disk(out_dir) if out_dir is not None else None)


def refuse(est: resources.Estimate, case: Case, keys: tuple[str, ...]) -> None:
    """Raise InputError for the first limit ``est`` exceeds among those of ``keys`` (case keys)."""
    for key, message in est.problems():
        if key.split(".")[0] in keys:
            raise InputError(f"{message}; use --force to run it anyway", source=case.source, key=key)


def nodal_radii(problem: Problem, timeline: Timeline) -> np.ndarray:
    """(N,) each node's spectral-radius bound over the whole run (1/s): every model's largest h*A; 0 on nodes
    fixed in every phase (:meth:`cryofield.problem.assemble.Problem.nodal_spectral_radius`)."""
    states = [problem.boundary_state(None)] + [problem.boundary_state(p, p.start) for p in timeline.phases]
    robin = np.maximum(np.max([s.robin_coef for s in states], axis=0), problem.boundaries.stability_conductance())
    always_fixed = np.logical_and.reduce([s.fixed for s in states])
    return problem.nodal_spectral_radius(robin, always_fixed)


def stable_step(problem: Problem, timeline: Timeline) -> float:
    """Forward-Euler limit (s) over the whole run, from the largest :func:`nodal_radii`."""
    radii = nodal_radii(problem, timeline)
    rho = float(radii.max()) if len(radii) else 0.0
    return 2.0 / rho if rho > 0 else np.inf


def check_solver(case: Case, dt_fe: float) -> None:
    """Refuse settings that are unstable or impractical on this mesh."""
    solver, scheme = case.solver, SCHEMES[case.solver.scheme]
    if scheme.fixed_stages and solver.stages is not None:
        limit = rkl2_max_dt(solver.stages, solver.safety * dt_fe)
        if solver.max_dt > limit:
            raise InputError(f"unstable settings: {solver.stages} RKL2 stages are stable only up to dt = {limit:.4g} s "
                             f"on this mesh, but solver.max_dt = {solver.max_dt:g} s; raise stages or lower max_dt",
                             source=case.source, key="solver.stages")
    if scheme.levels and solver.stages is not None:
        raise InputError(f"solver.stages fixes the stage count of single-rate RKL2 steps; the {scheme.name} scheme "
                         "chooses its own at each level (remove stages, or use scheme: rkl2)", source=case.source,
                         key="solver.stages")
    if solver.multirate_cuts is not None and not scheme.levels:
        raise InputError(f"solver.multirate_cuts applies to scheme: multirate, not {solver.scheme}", source=case.source,
                         key="solver.multirate_cuts")
    if not scheme.super_steps and case.duration / (solver.safety * dt_fe) > 5e7:
        raise InputError(f"impractical settings: forward Euler needs dt <= {solver.safety * dt_fe:.3g} s on this mesh, "
                         f"{case.duration / (solver.safety * dt_fe):.3g} steps in all; use scheme: rkl2",
                         source=case.source, key="solver.scheme")
