"""The run's timeline: protocol phases, and the segments between output times that the driver steps through."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cryofield.model.curves import Curve, value_at, varies

if TYPE_CHECKING:
    from cryofield.config.case import PhaseSpec


@dataclass(frozen=True)
class Phase:
    """One protocol phase on the absolute time axis, as the boundary models see it.

    ``probe_temperature`` is the set point the phase drives the probes to (°C), None when they are off
    (a passive thaw) or heated at a ``power`` (W, an active thaw); either may be a
    :class:`~cryofield.model.curves.Curve` in time (:meth:`set_point`, :meth:`heater_power` give the value now).
    """

    index: int
    kind: str
    start: float
    end: float
    probe_temperature: float | Curve | None
    power: float | Curve | None = None

    def set_point(self, t: float) -> float | None:
        """The probe set point (°C) at absolute time ``t`` (s), None when the probes are off or heated."""
        return value_at(self.probe_temperature, t, self.start)

    def heater_power(self, t: float) -> float | None:
        """The heater power (W) at ``t`` (s), or None."""
        return value_at(self.power, t, self.start)

    @property
    def varies(self) -> bool:
        """Whether the set point or the power changes during the phase (the probes are assembled every step)."""
        return varies(self.probe_temperature, self.power)


@dataclass(frozen=True)
class Segment:
    """Simulated time from ``start`` to ``end`` (s) inside protocol phase ``phase`` (an index, -1: no protocol)."""

    start: float
    end: float
    phase: int
    snapshot: bool  # write a snapshot at ``end``
    metrics: bool  # record metrics at ``end``


def phase_bounds(protocol: Sequence[PhaseSpec]) -> np.ndarray:
    """Start times of the phases followed by the end of the last one."""
    return np.concatenate([[0.0], np.cumsum([p.duration for p in protocol])])


def phases(protocol: Sequence[PhaseSpec]) -> list[Phase]:
    """The protocol's phases with their absolute start and end times (s)."""
    bounds = phase_bounds(protocol)
    return [Phase(i, p.kind, float(bounds[i]), float(bounds[i + 1]), p.probe_temperature, p.power)
            for i, p in enumerate(protocol)]


def build_schedule(protocol: Sequence[PhaseSpec], snapshot_interval: float | None, metrics_interval: float | None,
                   output_times: Sequence[float] = (), end: float | None = None) -> list[Segment]:
    """Segments between consecutive events: phase switches, snapshot, metric and extra output times.

    Every phase end is also a snapshot, so the state at the end of each freeze is always stored.
    ``output_times`` (s) add metric records at those times; an interval of None adds none. ``end`` (s,
    default the end of the protocol) may run the timeline past the protocol or, without one, sets its length.

    Examples
    --------
    >>> from cryofield.config.case import PhaseSpec
    >>> segs = build_schedule([PhaseSpec(kind="freeze", duration=2.5)], 1.0, 1.0)
    >>> [(s.end, s.snapshot) for s in segs]
    [(1.0, True), (2.0, True), (2.5, True)]
    """
    bounds = phase_bounds(protocol)
    total = float(bounds[-1] if end is None else end)
    if total <= 0:
        return []
    eps = 1e-9 * max(total, 1.0)
    phase_ends = bounds[bounds <= total + eps]
    snaps = _multiples(snapshot_interval, total)
    metrics = np.concatenate([_multiples(metrics_interval, total), np.asarray(output_times, float)])
    events = np.unique(np.concatenate([phase_ends, [total], snaps, metrics]))
    events = events[np.concatenate([[True], np.diff(events) > eps])]
    segments = []
    for start, stop in zip(events[:-1], events[1:]):
        phase = int(np.searchsorted(bounds, start + eps, side="right") - 1) if protocol else -1
        is_bound = np.min(np.abs(bounds - stop)) < eps
        on_snap = np.min(np.abs(snaps - stop)) < eps if len(snaps) else False
        on_metric = np.min(np.abs(metrics - stop)) < eps if len(metrics) else False
        segments.append(Segment(float(start), float(stop), min(phase, len(protocol) - 1), bool(is_bound or on_snap),
                                bool(is_bound or on_snap or on_metric)))
    return segments


def _multiples(interval: float | None, total: float) -> np.ndarray:
    if interval is None:
        return np.empty(0)
    n = math.floor(total / interval + 1e-9)
    return interval * np.arange(1, n + 1)
