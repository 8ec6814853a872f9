"""One run of a case: prepare (validate everything, plan the timeline), drive it, publish the result set.

:func:`prepare` does everything that can fail on bad input before any output exists, including the
estimates of memory and work (:mod:`cryofield.config.resources`); :func:`check_output` checks the output names;
:func:`execute` drives the stepper with the run's observers (:mod:`cryofield.run.observers`), writes
``NAME.h5``, ``NAME.xdmf``, ``NAME.json`` and the pictures into the run's staging directory and publishes
them as one set (:mod:`cryofield.io.resultset`); :func:`summarize` is the JSON summary. :func:`run_case`
holds the output name's lock from before the mesh is loaded until the set is published.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.backends import Backend, get_backend
from cryofield.config import resources
from cryofield.config.case import NAME_PATTERN, Case, case_to_yaml
from cryofield.errors import InputError
from cryofield.io.results import ResultWriter, result_paths
from cryofield.io.resultset import OutputLock, Staging, publish, remove_stale_staging, set_names, write_file
from cryofield.io.xdmf import write_xdmf
from cryofield.mesh.sources import mesh_of
from cryofield.model.curves import varies
from cryofield.model.roles import RoleTable
from cryofield.model.schedule import build_schedule, phases
from cryofield.outcomes.clinical import ClinicalReading, damage_fraction
from cryofield.problem.assemble import Problem, build_problem
from cryofield.problem.steady import steady_state
from cryofield.run import checkpoint
from cryofield.run.driver import RunState, Timeline, advance_alone, drive_segments
from cryofield.run.guards import explain, largest_change, physical_range
from cryofield.run.iceball import IceBallRecorder
from cryofield.run.observers import DoseTracker, MetricsRecorder, OutOfRange, ProgressBar, RangeGuard, SnapshotWriter
from cryofield.timestepping.control import BlowUp, StepControl
from cryofield.timestepping.multirate import Levels, plan_levels
from cryofield.timestepping.rkl2 import rkl2_max_dt, rkl2_stages
from cryofield.timestepping.schemes import SCHEMES
from cryofield.timestepping.stepper import Stepper
from cryofield.version import __version__


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
    _levels: Levels | None = None

    def control(self) -> StepControl:
        """Step-size control for this case."""
        solver = self.case.solver
        return StepControl(scheme=solver.scheme, stable_dt=solver.safety * self.dt_fe, max_dt=solver.max_dt,
                           max_change=solver.max_change, stages=solver.stages, tolerance=solver.tolerance,
                           blow_up_change=largest_change(*physical_range(self)),
                           levels=self.levels() if SCHEMES[solver.scheme].levels else None)

    def levels(self) -> Levels:
        """The multirate levels of this case's mesh (:func:`cryofield.timestepping.multirate.plan_levels`; computed once)."""
        if self._levels is None:
            solver = self.case.solver
            self._levels = plan_levels(nodal_radii(self.problem, self.timeline), self.problem.mesh.tets,
                                       solver.max_dt, solver.safety, solver.multirate_cuts)
        return self._levels

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


def check_output_dir(out_dir: Path) -> None:
    """Refuse an output location that cannot be written, before any computation."""
    probe = out_dir
    while not os.path.lexists(probe):
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output directory is not writable: {out_dir}", key="-o/--output")


def check_output(out_dir: Path, name: str) -> None:
    """Refuse output names that cannot be published, before any computation.

    Every file of the set must land directly in ``out_dir`` (the name is a safe file stem, and each path
    resolves inside it), and an existing file of that name must be one that can be replaced: a regular
    file, or a link to one (the link is replaced, never what it points to); not a directory, a dangling
    link or a device.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(f"unsafe case name {name!r}", key="name")
    root = out_dir.resolve()
    for file in set_names(name) + [f"{name}.manifest.json", f".{name}.lock"]:
        path = out_dir / file
        if path.parent.resolve() != root or path.name != file:
            raise InputError(f"{path} would be written outside the output directory {out_dir}", key="name")
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and file.startswith("."):
            raise InputError(f"{path} is a symbolic link; remove it", key="-o/--output")
        if stat.S_ISLNK(st.st_mode) and not path.exists():
            raise InputError(f"{path} is a dangling symbolic link; remove it or choose another -o or case name",
                             key="-o/--output")
        if not path.is_file():
            raise InputError(f"{path} exists and is not a regular file (a directory?); the result set cannot "
                             "replace it: remove it or choose another -o or case name", key="-o/--output")


@contextmanager
def reserve_output(out_dir: Path, name: str) -> Iterator[OutputLock]:
    """Create ``out_dir`` if needed and hold the lock of ``name`` in it (exit 2 when another run has it).

    Stale staging directories of earlier runs of ``name`` are removed. On failure, directories this
    created are removed again if empty, so bad input leaves no output at all.
    """
    created = _make_dirs(out_dir)
    try:
        with OutputLock(out_dir, name) as lock:
            check_output(out_dir, name)  # again, now that no other run of the name can change them
            remove_stale_staging(out_dir, name)
            yield lock
    except BaseException:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _make_dirs(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` and its missing parents; returns those this call created, outermost first."""
    missing = []
    probe = out_dir
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise InputError(f"cannot create the output directory {path}: {exc.strerror}", key="-o/--output") from exc
    if not out_dir.is_dir():
        raise InputError(f"output directory is not a directory: {out_dir}", key="-o/--output")
    return created


@dataclass
class RunReport:
    """What a run published: ``paths`` (h5, xdmf, json, manifest), ``pictures`` (kind -> path), the summary,
    the mesh notes, and what could not be drawn (``picture_problems``, warnings)."""

    paths: dict[str, Path]
    summary: dict
    notes: list[str] = field(default_factory=list)
    pictures: dict[str, Path] = field(default_factory=dict)
    picture_problems: list[str] = field(default_factory=list)
    run_id: str = ""


#: Errors of the file system: a picture that fails with one of these fails the run (nothing is published).
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


def execute(plan: Plan, backend: Backend, out_dir: Path, progress: bool = True, pictures: bool = False,
            lock: OutputLock | None = None, resume: bool = False) -> RunReport:
    """Run ``plan`` on ``backend`` and publish its result set in ``out_dir`` (:mod:`cryofield.io.resultset`).

    Everything is written into the run's staging directory ``out_dir/.NAME.RUNID.partial/`` first: the
    h5, the xdmf, the json and, with ``pictures``, the default pictures (:func:`draw_pictures`); then the
    set is published as a unit. Any failure before leaves ``out_dir`` as it was. ``lock``: the name's lock
    when the caller holds it (:func:`reserve_output`); otherwise it is taken here. The run saves checkpoints
    to ``out_dir/NAME.checkpoint.h5`` (:mod:`cryofield.run.checkpoint`) and, with ``resume``, continues from one;
    a published run removes it.
    """
    out_dir = Path(out_dir)
    if lock is None:
        check_output_dir(out_dir)
        check_output(out_dir, plan.case.name)
        with reserve_output(out_dir, plan.case.name) as held:
            return execute(plan, backend, out_dir, progress, pictures, held, resume)
    case = plan.case
    saving = checkpoint.Checkpointing(checkpoint.checkpoint_path(out_dir, case.name), run_identity(plan, backend),
                                      case.outputs.checkpoint_interval.wall,
                                      case.outputs.checkpoint_interval.simulated)
    saved = checkpoint.load(saving.path, saving.identity) if resume and saving.path.is_file() else None
    staging = Staging(out_dir, case.name)
    try:
        report = _run_into(plan, backend, staging, progress, pictures, saving, saved)
        publish(staging, [p.name for p in report.paths.values()] + [p.name for p in report.pictures.values()],
                extra={"case": case.name})
    except BaseException:
        staging.discard()
        raise
    saving.remove()
    report.paths = {k: out_dir / p.name for k, p in report.paths.items()}
    report.paths["manifest"] = out_dir / f"{case.name}.manifest.json"
    report.pictures = {k: out_dir / p.name for k, p in report.pictures.items()}
    return report


def run_identity(plan: Plan, backend: Backend) -> dict:
    """What a checkpoint must share with this run to continue it (:func:`cryofield.run.checkpoint.fingerprint`)."""
    mesh = plan.problem.mesh
    return checkpoint.fingerprint(case_to_yaml(plan.case), mesh.points, mesh.tets, backend.name,
                                  plan.case.solver.precision)


def _run_into(plan: Plan, backend: Backend, staging: Staging, progress: bool, pictures: bool,
              saving: checkpoint.Checkpointing, saved: checkpoint.Saved | None) -> RunReport:
    """Compute ``plan`` (from ``saved`` when resuming) and write its files into the staging directory."""
    t0 = time.perf_counter()
    # a resumed run takes its state from the checkpoint: no basal solve
    stepper = plan.stepper(backend, None if saved is None else np.zeros(plan.problem.n_nodes))
    basal_s = time.perf_counter() - t0
    return advance_alone(run_segments(plan, stepper, staging, progress, pictures, saving, saved, basal_s), stepper)


def run_segments(plan: Plan, stepper: Stepper, staging: Staging, progress: bool, pictures: bool,
                 saving: checkpoint.Checkpointing | None, saved: checkpoint.Saved | None,
                 basal_s: float) -> Generator[tuple[float, Callable], None, RunReport]:
    """The whole run of ``plan`` on ``stepper`` into the staging directory, as a generator of the segments the
    stepper must be advanced through (:func:`cryofield.run.driver.drive_segments`); returns the report.

    ``saving`` None: no checkpoints (an ensemble member, :mod:`cryofield.run.ensemble`).
    """
    case, problem, backend = plan.case, plan.problem, stepper.backend
    paths = result_paths(staging.dir, case.name)
    writer = ResultWriter(paths["h5"], result_attributes(case, backend) | {"run_id": staging.run_id})
    try:
        write_setup(writer, plan)
        timings = {"setup_s": plan.setup_seconds, "basal_s": basal_s}
        t0 = time.perf_counter()
        stepper.warm_up()
        timings["compile_s"] = time.perf_counter() - t0
        dose = DoseTracker(dose_levels(plan))
        metrics = MetricsRecorder(problem, case.outputs.isotherms)
        iceball = IceBallRecorder(problem, case.outputs.isotherms)
        observers = [dose, metrics, iceball, SnapshotWriter(writer, case.outputs.fields),
                     RangeGuard(*physical_range(plan))]
        if progress and plan.timeline.end > 0:
            observers.append(ProgressBar())
        try:
            with checkpoint.StopOnSignals(saving) if saving is not None else contextlib.nullcontext():
                run = yield from drive_segments(plan.timeline, stepper, observers, saving, saved)
        except (BlowUp, OutOfRange) as exc:
            raise explain(plan, exc) from exc
        timings |= run.timings
        fields = write_outcome(writer, plan, run, dose, metrics, timings)
        for name, arrays in iceball.arrays().items():
            writer.write_arrays(f"iceball/{name}", arrays, {"levels": np.array(case.outputs.isotherms, float)})
        checkpoints = {"enabled": False, "why": "a member of an ensemble"} if saving is None else saving.report()
        summary = summarize(plan, backend, run, fields, metrics.arrays(), timings) | {
            "checkpoints": checkpoints | {"resumed_from_t_s": None if saved is None else float(saved.stepper["t"])}}
        if iceball.lines:
            summary["iceball_mm"] = iceball.summary()
        summary["ensemble"] = {"variants": stepper.ensemble.size, "variant": stepper.variant,
                               "layout": "variant fastest" if stepper.dp.variant_fastest else "node fastest"}
        writer.finish({"dof_steps_per_s": summary["throughput"]["dof_steps_per_s"]})
    except BaseException:
        writer.abort()
        raise
    write_xdmf(paths["h5"], paths["xdmf"])
    summary["run_id"] = staging.run_id
    write_file(paths["json"], json.dumps(summary, indent=2).encode())
    report = RunReport(paths, summary, list(problem.mesh.notes), run_id=staging.run_id)
    if pictures:
        report.pictures, report.picture_problems = draw_pictures(paths["h5"], staging.dir)
    return report


def draw_pictures(h5: Path, out_dir: Path) -> tuple[dict[str, Path], list[str]]:
    """The default pictures of ``h5`` in ``out_dir``, and what could not be drawn.

    A picture is a convenience: a failure of the plotting libraries is a problem returned (the run still
    publishes its set, without that picture), but a full disk or another file-system error fails the run,
    which then publishes nothing and leaves the previous set in place.
    """
    try:
        from cryofield.viz import render_result

        rendered = render_result(h5, out_dir)
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            raise
        return {}, [f"no pictures: {type(exc).__name__}: {exc}"]
    except Exception as exc:  # the results are complete; a picture problem must not turn the run into a failure
        return {}, [f"no pictures: {type(exc).__name__}: {exc}"]
    return dict(rendered.paths), list(rendered.problems)


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
        "probe_temperature": np.array([np.nan if p.set_point(p.start) is None else p.set_point(p.start)
                                       for p in table], float),
        "power": np.array([np.nan if p.heater_power(p.start) is None else p.heater_power(p.start) for p in table],
                          float)},
        {"curves": json.dumps({str(p.index): {k: v.model_dump() for k, v in (("temperature", p.probe_temperature),
                                                                               ("power", p.power)) if varies(v)}
                               for p in table if p.varies})})


def write_outcome(writer: ResultWriter, plan: Plan, run: RunState, dose: DoseTracker, metrics: MetricsRecorder,
                  timings: dict) -> dict[str, np.ndarray]:
    """Per-node dose fields, the metric time series and the timings; returns the dose fields."""
    case, problem = plan.case, plan.problem
    below = dose.times_below(run)
    fields = {"min_temperature": dose.min_temperature(run)}
    for k, level in enumerate(dose_levels(plan)):
        fields[f"time_below_{threshold_label(level)}"] = below[k]
    limits = plan.roles.thresholds
    fields["damage_fraction"] = damage_fraction(fields["min_temperature"],
                                                fields[f"time_below_{threshold_label(limits.damage_c)}"], limits)
    writer.write_arrays("fields", fields)
    reading, _ = clinical_inputs(plan)
    for nerve, profile in reading.profiles(fields["min_temperature"],
                                           fields[f"time_below_{threshold_label(limits.injury_c)}"]).items():
        writer.write_arrays(f"clinical/{nerve}", profile, {"profile_mm": limits.profile_mm})
    writer.write_arrays("metrics", metrics.arrays(), {
        "levels": np.array(case.outputs.isotherms, float), "regions": np.array(problem.region_names, dtype="S64"),
        "probes": np.array([p.name for p in problem.probes], dtype="S64")})
    stats = run.stepper.stats
    writer.write_arrays("timings", {}, {k: float(v) for k, v in timings.items()}
                        | {"steps": stats.steps, "operator_applications": stats.operator_applications,
                           "equivalent_applications": stats.equivalent_applications})
    for name, model in device_models(problem).items():
        writer.write_arrays(f"devices/{name}", model.records(), {
            "model": model.kind, "surface": model.surface.name, "summary": json.dumps(model.summary())})
    return fields


def device_models(problem: Problem) -> dict:
    """The boundary models that keep time series (controllers, heaters, vessels), by the name of their probe
    (or surface), as the result's ``/devices`` and the summary's ``devices`` name them."""
    out = {}
    for model in problem.boundaries.devices():
        name, k = model.context.name, 2
        while name in out:
            name, k = f"{model.context.name}_{k}", k + 1
        out[name] = model
    return out


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
        "backend_diagnostics": backend.diagnostics(),
        "scheme": case.solver.scheme, "nodes": problem.n_nodes, "elements": problem.n_elems,
        "axisymmetric": problem.axisymmetric,
        "simulated_time_s": case.duration,
        "time_step": {"forward_euler_limit_s": plan.dt_fe, "max_dt_s": case.solver.max_dt,
                      "max_change_K": case.solver.max_change, "tolerance_K": case.solver.tolerance,
                      "steps": stats.steps,
                      "rejected_steps": stats.rejected, "operator_applications": stats.operator_applications,
                      "full_mesh_equivalent_applications": stats.equivalent_applications},
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
        "throughput": {"dof_steps_per_s": problem.n_nodes * stats.equivalent_applications
                       / max(timings["stepping_s"], 1e-12)},
        "total_volume_below_mm3": {f"{lvl:g}": float(vol[:, i, :].sum(axis=1).max() * 1e9)
                                   for i, lvl in enumerate(levels)},
        "regions": regions,
        "probes": {p.name: {"min_temperature_C": float(np.min(metrics["probe_temperature"][:, i]))}
                   for i, p in enumerate(problem.probes)},
        "mesh_notes": list(problem.mesh.notes),
    }
    devices = {name: model.summary() for name, model in device_models(problem).items()}
    if devices:
        summary["devices"] = devices
    reading, inputs = clinical_inputs(plan)
    limits = plan.roles.thresholds
    clinical = reading.summary(fields["min_temperature"],
                               time_below=fields[f"time_below_{threshold_label(limits.injury_c)}"],
                               damage=fields["damage_fraction"], **inputs) if reading.nerves else None
    return summary | ({"clinical": clinical} if clinical else {})


def dose_levels(plan: Plan) -> list[float]:
    """The levels the dose tracker follows: the case's ``outputs.dose_thresholds``, then the injury and the
    threshold-damage levels when they are not among them (the clinical reading needs both)."""
    limits = plan.roles.thresholds
    levels = list(plan.case.outputs.dose_thresholds)
    return levels + [c for c in dict.fromkeys([limits.injury_c, limits.damage_c]) if c not in levels]


def clinical_inputs(plan: Plan) -> tuple[ClinicalReading, dict]:
    """The clinical reading of the run's mesh and what it needs besides the fields: each vessel's wall nodes
    (a surface ``NAME_wall`` of the mesh) and the nerves the probes aim at (their placements' targets)."""
    problem, mesh = plan.problem, plan.problem.mesh
    reading = ClinicalReading(mesh.points, mesh.tets, problem.elem_mat, problem.region_names, plan.roles,
                              {n: m.liquidus for n, m in zip(problem.region_names, problem.materials)})
    walls = {v: mesh.surface_nodes(f"{v}_wall") for v in plan.roles.regions_with("artery")
             if f"{v}_wall" in mesh.surfaces}
    targets = [p.placement.target.nerve for p in plan.case.probes
               if p.placement is not None and p.placement.target is not None]
    return reading, {"walls": walls, "targets": targets or None}


def run_case(case: Case, out_dir: str | Path, backend: str | None = None, progress: bool = True,
             pictures: bool = False, force: bool = False, resume: bool = False) -> RunReport:
    """Validate ``case``, run it and publish ``NAME.h5``, ``NAME.xdmf``, ``NAME.json`` (with ``pictures``,
    the default pictures) and ``NAME.manifest.json`` in ``out_dir``.

    Bad input, another run writing the same name, or estimates beyond the limits (unless ``force``) raise
    :class:`InputError` before anything is computed or written.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir)
    check_output(out_dir, case.name)
    with reserve_output(out_dir, case.name) as lock:
        plan = prepare(case, force)
        if not force:
            refuse(estimate(plan, out_dir), case, ("outputs",))
        return execute(plan, get_backend(backend or case.solver.backend), out_dir, progress, pictures, lock, resume)
