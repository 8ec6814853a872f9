"""One run of a case: prepare (validate everything, plan the timeline), drive it, write the result set.

:func:`prepare` does everything that can fail on bad input before any output exists; :func:`execute`
drives the stepper with the run's observers (:mod:`cryofield.observers`) and writes ``NAME.h5``,
``NAME.xdmf`` and ``NAME.json``; :func:`summarize` is the JSON summary.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .backends import Backend, get_backend
from .case import Case, case_to_yaml
from .clinical import clinical_summary
from .driver import RunState, Timeline, drive
from .errors import InputError
from .io.results import ResultWriter, result_paths
from .io.xdmf import write_xdmf
from .mesh.sources import mesh_of
from .observers import DoseTracker, MetricsRecorder, ProgressBar, SnapshotWriter
from .problem import Problem, build_problem
from .roles import RoleTable
from .schedule import build_schedule, phases
from .steady import steady_state
from .stepper import StepControl, Stepper, rkl2_max_dt


def threshold_label(level: float) -> str:
    """Dataset-friendly name of a temperature threshold: -20 -> ``m20C``."""
    return f"{'m' if level < 0 else 'p'}{abs(level):g}C"


@dataclass
class Plan:
    """A validated, ready-to-run case."""

    case: Case
    problem: Problem
    timeline: Timeline
    roles: RoleTable
    dt_fe: float  # forward-Euler stability limit (s), from the Gershgorin bound
    setup_seconds: float

    def control(self) -> StepControl:
        """Step-size control for this case."""
        solver = self.case.solver
        return StepControl(scheme=solver.scheme, stable_dt=solver.safety * self.dt_fe, max_dt=solver.max_dt,
                           max_change=solver.max_change, stages=solver.stages)

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


def prepare(case: Case) -> Plan:
    """Load and check the mesh, assemble the problem, plan the timeline; raise InputError on bad input."""
    t0 = time.perf_counter()
    mesh = mesh_of(case)
    problem = build_problem(case, mesh)
    timeline = Timeline(phases(case.protocol), build_schedule(case.protocol, case.outputs.snapshot_interval,
                                                              case.outputs.metrics_interval))
    dt_fe = stable_step(problem, timeline)
    check_solver(case, dt_fe)
    roles = RoleTable.decide(problem.region_names, case.tissues, mesh.metadata, problem.mesh.points,
                             problem.mesh.tets, problem.elem_mat)  # the renumbered mesh elem_mat belongs to
    return Plan(case, problem, timeline, roles, dt_fe, time.perf_counter() - t0)


def stable_step(problem: Problem, timeline: Timeline) -> float:
    """Forward-Euler limit (s) over the whole run: every model's largest h*A; nodes fixed in every phase excluded."""
    states = [problem.boundary_state(None)] + [problem.boundary_state(p, p.start) for p in timeline.phases]
    robin = np.maximum(np.max([s.robin_coef for s in states], axis=0), problem.boundaries.stability_conductance())
    always_fixed = np.logical_and.reduce([s.fixed for s in states])
    rho = problem.spectral_radius_bound(robin, always_fixed)
    return 2.0 / rho if rho > 0 else np.inf


def check_solver(case: Case, dt_fe: float) -> None:
    """Refuse settings that are unstable or impractical on this mesh."""
    solver = case.solver
    if solver.scheme == "rkl2" and solver.stages is not None:
        limit = rkl2_max_dt(solver.stages, solver.safety * dt_fe)
        if solver.max_dt > limit:
            raise InputError(f"unstable settings: {solver.stages} RKL2 stages are stable only up to dt = {limit:.4g} s "
                             f"on this mesh, but solver.max_dt = {solver.max_dt:g} s; raise stages or lower max_dt",
                             source=case.source, key="solver.stages")
    if solver.scheme == "euler" and case.duration / (solver.safety * dt_fe) > 5e7:
        raise InputError(f"impractical settings: forward Euler needs dt <= {solver.safety * dt_fe:.3g} s on this mesh, "
                         f"{case.duration / (solver.safety * dt_fe):.3g} steps in all; use scheme: rkl2",
                         source=case.source, key="solver.scheme")


def check_output_dir(out_dir: Path) -> None:
    """Refuse an output location that cannot be written, before any computation."""
    probe = out_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output directory is not writable: {out_dir}", key="-o/--output")


@dataclass
class RunReport:
    paths: dict[str, Path]
    summary: dict
    notes: list[str] = field(default_factory=list)


def execute(plan: Plan, backend: Backend, out_dir: Path, progress: bool = True) -> RunReport:
    """Run ``plan`` on ``backend`` and write the result set into ``out_dir`` (the h5 last renamed into place)."""
    case, problem = plan.case, plan.problem
    paths = result_paths(out_dir, case.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = ResultWriter(paths["h5"], result_attributes(case, backend))
    try:
        write_setup(writer, plan)
        timings = {"setup_s": plan.setup_seconds}
        t0 = time.perf_counter()
        stepper = plan.stepper(backend)
        timings["basal_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stepper.warm_up()
        timings["compile_s"] = time.perf_counter() - t0
        dose = DoseTracker(case.outputs.dose_thresholds)
        metrics = MetricsRecorder(problem, case.outputs.isotherms)
        observers = [dose, metrics, SnapshotWriter(writer, case.outputs.fields)]
        if progress and plan.timeline.end > 0:
            observers.append(ProgressBar())
        run = drive(plan.timeline, stepper, observers)
        timings |= run.timings
        fields = write_outcome(writer, plan, run, dose, metrics, timings)
        summary = summarize(plan, backend, run, fields, metrics.arrays(), timings)
        writer.finish({"dof_steps_per_s": summary["throughput"]["dof_steps_per_s"]})
    except BaseException:
        writer.abort()
        raise
    write_xdmf(paths["h5"], paths["xdmf"])
    _atomic_write(paths["json"], json.dumps(summary, indent=2))
    return RunReport(paths, summary, list(problem.mesh.notes))


def result_attributes(case: Case, backend: Backend) -> dict:
    """Root attributes of the result: what ran, where and how."""
    return {"cryofield_version": __version__, "case_name": case.name, "backend": backend.name,
            "device": backend.device_name, "precision": case.solver.precision, "scheme": case.solver.scheme,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_setup(writer: ResultWriter, plan: Plan) -> None:
    """The case (validated and as written), the mesh, the roles and the protocol table."""
    case, problem, mesh = plan.case, plan.problem, plan.problem.mesh
    writer.write_text("case", case_to_yaml(case))
    writer.write_text("case_source", Path(case.source).read_text() if Path(case.source).is_file() else "")
    writer.write_mesh(mesh.points, mesh.tets, problem.elem_mat, problem.region_names,
                      {s: mesh.surface_facets(s) for s in mesh.surfaces},
                      {p.name: p.nodes for p in problem.probes}, problem.original_index, mesh.metadata)
    writer.write_roles(plan.roles)
    table = plan.timeline.phases
    writer.write_arrays("protocol", {
        "kind": np.array([p.kind for p in table], dtype="S16"), "start": np.array([p.start for p in table]),
        "end": np.array([p.end for p in table]),
        "probe_temperature": np.array([np.nan if p.probe_temperature is None else p.probe_temperature
                                       for p in table], float)})


def write_outcome(writer: ResultWriter, plan: Plan, run: RunState, dose: DoseTracker, metrics: MetricsRecorder,
                  timings: dict) -> dict[str, np.ndarray]:
    """Per-node dose fields, the metric time series and the timings; returns the dose fields."""
    case, problem = plan.case, plan.problem
    below = dose.times_below(run)
    fields = {"min_temperature": dose.min_temperature(run)}
    for k, level in enumerate(case.outputs.dose_thresholds):
        fields[f"time_below_{threshold_label(level)}"] = below[k]
    writer.write_arrays("fields", fields)
    writer.write_arrays("metrics", metrics.arrays(), {
        "levels": np.array(case.outputs.isotherms, float), "regions": np.array(problem.region_names, dtype="S64"),
        "probes": np.array([p.name for p in problem.probes], dtype="S64")})
    stats = run.stepper.stats
    writer.write_arrays("timings", {}, {k: float(v) for k, v in timings.items()}
                        | {"steps": stats.steps, "operator_applications": stats.operator_applications})
    return fields


def summarize(plan: Plan, backend: Backend, run: RunState, fields: dict[str, np.ndarray],
              metrics: dict[str, np.ndarray], timings: dict) -> dict:
    """The run's JSON summary: what ran, how fast, and per region the coldest and the frozen volumes."""
    case, problem = plan.case, plan.problem
    vol, levels = metrics["volume_below"], case.outputs.isotherms  # vol: (M, L, R)
    regions = {}
    for r, name in enumerate(problem.region_names):
        nodes = np.unique(problem.mesh.tets[problem.elem_mat == r])
        regions[name] = {
            "min_temperature_C": float(fields["min_temperature"][nodes].min()),
            "max_volume_below_mm3": {f"{lvl:g}": float(vol[:, i, r].max() * 1e9) for i, lvl in enumerate(levels)},
            "max_time_below_s": {f"{lvl:g}": float(fields[f"time_below_{threshold_label(lvl)}"][nodes].max())
                                 for lvl in case.outputs.dose_thresholds},
        }
    stats = run.stepper.stats
    summary = {
        "case": case.name, "cryofield_version": __version__, "backend": backend.name,
        "device": backend.device_name, "backend_chosen_by": backend.chosen_by, "precision": case.solver.precision,
        "scheme": case.solver.scheme, "nodes": problem.n_nodes, "elements": problem.n_elems,
        "simulated_time_s": case.duration,
        "time_step": {"forward_euler_limit_s": plan.dt_fe, "max_dt_s": case.solver.max_dt, "steps": stats.steps,
                      "rejected_steps": stats.rejected, "operator_applications": stats.operator_applications},
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
        "throughput": {"dof_steps_per_s": problem.n_nodes * stats.operator_applications
                       / max(timings["stepping_s"], 1e-12)},
        "total_volume_below_mm3": {f"{lvl:g}": float(vol[:, i, :].sum(axis=1).max() * 1e9)
                                   for i, lvl in enumerate(levels)},
        "regions": regions,
        "probes": {p.name: {"min_temperature_C": float(np.min(metrics["probe_temperature"][:, i]))}
                   for i, p in enumerate(problem.probes)},
        "mesh_notes": list(problem.mesh.notes),
    }
    mesh = problem.mesh
    clinical = clinical_summary(mesh.points, mesh.tets, problem.elem_mat, problem.region_names,
                                fields["min_temperature"], plan.roles,
                                {n: m.liquidus for n, m in zip(problem.region_names, problem.materials)})
    return summary | ({"clinical": clinical} if clinical else {})


def run_case(case: Case, out_dir: str | Path, backend: str | None = None, progress: bool = True) -> RunReport:
    """Validate ``case``, run it and write ``NAME.h5``, ``NAME.xdmf`` and ``NAME.json`` into ``out_dir``.

    Bad input raises :class:`InputError` before anything is written.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    plan = prepare(case)
    return execute(plan, get_backend(backend or case.solver.backend), out_dir, progress)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)
