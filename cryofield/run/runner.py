r"""One run of a case: drive the prepared plan with its observers and publish the result set.

:func:`run_case` checks the output names (:mod:`cryofield.run.output`), prepares the case
(:func:`cryofield.run.plan.prepare`) and :func:`execute`\s it, holding the output name's lock from before the
mesh is loaded until the set is published. :func:`run_segments` drives the stepper with the run's observers
(:func:`observers_for`, :mod:`cryofield.run.observers`), lets each write its own part of ``NAME.h5`` and of
the summary ``NAME.json`` (:mod:`cryofield.run.record`), then ``NAME.xdmf`` and the pictures, all into the
run's staging directory; :func:`execute` publishes them as one set (:mod:`cryofield.io.resultset`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryofield.backends import Backend, get_backend
from cryofield.config.case import Case, case_to_yaml
from cryofield.io.results import ResultWriter, result_paths
from cryofield.io.resultset import OutputLock, Staging, publish, write_file
from cryofield.io.xdmf import write_xdmf
from cryofield.run import checkpoint
from cryofield.run.driver import Observer, advance_alone, drive_segments
from cryofield.run.guards import explain, physical_range
from cryofield.run.observers.clinical import ClinicalReadout
from cryofield.run.observers.dose import DoseTracker
from cryofield.run.observers.iceball import IceBallRecorder
from cryofield.run.observers.metrics import MetricsRecorder
from cryofield.run.observers.progress import ProgressBar
from cryofield.run.observers.range_guard import OutOfRange, RangeGuard
from cryofield.run.observers.snapshots import SnapshotWriter
from cryofield.run.output import check_output, check_output_dir, reserve_output
from cryofield.run.plan import Plan, estimate, prepare, refuse
from cryofield.run.record import (
    checkpoint_entry,
    dose_levels,
    ensemble_entry,
    result_attributes,
    summarize,
    write_devices,
    write_setup,
    write_timings,
)
from cryofield.timestepping.control import BlowUp
from cryofield.timestepping.stepper import Stepper


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
    when the caller holds it (:func:`~cryofield.run.output.reserve_output`); otherwise it is taken here. The
    run saves checkpoints to ``out_dir/NAME.checkpoint.h5`` (:mod:`cryofield.run.checkpoint`) and, with
    ``resume``, continues from one; a published run removes it.
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
    case, backend = plan.case, stepper.backend
    paths = result_paths(staging.dir, case.name)
    writer = ResultWriter(paths["h5"], result_attributes(case, backend) | {"run_id": staging.run_id})
    try:
        write_setup(writer, plan)
        timings = {"setup_s": plan.setup_seconds, "basal_s": basal_s}
        t0 = time.perf_counter()
        stepper.warm_up()
        timings["compile_s"] = time.perf_counter() - t0
        observers = observers_for(plan, writer, progress)
        try:
            with checkpoint.StopOnSignals(saving) if saving is not None else contextlib.nullcontext():
                run = yield from drive_segments(plan.timeline, stepper, observers, saving, saved)
        except (BlowUp, OutOfRange) as exc:
            raise explain(plan, exc) from exc
        timings |= run.timings
        for observer in observers:
            observer.write(writer, run)
        write_timings(writer, run, timings)
        write_devices(writer, plan.problem)
        summary = summarize(plan, backend, run, observers, timings) | {
            "checkpoints": checkpoint_entry(saving, saved), "ensemble": ensemble_entry(stepper)}
        writer.finish({"dof_steps_per_s": summary["throughput"]["dof_steps_per_s"]})
    except BaseException:
        writer.abort()
        raise
    write_xdmf(paths["h5"], paths["xdmf"])
    summary["run_id"] = staging.run_id
    write_file(paths["json"], json.dumps(summary, indent=2).encode())
    report = RunReport(paths, summary, list(plan.problem.mesh.notes), run_id=staging.run_id)
    if pictures:
        report.pictures, report.picture_problems = draw_pictures(paths["h5"], staging.dir)
    return report


def observers_for(plan: Plan, writer: ResultWriter, progress: bool = False) -> list[Observer]:
    """The observers of a run of ``plan`` writing to ``writer``, in the order they are called; each writes its
    own groups and summary entries. ``progress``: a live bar too (for a run with a protocol)."""
    case = plan.case
    dose = DoseTracker(dose_levels(plan), reported=case.outputs.dose_thresholds)
    problem = plan.problem
    observers = [dose, ClinicalReadout(dose, plan.clinical_inputs(), problem.mesh.points, problem.mesh.tets,
                                       problem.elem_mat, problem.region_names, plan.roles),
                 MetricsRecorder(plan.problem, case.outputs.isotherms),
                 IceBallRecorder(plan.problem, case.outputs.isotherms), SnapshotWriter(writer, case.outputs.fields),
                 RangeGuard(*physical_range(plan))]
    if progress and plan.timeline.end > 0:
        observers.append(ProgressBar())
    return observers


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
