"""The nodal temperature at chosen times, kept in memory (for studies that compare fields, not files)."""

from __future__ import annotations

import numpy as np

from cryofield.model.schedule import Segment
from cryofield.run.driver import Observer, RunState


class TemperatureRecorder(Observer):
    """Keeps the nodal temperature at chosen output times (for studies that compare fields, not files)."""

    name = "temperatures"

    def __init__(self, times: list[float]):
        self.times = list(times)
        self.found: dict[float, np.ndarray] = {}

    def at_output(self, run: RunState, segment: Segment) -> None:
        for t in self.times:
            if abs(segment.end - t) <= 1e-9 * max(abs(t), 1.0):
                self.found[t] = run.temperature()

    def fields(self) -> list[np.ndarray]:
        """The temperatures in the order of ``times``."""
        return [self.found[t] for t in self.times]
