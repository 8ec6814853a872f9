"""Stops a run whose temperatures drift out of the physically possible range (:mod:`cryofield.run.guards`)."""

from __future__ import annotations

import numpy as np

from cryofield.model.schedule import Segment
from cryofield.run.driver import Observer, RunState


class OutOfRange(RuntimeError):
    """A temperature outside what the run's boundaries, probes and initial state can produce."""

    def __init__(self, t: float, node: int, value: float, low: float, high: float):
        self.t, self.node, self.value = t, node, value
        super().__init__(f"at t = {t:.6g} s node {node} is at {value:.6g} °C, outside the {low:.4g} to {high:.4g} °C "
                         f"that the run's boundaries, probes and initial state allow")


class RangeGuard(Observer):
    """Stops the run when a temperature leaves the physically possible range [low, high] (°C) at an output time.

    The stepper itself stops at once on a NaN or an impossible change in one step
    (:class:`cryofield.timestepping.control.BlowUp`); this catches a slow drift out of range (a property in the wrong
    units, a source of the wrong sign).
    """

    name = "range_guard"

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def at_output(self, run: RunState, segment: Segment) -> None:
        T = run.temperature()
        bad = ~((T >= self.low) & (T <= self.high))  # NaN counts as bad
        if bad.any():
            node = int(np.flatnonzero(bad)[np.argmax(np.abs(np.nan_to_num(T[bad], nan=np.inf)))])
            raise OutOfRange(segment.end, node, float(T[node]), self.low, self.high)
