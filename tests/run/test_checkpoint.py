"""Checkpoints and resume (bit-identical), the blow-up guard, and the range guard."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from cryofield.config.case import case_to_yaml, parse_case
from cryofield.errors import EXIT_INTERRUPTED, InputError
from cryofield.run import checkpoint
from cryofield.run.driver import Observer, drive
from cryofield.run.observers.dose import DoseTracker
from cryofield.run.observers.metrics import MetricsRecorder
from cryofield.run.observers.range_guard import OutOfRange, RangeGuard
from cryofield.run.plan import prepare
from cryofield.timestepping.control import BlowUp

CASE = """
name: ckpt
mesh: {generate: {kind: slab, size: [6, 3, 3], cells: [8, 3, 3]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol:
  - {kind: freeze, duration: 5, temperature: -70}
  - {kind: passive_thaw, duration: 2}
  - {kind: freeze, duration: 3}
boundaries: [{surface: xmax, type: fixed, temperature: 37}, {surface: zmax, type: convection}]
outputs: {snapshot_interval: 2, metrics_interval: 0.5}
solver: {precision: %s}
"""
#: The same case stepped by the multirate scheme, with a level forced on the uniform slab; and by RKL2 with a
#: local error tolerance tight enough to govern (a resume must restore the estimate's history).
SOLVERS = {"rkl2": "{precision: %s}", "multirate": "{scheme: multirate, multirate_cuts: [1.2], precision: %s}",
           "tolerance": "{tolerance: 0.02, precision: %s}"}


class StopAfter(Observer):
    """Asks the checkpointing to stop after ``steps`` accepted steps, as a signal handler would."""

    def __init__(self, checkpointing, steps: int):
        self.checkpointing, self.steps, self.seen = checkpointing, steps, 0

    def after_step(self, run, T_previous, dt):
        self.seen += 1
        if self.seen == self.steps:
            self.checkpointing.request_stop("SIGTERM")


def observers_for(plan):
    return [DoseTracker(plan.case.outputs.dose_thresholds), MetricsRecorder(plan.problem, plan.case.outputs.isotherms)]


def final(run, observers) -> dict:
    dose, metrics = observers[:2]
    return {"H": run.stepper.enthalpy_host(), "T_min": dose.min_temperature(run), "below": dose.times_below(run),
            **metrics.arrays(), "steps": run.stepper.stats.steps, "t": run.t}


def identity(plan):
    mesh = plan.problem.mesh
    return checkpoint.fingerprint(case_to_yaml(plan.case), mesh.points, mesh.tets, "cpu", plan.case.solver.precision)


@pytest.mark.parametrize("precision, solver", [("float64", "rkl2"), ("float32", "rkl2"), ("float64", "multirate"),
                                               ("float64", "tolerance")])
@pytest.mark.parametrize("stop_at", [1, 7, 23])
def test_a_run_resumed_from_a_checkpoint_is_bit_identical(tmp_path, precision, solver, stop_at):
    case = parse_case((CASE % precision).replace(f"{{precision: {precision}}}", SOLVERS[solver] % precision))
    plan = prepare(case)
    control = plan.control()
    assert control.scheme == ("multirate" if solver == "multirate" else "rkl2")
    assert solver != "multirate" or plan.levels().depth == 1
    assert (control.tolerance is not None) == (solver == "tolerance")
    observers = observers_for(plan)
    reference = final(drive(plan.timeline, plan.stepper("cpu"), observers), observers)

    plan = prepare(case)
    saving = checkpoint.Checkpointing(tmp_path / "ckpt.checkpoint.h5", identity(plan))
    observers = observers_for(plan)
    with pytest.raises(checkpoint.Interrupted) as stopped:
        drive(plan.timeline, plan.stepper("cpu"), [*observers, StopAfter(saving, stop_at)], saving)
    assert 0 < stopped.value.t < 10 and saving.path.is_file()

    plan = prepare(case)
    saved = checkpoint.load(saving.path, identity(plan))
    observers = observers_for(plan)
    resumed = final(drive(plan.timeline, plan.stepper("cpu"), [*observers, Observer()], resume=saved), observers)
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def _stopped_run(tmp_path, case, stop_at: int = 7):
    """A run of ``case`` stopped (with a checkpoint) after ``stop_at`` steps; returns the checkpoint's path."""
    plan = prepare(case)
    saving = checkpoint.Checkpointing(tmp_path / "ckpt.checkpoint.h5", identity(plan))
    with pytest.raises(checkpoint.Interrupted):
        drive(plan.timeline, plan.stepper("cpu"), [*observers_for(plan), StopAfter(saving, stop_at)], saving)
    return saving.path


def _resumed(case, path, order=slice(None)) -> dict:
    """The final state of ``case`` resumed from the checkpoint at ``path``, its observers listed in ``order``."""
    plan = prepare(case)
    observers = observers_for(plan)
    drive_list = [*observers, Observer()][order]
    return final(drive(plan.timeline, plan.stepper("cpu"), drive_list, resume=checkpoint.load(path, identity(plan))),
                 observers)


def test_a_checkpoint_keeps_each_observers_state_under_its_name_whatever_the_order(tmp_path):
    case = parse_case(CASE % "float64")
    plan = prepare(case)
    observers = observers_for(plan)
    reference = final(drive(plan.timeline, plan.stepper("cpu"), observers), observers)
    path = _stopped_run(tmp_path, case)
    with h5py.File(path) as f:
        assert sorted(f["observers"]) == ["dose", "metrics", "observer"] and f.attrs["format_version"] == 2
    resumed = _resumed(case, path, slice(None, None, -1))  # listed the other way round: found by name
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_a_checkpoint_with_positional_observer_names_still_resumes(tmp_path):
    """Format version 1 named the groups ``NN_ClassName`` by position; each goes to the observer of its class."""
    case = parse_case(CASE % "float64")
    plan = prepare(case)
    observers = observers_for(plan)
    reference = final(drive(plan.timeline, plan.stepper("cpu"), observers), observers)
    path = _stopped_run(tmp_path, case)
    with h5py.File(path, "r+") as f:  # as format version 1 wrote it
        for i, (name, cls) in enumerate([("dose", "DoseTracker"), ("metrics", "MetricsRecorder"),
                                         ("observer", "StopAfter")]):
            f["observers"].move(name, f"{i:02d}_{cls}")
        f.attrs["format_version"] = 1
    resumed = _resumed(case, path, slice(None, None, -1))
    for key, value in reference.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_a_checkpoint_without_an_observers_state_is_refused(tmp_path):
    case = parse_case(CASE % "float64")
    path = _stopped_run(tmp_path, case)
    with h5py.File(path, "r+") as f:
        del f["observers/metrics"]
    with pytest.raises(InputError, match="no state of the observer 'metrics'") as info:
        _resumed(case, path)
    assert info.value.key == "--resume"


def test_observers_that_share_a_name_cannot_be_checkpointed(tmp_path):
    plan = prepare(parse_case(CASE % "float64"))
    saving = checkpoint.Checkpointing(tmp_path / "c.h5", identity(plan), simulated_interval=2.0)
    with pytest.raises(ValueError, match="observers share the name 'observer'"):
        drive(plan.timeline, plan.stepper("cpu"), [Observer(), Observer()], saving)


def test_periodic_checkpoints_replace_each_other_atomically(tmp_path):
    plan = prepare(parse_case(CASE % "float64"))
    saving = checkpoint.Checkpointing(tmp_path / "c.h5", identity(plan), simulated_interval=2.0)
    drive(plan.timeline, plan.stepper("cpu"), observers_for(plan), saving)
    assert saving.written >= 5 and saving.path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # no temporary file left


def test_a_checkpoint_of_another_case_is_refused(tmp_path):
    plan = prepare(parse_case(CASE % "float64"))
    saving = checkpoint.Checkpointing(tmp_path / "c.h5", identity(plan), simulated_interval=5.0)
    drive(plan.timeline, plan.stepper("cpu"), observers_for(plan), saving)
    other = prepare(parse_case((CASE % "float64").replace("duration: 3", "duration: 4")))
    with pytest.raises(InputError, match="different case_sha256") as info:
        checkpoint.load(saving.path, identity(other))
    assert info.value.key == "--resume"
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="cannot read the checkpoint"):
        checkpoint.load(tmp_path / "junk.h5", identity(plan))


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    plan = prepare(parse_case(CASE % "float64"))
    saving = checkpoint.Checkpointing(tmp_path / "c.h5", identity(plan), simulated_interval=2.0)
    calls = {"n": 0}
    real_replace = checkpoint.os.replace

    def full_disk(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", full_disk)
    with pytest.raises(checkpoint.OutputFailed, match="cannot write .*c.h5: No space left on device"):
        drive(plan.timeline, plan.stepper("cpu"), observers_for(plan), saving)
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5"]  # the previous checkpoint, no temporary file
    assert checkpoint.load(tmp_path / "c.h5", identity(plan)).stepper["t"] > 0


def test_an_unstable_forward_euler_run_stops_at_once_naming_the_node():
    case = parse_case((CASE % "float64").replace("solver: {", "solver: {scheme: euler, "))
    plan = prepare(case)
    plan.dt_fe *= 20  # far past the stability limit: what a wrong bound or a unit error would do
    stepper = plan.stepper("cpu")
    with pytest.raises(BlowUp) as info:
        drive(plan.timeline, stepper, observers_for(plan))
    assert info.value.t < plan.timeline.end and 0 <= info.value.node < plan.problem.n_nodes
    assert "blew up" in str(info.value)


def test_the_range_guard_stops_a_drift_out_of_range():
    plan = prepare(parse_case(CASE % "float64"))
    with pytest.raises(OutOfRange) as info:
        drive(plan.timeline, plan.stepper("cpu"), [RangeGuard(-60.0, 40.0)])
    assert info.value.value < -60.0 and info.value.t <= 5.0


# -- the command line: kill -9 at random moments, SIGTERM, resume -------------------------------------------------

RUN_CASE = """
name: long
mesh: {generate: {kind: slab, size: [12, 6, 6], cells: [24, 12, 12]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol:
  - {kind: freeze, duration: 20, temperature: -70}
  - {kind: passive_thaw, duration: 5}
  - {kind: freeze, duration: 15}
boundaries: [{surface: xmax, type: fixed, temperature: 37}, {surface: zmax, type: convection}]
outputs: {snapshot_interval: 5, metrics_interval: 1, checkpoint_interval: {wall: null, simulated: 1}}
solver: {backend: cpu, max_dt: 0.25}
"""

IGNORED_ATTRS = {"created", "run_id", "dof_steps_per_s"}


def run_command(case, out, *extra, **popen):
    command = [sys.executable, "-m", "cryofield", "run", str(case), "-o", str(out), "--no-render",
               "--no-progress", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def h5_contents(path) -> dict:
    """Every dataset and attribute of a result, except the timings and what names the run or the moment."""
    out = {}

    def visit(name, obj):
        if name.startswith("timings"):
            return
        if isinstance(obj, h5py.Dataset):
            out[name] = obj[()]
        for key, value in obj.attrs.items():
            if key not in IGNORED_ATTRS:
                out[f"{name}@{key}"] = value

    with h5py.File(path) as f:
        visit("/", f)
        f.visititems(visit)
    return out


def assert_same_result(a, b):
    ca, cb = h5_contents(a), h5_contents(b)
    assert ca.keys() == cb.keys()
    for key in ca:
        if isinstance(ca[key], np.ndarray):
            np.testing.assert_array_equal(ca[key], cb[key], err_msg=key)
        else:
            assert ca[key] == cb[key], key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    (folder / "long.yaml").write_text(RUN_CASE)
    proc = run_command(folder / "long.yaml", folder / "out")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert not (folder / "out" / "long.checkpoint.h5").exists()  # a completed run removes its checkpoint
    return folder / "out" / "long.h5"


def started(proc, out, checkpoints: int = 1) -> None:
    """Wait until the run has saved ``checkpoints`` checkpoints (each replaces the file: a new inode and time)."""
    path, seen, deadline = out / "long.checkpoint.h5", set(), time.monotonic() + 300
    while len(seen) < checkpoints:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        try:
            info = path.stat()
            seen.add((info.st_ino, info.st_mtime_ns))  # inode numbers alone may be reused
        except FileNotFoundError:
            pass
        time.sleep(0.002)


def test_kill_9_at_random_moments_then_resume_gives_the_same_result(tmp_path, uninterrupted):
    reference = uninterrupted
    rng = random.Random(20261202)
    (tmp_path / "long.yaml").write_text(RUN_CASE)
    for attempt in range(3):
        out = tmp_path / f"out{attempt}"
        proc = run_command(tmp_path / "long.yaml", out)
        started(proc, out, rng.randint(2, 25))  # of the run's 40 checkpoints (one per simulated second)
        time.sleep(rng.uniform(0.0, 0.05))  # anywhere between two: mid-step, mid-output, mid-checkpoint
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert not (out / "long.h5").exists()  # nothing that looks complete
        resumed = run_command(tmp_path / "long.yaml", out, "--resume")
        _, err = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, err
        assert_same_result(out / "long.h5", reference)


def test_sigterm_saves_a_checkpoint_says_how_to_resume_and_the_resumed_run_matches(tmp_path, uninterrupted):
    reference = uninterrupted
    (tmp_path / "long.yaml").write_text(RUN_CASE)
    out = tmp_path / "out"
    proc = run_command(tmp_path / "long.yaml", out)
    started(proc, out, 10)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "stopped by SIGTERM: checkpoint at t =" in err and "--resume" in err
    assert (out / "long.checkpoint.h5").is_file() and not (out / "long.h5").exists()
    resumed = run_command(tmp_path / "long.yaml", out, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert_same_result(out / "long.h5", reference)
    assert not (out / "long.checkpoint.h5").exists()


def test_resume_refuses_the_checkpoint_of_another_case(tmp_path):
    (tmp_path / "long.yaml").write_text(RUN_CASE)
    out = tmp_path / "out"
    proc = run_command(tmp_path / "long.yaml", out)
    started(proc, out)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    (tmp_path / "long.yaml").write_text(RUN_CASE.replace("duration: 15", "duration: 16"))
    resumed = run_command(tmp_path / "long.yaml", out, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 2 and "belongs to another run (different case_sha256)" in err
