"""The time loop: the stepper advances through the timeline, observers do everything else.

:func:`drive` is the only loop over simulated time. It switches the boundary conditions at each protocol
phase, lets time-dependent boundary models update between steps, and calls the observers (PyFR's
completed-step plug-ins): after every accepted step (:meth:`Observer.after_step`: dose trackers) and at
every output time (:meth:`Observer.at_output`: metrics, snapshots, progress). The loop knows no output;
each observer writes its own (:meth:`Observer.write`, :meth:`Observer.summary`) when the run is over
(:mod:`cryofield.run.observers`).

Examples
--------
Record the probe temperature at every output time of a small case:

>>> from cryofield.config.case import parse_case
>>> from cryofield.run.plan import prepare
>>> plan = prepare(parse_case('''
... mesh: {generate: {kind: slab, size: [4, 4, 4], cells: [3, 3, 3]}, units: mm}
... tissues: {tissue: {library: muscle}}
... probes: [{name: p, surface: zmin}]
... protocol: [{kind: freeze, duration: 2, temperature: -50}]
... initial: {type: uniform, temperature: 37}
... outputs: {snapshot_interval: 1, metrics_interval: 1}
... '''))
>>> class ProbeTemperature(Observer):
...     name = "probe_temperature"
...     def __init__(self):
...         self.rows = []
...     def at_output(self, run, segment):
...         self.rows.append((segment.end, round(float(run.temperature()[run.problem.probes[0].nodes].mean()), 1)))
>>> probe = ProbeTemperature()
>>> _ = drive(plan.timeline, plan.stepper("cpu"), [probe])
>>> probe.rows
[(0.0, 37.0), (1.0, -50.0), (2.0, -50.0)]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cryofield.errors import InputError
from cryofield.model.schedule import Phase, Segment
from cryofield.problem.assemble import Problem
from cryofield.timestepping.stepper import Stepper

if TYPE_CHECKING:
    from cryofield.io.results import ResultWriter
    from cryofield.run.checkpoint import Checkpointing, Saved


@dataclass(frozen=True)
class Timeline:
    """The protocol's phases and the segments between output times (:func:`cryofield.model.schedule.build_schedule`)."""

    phases: list[Phase]
    segments: list[Segment]

    def phase(self, index: int) -> Phase | None:
        """Phase ``index`` (None for -1: no protocol)."""
        return self.phases[index] if index >= 0 else None

    @property
    def end(self) -> float:
        return self.segments[-1].end if self.segments else 0.0


@dataclass
class RunState:
    """What observers see of a run in progress."""

    stepper: Stepper
    problem: Problem
    timeline: Timeline
    phase: Phase | None = None
    #: Wall seconds spent stepping (kernels and after-step observers) and in output observers.
    timings: dict[str, float] = field(default_factory=lambda: {"stepping_s": 0.0, "output_s": 0.0})

    @property
    def t(self) -> float:
        """Simulated time (s)."""
        return self.stepper.t

    def temperature(self) -> np.ndarray:
        """Nodal temperature now (°C), a float64 host copy."""
        return self.stepper.temperature_host()


class Observer:
    """A plug-in called by :func:`drive`; override the hooks it needs (each does nothing by default).

    An observer owns what it measures: during the run it keeps its rows (:meth:`at_output`,
    :meth:`after_step`), in a checkpoint its :meth:`state` under its :attr:`name`, and at the end its
    groups of the HDF5 result (:meth:`write`) and its entries of the JSON summary (:meth:`summary`).
    """

    #: What the run calls it: its group in a checkpoint, and by convention its entry in the JSON summary.
    #: Stable (kept across versions, so that a checkpoint resumes) and unique among a run's observers.
    name: ClassVar[str] = "observer"

    def start(self, run: RunState) -> None:
        """Before the first step."""

    def after_step(self, run: RunState, T_previous: Any, dt: float) -> None:
        """After each accepted step; ``T_previous`` (a backend array) is the temperature before it."""

    def at_output(self, run: RunState, segment: Segment) -> None:
        """At an output time: the start (a zero-length segment at t = 0), then the end of each segment."""

    def finish(self, run: RunState) -> None:
        """After the last step."""

    def state(self, run: RunState) -> dict[str, np.ndarray]:
        """What a checkpoint must keep of this observer (arrays by name); nothing by default."""
        return {}

    def restore(self, run: RunState, state: dict[str, np.ndarray]) -> None:
        """Take back :meth:`state` when a run resumes (after :meth:`start`)."""

    def write(self, writer: ResultWriter, run: RunState) -> None:
        """Write this observer's groups of the HDF5 result, once the run is over; nothing by default."""

    def summary(self, run: RunState) -> dict | None:
        """This observer's entries of the run's JSON summary, once the run is over (None: none).

        The entries are top-level keys of the summary; a nested dict is merged key by key with the
        other observers' (:func:`cryofield.run.record.merge`), so that several can fill in one entry such as
        ``regions``. A new observer puts its entry under its :attr:`name`.
        """
        return None

    def keeps_state(self) -> bool:
        """Whether a resumed run needs this observer's :meth:`state` (it overrides :meth:`state`)."""
        return type(self).state is not Observer.state


def drive(timeline: Timeline, stepper: Stepper, observers: Sequence[Observer] = (),
          checkpoint: Checkpointing | None = None, resume: Saved | None = None) -> RunState:
    """Advance ``stepper`` through ``timeline``, calling ``observers``; returns the final :class:`RunState`.

    ``checkpoint`` is asked after every step and every output whether to save the run
    (:mod:`cryofield.run.checkpoint`); ``resume`` continues a saved run from where it stopped, taking the
    very same steps as the uninterrupted run would have. This is :func:`drive_segments` with the
    stepper advancing itself to each segment's end.
    """
    return advance_alone(drive_segments(timeline, stepper, observers, checkpoint, resume), stepper)


def advance_alone(segments: Generator[tuple[float, Callable], None, Any], stepper: Stepper) -> Any:
    """Run the generator ``segments`` (:func:`drive_segments`) to its end with ``stepper`` advancing on its own
    to each end it asks for; returns the generator's value."""
    try:
        t_end, on_step = next(segments)
        while True:
            stepper.advance_to(t_end, on_step)
            t_end, on_step = segments.send(None)
    except StopIteration as done:
        return done.value


def drive_segments(timeline: Timeline, stepper: Stepper, observers: Sequence[Observer] = (),
                   checkpoint: Checkpointing | None = None,
                   resume: Saved | None = None) -> Generator[tuple[float, Callable], None, RunState]:
    """:func:`drive` as a generator: it yields ``(t_end, on_step)`` where the stepper must be advanced to
    ``t_end`` calling ``on_step`` after every accepted step, and returns the final :class:`RunState`.

    Whoever advances the stepper decides how: alone (:func:`drive`) or together with the other variants
    of its ensemble (:func:`cryofield.run.ensemble.drive_ensemble`). The loop is the same either way.
    """
    problem = stepper.problem
    run = RunState(stepper, problem, timeline)
    for observer in observers:
        observer.start(run)
    if resume is None:
        first = 0
        initial = timeline.segments[0].phase if timeline.segments else -1
        _output(run, observers, Segment(stepper.t, stepper.t, max(initial, 0) if timeline.phases else -1, True, True))
    else:
        first = _restore(run, observers, resume)
    if checkpoint is not None:
        checkpoint.at_output(run, observers)

    def on_step(T_previous: Any, dt: float) -> None:
        for observer in observers:
            observer.after_step(run, T_previous, dt)
        # time-dependent boundary models (ramps, controllers) update between steps, without a restart
        timed = run.phase is not None and run.phase.varies  # a set point or power given as a table in time
        if problem.boundaries.update(stepper.t, stepper.temperature_host,
                                     lambda nodes: stepper.temperature_host()[nodes]) or timed:
            stepper.set_boundaries(problem.boundary_state(run.phase, stepper.t), restart=False)
        if checkpoint is not None and stepper.t < segment.end:  # at a segment's end, after its outputs instead
            checkpoint.after_step(run, observers)

    for i in range(first, len(timeline.segments)):
        segment = timeline.segments[i]
        phase = timeline.phase(segment.phase)
        if resume is not None and i == first and phase is run.phase:
            # part way through a phase: the boundary arrays again, the solution and step size as saved
            stepper.load_boundaries(problem.boundary_state(phase, stepper.t))
        elif i == first or phase is not run.phase:
            run.phase = phase
            stepper.set_boundaries(problem.boundary_state(phase, stepper.t))
        t0 = time.perf_counter()
        yield segment.end, on_step
        stepper.backend.synchronize()
        run.timings["stepping_s"] += time.perf_counter() - t0
        if segment.metrics:
            _output(run, observers, segment)
        if checkpoint is not None:
            checkpoint.at_output(run, observers)
    for observer in observers:
        observer.finish(run)
    return run


def _restore(run: RunState, observers: Sequence[Observer], saved: Saved) -> int:
    """Put a saved run back in place; returns the index of the segment to continue with."""
    run.stepper.restore(saved.stepper)
    run.problem.boundaries.restore_models(saved.boundaries)
    for observer, state in zip(observers, saved.observer_states(observers)):
        if state is not None:
            observer.restore(run, state)
        elif observer.keeps_state():  # it would go on from a fresh start: a result unlike the uninterrupted one's
            raise InputError(f"the checkpoint holds no state of the observer {observer.name!r}; remove it or run "
                             "without --resume", source=str(saved.path), key="--resume")
    run.phase = run.timeline.phase(saved.phase)
    run.timings.update(saved.timings)
    ends = np.array([s.end for s in run.timeline.segments])
    return int(np.searchsorted(ends, run.stepper.t + 1e-12 * max(abs(run.stepper.t), 1e-6), side="left"))


def _output(run: RunState, observers: Sequence[Observer], segment: Segment) -> None:
    t0 = time.perf_counter()
    for observer in observers:
        observer.at_output(run, segment)
    run.timings["output_s"] += time.perf_counter() - t0
