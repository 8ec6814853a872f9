"""One run of a case: prepare (validate everything), then step through the protocol and write results."""

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
from .errors import InputError
from .io.results import ResultWriter, result_paths
from .io.xdmf import write_xdmf
from .metrics import RegionMeasures
from .problem import Problem, build_problem, load_mesh
from .schedule import Segment, build_schedule, phase_bounds
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
    segments: list[Segment]
    dt_fe: float  # forward-Euler stability limit (s), from the Gershgorin bound
    setup_seconds: float

    def control(self) -> StepControl:
        """Step-size control for this case."""
        solver = self.case.solver
        return StepControl(scheme=solver.scheme, stable_dt=solver.safety * self.dt_fe, max_dt=solver.max_dt,
                           max_change=solver.max_change, stages=solver.stages)


def prepare(case: Case) -> Plan:
    """Load and check the mesh, assemble the problem, plan the time steps; raise InputError on bad input."""
    t0 = time.perf_counter()
    mesh = load_mesh(case)
    problem = build_problem(case, mesh)
    states = [problem.boundary_state(None)] + [problem.boundary_state(p) for p in case.protocol]
    robin = np.max([s.robin_coef for s in states], axis=0)
    always_fixed = np.logical_and.reduce([s.fixed for s in states])
    rho = problem.spectral_radius_bound(robin, always_fixed)
    dt_fe = 2.0 / rho if rho > 0 else np.inf
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
    segments = build_schedule(case.protocol, case.outputs.snapshot_interval, case.outputs.metrics_interval)
    return Plan(case, problem, segments, dt_fe, time.perf_counter() - t0)


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


class Run:
    """Executes a :class:`Plan` on a backend, writing results as it goes."""

    def __init__(self, plan: Plan, backend: Backend, out_dir: Path, progress: bool = True):
        self.plan, self.backend, self.out_dir, self.progress = plan, backend, Path(out_dir), progress
        self.case, self.problem = plan.case, plan.problem
        self.dtype = np.float32 if self.case.solver.precision == "float32" else np.float64
        self.regions = RegionMeasures(self.problem.mesh.tets, self.problem.volumes, self.problem.elem_mat,
                                      self.problem.region_names, self.problem.node_ptr, self.problem.node_slot)
        self.metric_rows: dict[str, list] = {"time": [], "phase": [], "probe_temperature": [],
                                             "region_min_temperature": [], "volume_below": []}
        self.timings = {"setup_s": plan.setup_seconds, "basal_s": 0.0, "compile_s": 0.0, "stepping_s": 0.0,
                        "output_s": 0.0}

    def execute(self) -> RunReport:
        paths = result_paths(self.out_dir, self.case.name)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        writer = ResultWriter(paths["h5"], self._attrs())
        try:
            self._run(writer)
            stepper = self.stepper
            self._write_fields(writer, stepper)
            summary = self._summary(stepper)
            writer.write_arrays("timings", {}, {k: float(v) for k, v in self.timings.items()}
                                | {"steps": stepper.stats.steps,
                                   "operator_applications": stepper.stats.operator_applications})
            writer.finish({"dof_steps_per_s": summary["throughput"]["dof_steps_per_s"]})
        except BaseException:
            writer.abort()
            raise
        write_xdmf(paths["h5"], paths["xdmf"])
        _atomic_write(paths["json"], json.dumps(summary, indent=2))
        return RunReport(paths, summary, list(self.problem.mesh.notes))

    def _attrs(self) -> dict:
        return {"cryofield_version": __version__, "case_name": self.case.name, "backend": self.backend.name,
                "device": self.backend.device_name, "precision": self.case.solver.precision,
                "scheme": self.case.solver.scheme, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def _initial_temperature(self) -> np.ndarray:
        init = self.case.initial
        if init.type == "uniform":
            return np.full(self.problem.n_nodes, init.temperature)
        t0 = time.perf_counter()
        T = steady_state(self.problem, self.problem.boundary_state(None), self.case.blood.arterial_temperature)
        self.timings["basal_s"] = time.perf_counter() - t0
        return T

    def _run(self, writer: ResultWriter) -> None:
        case, problem = self.case, self.problem
        writer.write_text("case", case_to_yaml(case))
        writer.write_text("case_source", Path(case.source).read_text() if Path(case.source).is_file() else "")
        mesh = problem.mesh
        writer.write_mesh(mesh.points, mesh.tets, problem.elem_mat, problem.region_names,
                          {s: mesh.surface_facets(s) for s in mesh.surfaces},
                          {p.name: p.nodes for p in problem.probes}, problem.original_index, mesh.metadata)
        self._write_protocol(writer)
        T0 = self._initial_temperature()
        stepper = self.stepper = Stepper(self.backend, problem, problem.enthalpy(T0), self.plan.control(),
                                         self.dtype, case.outputs.dose_thresholds)
        self._record(writer, stepper, 0.0, 0, snapshot=True)
        self._warm_up(stepper)
        bar = _progress_bar(case.duration, self.progress)
        phase = None
        sim_done = 0.0
        for segment in self.plan.segments:
            if segment.phase != phase:
                phase = segment.phase
                stepper.set_boundaries(problem.boundary_state(case.protocol[phase]))
            t0 = time.perf_counter()
            stepper.advance(segment.end - segment.start)
            self.backend.synchronize()
            self.timings["stepping_s"] += time.perf_counter() - t0
            if segment.metrics:
                self._record(writer, stepper, segment.end, phase, snapshot=segment.snapshot)
            if bar is not None:
                bar.update(segment.end - sim_done)
                sim_done = segment.end
                rate = problem.n_nodes * stepper.stats.operator_applications / max(self.timings["stepping_s"], 1e-9)
                bar.set_postfix_str(f"phase {phase + 1}/{len(case.protocol)} {case.protocol[phase].kind}, "
                                    f"{rate / 1e6:.1f} M DOF-steps/s", refresh=False)
        if bar is not None:
            bar.close()

    def _warm_up(self, stepper: Stepper) -> None:
        """Compile (or load from cache) every kernel on the real arrays, so compile time is reported apart."""
        t0 = time.perf_counter()
        be, dp = self.backend, stepper.dp
        be.upload_boundaries(dp, self.problem.boundary_state(None), self.dtype)
        scratch = be.empty(self.problem.n_nodes, self.dtype)
        be.stage(dp, stepper.T, scratch, scratch, scratch, (1.0, 0.0, 0.0, 0.0, 0.0), stepper.H, stepper.H, stepper.H,
                 stepper.H)
        be.temperature(dp, stepper.H, scratch)
        be.max_abs_difference(stepper.T, scratch)
        T_min = be.to_device(be.to_host(stepper.T_min))
        be.track(stepper.T, stepper.T, 0.0, T_min, stepper.thresholds, be.to_device(be.to_host(stepper.time_below)))
        be.synchronize()
        self.timings["compile_s"] = time.perf_counter() - t0

    def _record(self, writer: ResultWriter, stepper: Stepper, t: float, phase: int, snapshot: bool) -> None:
        t0 = time.perf_counter()
        T = stepper.temperature_host()
        rows = self.metric_rows
        rows["time"].append(t)
        rows["phase"].append(phase)
        rows["probe_temperature"].append([T[p.nodes].mean() for p in self.problem.probes])
        rows["region_min_temperature"].append(self.regions.min_temperature(T))
        rows["volume_below"].append(self.regions.volumes_below(T, self.case.outputs.isotherms))
        if snapshot:
            fields = {"temperature": T}
            if "liquid_fraction" in self.case.outputs.fields:
                fields["liquid_fraction"] = self.problem.liquid_fraction(T)
            if "enthalpy" in self.case.outputs.fields:
                fields["enthalpy"] = stepper.enthalpy_host()
            writer.write_snapshot(t, phase, fields)
        self.timings["output_s"] += time.perf_counter() - t0

    def _write_protocol(self, writer: ResultWriter) -> None:
        protocol = self.case.protocol
        bounds = phase_bounds(protocol)
        temps = [np.nan if p.probe_temperature is None else p.probe_temperature for p in protocol]
        writer.write_arrays("protocol", {
            "kind": np.array([p.kind for p in protocol], dtype="S16"), "start": bounds[:-1], "end": bounds[1:],
            "probe_temperature": np.array(temps, float)})

    def _write_fields(self, writer: ResultWriter, stepper: Stepper) -> None:
        be = self.backend
        below = be.to_host(stepper.time_below).astype(float)
        fields = {"min_temperature": be.to_host(stepper.T_min).astype(float)}
        for k, level in enumerate(self.case.outputs.dose_thresholds):
            fields[f"time_below_{threshold_label(level)}"] = below[k]
        writer.write_arrays("fields", fields)
        rows = self.metric_rows
        n_probes = len(self.problem.probes)
        writer.write_arrays("metrics", {
            "time": np.array(rows["time"]), "phase": np.array(rows["phase"], np.int32),
            "probe_temperature": np.array(rows["probe_temperature"], float).reshape(len(rows["time"]), n_probes),
            "region_min_temperature": np.array(rows["region_min_temperature"]),
            "volume_below": np.array(rows["volume_below"]),
        }, {"levels": np.array(self.case.outputs.isotherms, float),
            "regions": np.array(self.problem.region_names, dtype="S64"),
            "probes": np.array([p.name for p in self.problem.probes], dtype="S64")})
        self.fields = fields

    def _summary(self, stepper: Stepper) -> dict:
        rows, names = self.metric_rows, self.problem.region_names
        vol = np.array(rows["volume_below"])  # (M, L, R)
        levels = self.case.outputs.isotherms
        regions = {}
        for r, name in enumerate(names):
            nodes = self.regions.nodes[r]
            regions[name] = {
                "min_temperature_C": float(self.fields["min_temperature"][nodes].min()),
                "max_volume_below_mm3": {f"{lvl:g}": float(vol[:, i, r].max() * 1e9) for i, lvl in enumerate(levels)},
                "max_time_below_s": {f"{lvl:g}": float(self.fields[f"time_below_{threshold_label(lvl)}"][nodes].max())
                                     for lvl in self.case.outputs.dose_thresholds},
            }
        apps = stepper.stats.operator_applications
        stepping = max(self.timings["stepping_s"], 1e-12)
        return {
            "case": self.case.name, "cryofield_version": __version__, "backend": self.backend.name,
            "device": self.backend.device_name, "backend_chosen_by": self.backend.chosen_by,
            "precision": self.case.solver.precision,
            "scheme": self.case.solver.scheme, "nodes": self.problem.n_nodes, "elements": self.problem.n_elems,
            "simulated_time_s": self.case.duration,
            "time_step": {"forward_euler_limit_s": self.plan.dt_fe, "max_dt_s": self.case.solver.max_dt,
                          "steps": stepper.stats.steps, "rejected_steps": stepper.stats.rejected,
                          "operator_applications": apps},
            "timings_s": {k: round(float(v), 4) for k, v in self.timings.items()},
            "throughput": {"dof_steps_per_s": self.problem.n_nodes * apps / stepping},
            "total_volume_below_mm3": {f"{lvl:g}": float(vol[:, i, :].sum(axis=1).max() * 1e9)
                                       for i, lvl in enumerate(levels)},
            "regions": regions,
            "probes": {p.name: {"min_temperature_C": float(np.min(np.array(rows["probe_temperature"])[:, i]))}
                       for i, p in enumerate(self.problem.probes)},
            "mesh_notes": list(self.problem.mesh.notes),
        } | self._clinical()

    def _clinical(self) -> dict:
        """``{"clinical": ...}`` when the mesh metadata has nerve centrelines, else nothing."""
        mesh, names = self.problem.mesh, self.problem.region_names
        clinical = clinical_summary(mesh.points, mesh.tets, self.problem.elem_mat, names,
                                    self.fields["min_temperature"], mesh.metadata,
                                    {n: self.case.tissues[n].library for n in names},
                                    {n: m.liquidus for n, m in zip(names, self.problem.materials)})
        return {"clinical": clinical} if clinical else {}


def run_case(case: Case, out_dir: str | Path, backend: str | None = None, progress: bool = True) -> RunReport:
    """Validate ``case``, run it and write ``NAME.h5``, ``NAME.xdmf`` and ``NAME.json`` into ``out_dir``.

    Bad input raises :class:`InputError` before anything is written.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    plan = prepare(case)
    chosen = get_backend(backend or case.solver.backend)
    return Run(plan, chosen, out_dir, progress).execute()


def _progress_bar(total: float, enabled: bool):
    if not enabled or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="s", unit_scale=False, dynamic_ncols=True, desc="simulated",
                bar_format="{desc}: {n:.1f}/{total:.1f} s |{bar}| wall {elapsed} ETA {remaining}{postfix}")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, path)
