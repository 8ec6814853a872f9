"""Per node, the coldest temperature and the time below each threshold: the dose fields of ``/fields``."""

from __future__ import annotations

import numpy as np

from cryofield.io.results import ResultWriter
from cryofield.model.roles import threshold_label
from cryofield.run.driver import Observer, RunState


class DoseTracker(Observer):
    """Per node, on the backend: the running minimum temperature and the time spent below each threshold.

    The stepper's ensemble advances the trackers of all its variants in one pass after every step
    (:meth:`cryofield.timestepping.stepper.Ensemble.track_doses`); this observer starts them and reads them back.

    Parameters
    ----------
    thresholds
        Temperatures (°C); the time below each is linear in time within a step
        (:func:`cryofield.kernels.bodies.track_at`).
    reported
        The thresholds whose longest time below each region's nodes the summary lists (default: all).
    """

    name = "dose"

    def __init__(self, thresholds: list[float] | tuple[float, ...], reported: list[float] | None = None):
        self.levels = list(thresholds)
        self.reported = self.levels if reported is None else list(reported)

    def start(self, run: RunState) -> None:
        run.stepper.track_doses(self.levels)

    def state(self, run: RunState) -> dict:
        T_min, time_below = run.stepper.dose_arrays()
        return {"T_min": T_min, "time_below": time_below}

    def restore(self, run: RunState, state: dict) -> None:
        run.stepper.restore_doses(state["T_min"], state["time_below"])

    def min_temperature(self, run: RunState) -> np.ndarray:
        """(N,) minimum temperature so far (°C), host float64."""
        return run.stepper.dose_arrays()[0].astype(float)

    def times_below(self, run: RunState) -> np.ndarray:
        """(K, N) seconds below each threshold so far, host float64."""
        return run.stepper.dose_arrays()[1].astype(float)

    def fields(self, run: RunState) -> dict[str, np.ndarray]:
        """The dose fields as the result names them: ``min_temperature`` and ``time_below_LABEL`` per threshold
        (:func:`cryofield.model.roles.threshold_label`)."""
        below = self.times_below(run)
        return {"min_temperature": self.min_temperature(run)} | {
            f"time_below_{threshold_label(level)}": below[k] for k, level in enumerate(self.levels)}

    def write(self, writer: ResultWriter, run: RunState) -> None:
        writer.write_arrays("fields", self.fields(run))

    def summary(self, run: RunState) -> dict:
        """Per region, its coldest temperature and the longest time one of its nodes spent below each
        reported threshold."""
        fields, problem = self.fields(run), run.problem
        regions = {}
        for r, name in enumerate(problem.region_names):
            nodes = np.unique(problem.mesh.tets[problem.elem_mat == r])
            regions[name] = {
                "min_temperature_C": float(fields["min_temperature"][nodes].min()),
                "max_time_below_s": {f"{level:g}": float(fields[f"time_below_{threshold_label(level)}"][nodes].max())
                                     for level in self.reported}}
        return {"regions": regions}
