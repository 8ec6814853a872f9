"""The run's timeline: protocol phases cut into segments that end exactly on every output time."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .case import PhaseSpec


@dataclass(frozen=True)
class Segment:
    """Simulated time from ``start`` to ``end`` (s) inside protocol phase ``phase`` (an index)."""

    start: float
    end: float
    phase: int
    snapshot: bool  # write a snapshot at ``end``
    metrics: bool  # record metrics at ``end``


def phase_bounds(protocol: list[PhaseSpec]) -> np.ndarray:
    """Start times of the phases followed by the end of the last one."""
    return np.concatenate([[0.0], np.cumsum([p.duration for p in protocol])])


def build_schedule(protocol: list[PhaseSpec], snapshot_interval: float, metrics_interval: float) -> list[Segment]:
    """Segments between consecutive events: phase switches, snapshot and metric times.

    Every phase end is also a snapshot, so the state at the end of each freeze is always stored.

    Examples
    --------
    >>> from cryofield.case import PhaseSpec
    >>> segs = build_schedule([PhaseSpec(kind="freeze", duration=2.5)], 1.0, 1.0)
    >>> [(s.end, s.snapshot) for s in segs]
    [(1.0, True), (2.0, True), (2.5, True)]
    """
    bounds = phase_bounds(protocol)
    total = bounds[-1]
    if total <= 0:
        return []
    eps = 1e-9 * max(total, 1.0)
    snaps = _multiples(snapshot_interval, total)
    metrics = _multiples(metrics_interval, total)
    events = np.unique(np.concatenate([bounds, snaps, metrics]))
    events = events[np.concatenate([[True], np.diff(events) > eps])]
    segments = []
    for start, end in zip(events[:-1], events[1:]):
        phase = int(np.searchsorted(bounds, start + eps, side="right") - 1)
        is_bound = np.min(np.abs(bounds - end)) < eps
        on_snap = np.min(np.abs(snaps - end)) < eps if len(snaps) else False
        on_metric = np.min(np.abs(metrics - end)) < eps if len(metrics) else False
        segments.append(Segment(float(start), float(end), min(phase, len(protocol) - 1), bool(is_bound or on_snap),
                                bool(is_bound or on_snap or on_metric)))
    return segments


def _multiples(interval: float, total: float) -> np.ndarray:
    n = math.floor(total / interval + 1e-9)
    return interval * np.arange(1, n + 1)


def steps_for(segment: Segment, max_dt: float) -> tuple[int, float]:
    """Number of equal steps no longer than ``max_dt`` that exactly cover ``segment``, and their size."""
    length = segment.end - segment.start
    n = max(1, math.ceil(length / max_dt - 1e-9))
    return n, length / n
