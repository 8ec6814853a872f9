"""Checkpoints: save a run part way and resume it to the very result an uninterrupted run gives.

A checkpoint (``DIR/NAME.checkpoint.h5``) holds everything that determines the rest of the run: the
stepper's enthalpy, temperature, time, step size and counters; each observer's state (dose trackers, the
metric rows and the snapshots written so far) under the observer's name, ``observers/<name>``; each boundary
model's state (controllers); the protocol phase in force. A checkpoint of format version 1 named the
observers' groups by position and class, ``observers/NN_ClassName``; it still resumes, each group going
to the observer of that class (:meth:`Saved.observer_states`).

``cryofield run CASE -o DIR --resume`` rebuilds the run from the case, checks the checkpoint's fingerprint
(the validated case, the mesh, the cryofield version, the backend and the precision) and continues from it;
with the same backend and precision the result is bit-identical to an uninterrupted run, because the
stepper takes the very same steps from the very same arrays.

When: ``outputs.checkpoint_interval`` (``wall`` seconds and/or ``simulated`` seconds, whichever comes
first), and always when the run is asked to stop (SIGTERM, SIGINT): the checkpoint is written at the next
step and the run exits with :data:`cryofield.errors.EXIT_INTERRUPTED`. A checkpoint is written under a temporary name,
flushed to disk and renamed over the previous one, so a run killed at any moment (even ``kill -9``)
leaves the previous checkpoint or the new one, never a partial file under the final name; a write that
fails (a full disk) removes its temporary file and keeps the previous checkpoint. A completed run
removes its checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cryofield.errors import InputError, Interrupted, OutputFailed
from cryofield.version import __version__

FORMAT = "cryofield-checkpoint"
FORMAT_VERSION = 2  # 2: observers' groups by name (1: by position and class, NN_ClassName)


@dataclass
class Saved:
    """A checkpoint read back: what :func:`cryofield.run.driver.drive` needs to resume."""

    stepper: dict
    #: Each observer's state by its group's name: the observer's name (format version 1: ``NN_ClassName``).
    observers: dict[str, dict]
    boundaries: list[dict]
    phase: int
    timings: dict[str, float]
    path: Path
    format_version: int = FORMAT_VERSION

    def observer_states(self, observers: Sequence) -> list[dict | None]:
        """The saved state of each of ``observers`` (None where the checkpoint has none).

        By name; in a checkpoint of format version 1, by class: the groups ``NN_ClassName`` go, in the order
        they were written, to the observers of that class in the order given.
        """
        if self.format_version >= 2:
            return [self.observers.get(observer.name) for observer in observers]
        by_class: dict[str, list[dict]] = {}
        for group in sorted(self.observers):  # NN_ is the position it was written at
            by_class.setdefault(group.partition("_")[2], []).append(self.observers[group])
        return [_take_first(by_class.get(type(observer).__name__, [])) for observer in observers]


def _take_first(states: list[dict]) -> dict | None:
    return states.pop(0) if states else None


def fingerprint(case_yaml: str, points: np.ndarray, tets: np.ndarray, backend: str, precision: str) -> dict:
    """What must match for a checkpoint to continue a run: the case, the mesh, the version, backend, precision."""
    mesh = hashlib.sha256(np.ascontiguousarray(points).tobytes() + np.ascontiguousarray(tets).tobytes())
    return {"case_sha256": hashlib.sha256(case_yaml.encode()).hexdigest(), "mesh_sha256": mesh.hexdigest(),
            "cryofield_version": __version__, "backend": backend, "precision": precision}


def checkpoint_path(out_dir: Path, name: str) -> Path:
    """Where the run named ``name`` keeps its checkpoint."""
    return Path(out_dir) / f"{name}.checkpoint.h5"


@dataclass
class Checkpointing:
    """Decides when to save the run, and saves it; the driver calls it after each step and each output.

    Parameters
    ----------
    path
        The checkpoint file.
    identity
        The run's :func:`fingerprint`.
    wall_interval, simulated_interval
        Save when this many wall seconds or simulated seconds have passed since the last save (None: never).
    """

    path: Path
    identity: dict
    wall_interval: float | None = None
    simulated_interval: float | None = None
    stop_requested: str | None = None
    written: int = 0
    write_seconds: list[float] = field(default_factory=list)

    def __post_init__(self):
        self._last_wall = time.monotonic()
        self._last_t: float | None = None
        # a run killed while writing leaves its temporary file; the name's lock says no one else is writing
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    def request_stop(self, signal_name: str) -> None:
        """Save at the next step, then stop the run (:class:`Interrupted`)."""
        self.stop_requested = signal_name

    def after_step(self, run, observers: Sequence) -> None:
        self._maybe_save(run, observers)

    def at_output(self, run, observers: Sequence) -> None:
        if self._last_t is None:
            self._last_t = run.t  # the run starts (or resumes) here
        self._maybe_save(run, observers)

    def _maybe_save(self, run, observers: Sequence) -> None:
        due = self.stop_requested is not None
        if self.wall_interval is not None and time.monotonic() - self._last_wall >= self.wall_interval:
            due = True
        if self.simulated_interval is not None and self._last_t is not None \
                and run.t - self._last_t >= self.simulated_interval - 1e-9:
            due = True
        if not due:
            return
        self.save(run, observers)
        if self.stop_requested is not None:
            raise Interrupted(self.stop_requested, run.t, self.path)

    def save(self, run, observers: Sequence) -> None:
        """Write the run's state atomically (temporary file, flush, rename over the previous checkpoint)."""
        _check_names(observers)
        t0 = time.perf_counter()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **self.identity,
                                "phase": -1 if run.phase is None else run.phase.index, "t": run.t,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
                _write_group(f.create_group("stepper"), run.stepper.state())
                _write_group(f.create_group("timings"), dict(run.timings))
                group = f.create_group("observers")
                for observer in observers:
                    _write_group(group.create_group(observer.name), observer.state(run))
                group = f.create_group("boundaries")
                for i, state in enumerate(run.problem.boundaries.model_states()):
                    _write_group(group.create_group(f"{i:03d}"), state)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OutputFailed(self.path, exc) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._last_wall, self._last_t = time.monotonic(), run.t
        self.written += 1
        self.write_seconds.append(time.perf_counter() - t0)

    def report(self) -> dict:
        """How many checkpoints this run wrote, how long one took (median, s) and the last one's size (bytes)."""
        seconds = sorted(self.write_seconds)
        return {"written": self.written, "median_write_s": seconds[len(seconds) // 2] if seconds else None,
                "bytes": self.path.stat().st_size if self.written and self.path.is_file() else None}

    def remove(self) -> None:
        """The run completed: its checkpoint is obsolete."""
        self.path.unlink(missing_ok=True)


def load(path: Path, identity: dict) -> Saved:
    """Read a checkpoint written for a run with ``identity`` (:func:`fingerprint`).

    Raises
    ------
    InputError
        For a file that is not a complete checkpoint, or one from another case, mesh, version, backend or
        precision (the message says which).
    """
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError("not a cryofield checkpoint", source=str(path))
            differ = [k for k, v in identity.items() if _text(f.attrs.get(k)) != v]
            if differ:
                raise InputError(f"the checkpoint belongs to another run (different {', '.join(differ)}); remove "
                                 f"it or run without --resume", source=str(path), key="--resume")
            observers = {name: _read_group(group) for name, group in f["observers"].items()}
            boundaries = [_read_group(f["boundaries"][name]) for name in sorted(f["boundaries"])]
            timings = {k: float(v) for k, v in _read_group(f["timings"]).items()}
            return Saved(stepper=_read_group(f["stepper"]), observers=observers, boundaries=boundaries,
                         phase=int(f.attrs["phase"]), timings=timings, path=Path(path),
                         format_version=int(f.attrs.get("format_version", 1)))
    except (OSError, KeyError) as exc:
        raise InputError(f"cannot read the checkpoint: {exc}", source=str(path), key="--resume") from exc


class StopOnSignals:
    """While active, SIGTERM and SIGINT ask ``checkpointing`` to save and stop instead of killing the run."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpointing: Checkpointing):
        self.checkpointing = checkpointing
        self.previous: dict = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():  # elsewhere (a worker thread) Python allows none
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.checkpointing.request_stop(signal.Signals(signum).name)


def _check_names(observers: Sequence) -> None:
    """Refuse observers that share a name: their states would overwrite each other's in the checkpoint."""
    names = [observer.name for observer in observers]
    shared = sorted({name for name in names if names.count(name) > 1})
    if shared:
        raise ValueError(f"observers share the name {', '.join(map(repr, shared))}: give each a name of its own "
                         "(Observer.name), the key of its state in a checkpoint")


def _write_group(group: h5py.Group, values: dict) -> None:
    for name, value in values.items():
        if np.ndim(value) == 0:
            group.attrs[name] = value
        else:
            group.create_dataset(name, data=np.asarray(value))


def _read_group(group: h5py.Group) -> dict:
    out = {name: group.attrs[name] for name in group.attrs}
    out.update({name: group[name][()] for name in group})
    return out


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else (None if value is None else str(value))
