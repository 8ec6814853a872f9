"""The observers of a run (:class:`cryofield.run.driver.Observer`): dose trackers, metrics, snapshots, progress.

Each has one job. :class:`DoseTracker` runs on the backend after every step; the others work at output
times on host copies. A new measure is a new observer here (or anywhere) passed to
:func:`cryofield.run.driver.drive`.
"""

from __future__ import annotations

import numpy as np

from cryofield.fem.metrics import RegionMeasures, corner_radii
from cryofield.io.results import ResultWriter
from cryofield.model.schedule import Segment
from cryofield.problem.assemble import Problem
from cryofield.run.driver import Observer, RunState


class DoseTracker(Observer):
    """Per node, on the backend: the running minimum temperature and the time spent below each threshold.

    The stepper's ensemble advances the trackers of all its variants in one pass after every step
    (:meth:`cryofield.timestepping.stepper.Ensemble.track_doses`); this observer starts them and reads them back.

    Parameters
    ----------
    thresholds
        Temperatures (°C); the time below each is linear in time within a step (:func:`cryofield.kernels.bodies.track_at`).
    """

    def __init__(self, thresholds: list[float] | tuple[float, ...]):
        self.levels = list(thresholds)

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


class MetricsRecorder(Observer):
    """At every output time: mean probe temperature, minimum temperature and isotherm volumes per region."""

    def __init__(self, problem: Problem, isotherms: list[float]):
        self.isotherms = list(isotherms)
        self.probes = problem.probes
        self.regions = RegionMeasures(problem.mesh.tets, problem.volumes, problem.elem_mat, problem.region_names,
                                      problem.node_ptr, problem.node_slot,
                                      corner_radii(problem.mesh.points, problem.mesh.tets))
        self.rows: dict[str, list] = {"time": [], "phase": [], "probe_temperature": [], "region_min_temperature": [],
                                      "volume_below": []}

    def at_output(self, run: RunState, segment: Segment) -> None:
        T = run.temperature()
        rows = self.rows
        rows["time"].append(segment.end)
        rows["phase"].append(segment.phase)
        rows["probe_temperature"].append([T[p.nodes].mean() for p in self.probes])
        rows["region_min_temperature"].append(self.regions.min_temperature(T))
        rows["volume_below"].append(self.regions.volumes_below(T, self.isotherms))

    def state(self, run: RunState) -> dict:
        return self.arrays()

    def restore(self, run: RunState, state: dict) -> None:
        self.rows = {name: list(np.asarray(values)) for name, values in state.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        """The rows as arrays: time (M,), phase (M,), probe_temperature (M, P), region_min_temperature (M, R),
        volume_below (M, L, R) m³."""
        rows, m = self.rows, len(self.rows["time"])
        return {"time": np.array(rows["time"]), "phase": np.array(rows["phase"], np.int32),
                "probe_temperature": np.array(rows["probe_temperature"], float).reshape(m, len(self.probes)),
                "region_min_temperature": np.array(rows["region_min_temperature"]),
                "volume_below": np.array(rows["volume_below"])}


class SnapshotWriter(Observer):
    """Writes the requested nodal fields to the result at every snapshot time."""

    def __init__(self, writer: ResultWriter, fields: list[str]):
        self.writer, self.fields = writer, fields

    def at_output(self, run: RunState, segment: Segment) -> None:
        if not segment.snapshot:
            return
        T = run.temperature()
        fields = {"temperature": T}
        if "liquid_fraction" in self.fields:
            fields["liquid_fraction"] = run.problem.liquid_fraction(T)
        if "enthalpy" in self.fields:
            fields["enthalpy"] = run.stepper.enthalpy_host()
        self.writer.write_snapshot(segment.end, segment.phase, fields)

    def state(self, run: RunState) -> dict:
        """Every snapshot written so far (read back from the result being written)."""
        return self.writer.snapshots_so_far()

    def restore(self, run: RunState, state: dict) -> None:
        for i, (t, phase) in enumerate(zip(state["time"], state["phase"])):
            fields = {name[len("field_"):]: values[i] for name, values in state.items() if name.startswith("field_")}
            self.writer.write_snapshot(float(t), int(phase), fields)


class TemperatureRecorder(Observer):
    """Keeps the nodal temperature at chosen output times (for studies that compare fields, not files)."""

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

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def at_output(self, run: RunState, segment: Segment) -> None:
        T = run.temperature()
        bad = ~((T >= self.low) & (T <= self.high))  # NaN counts as bad
        if bad.any():
            node = int(np.flatnonzero(bad)[np.argmax(np.abs(np.nan_to_num(T[bad], nan=np.inf)))])
            raise OutOfRange(segment.end, node, float(T[node]), self.low, self.high)


class ProgressBar(Observer):
    """A live tqdm bar: simulated time, wall time, ETA, the protocol phase and DOF-steps/s."""

    def start(self, run: RunState) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=run.timeline.end, unit="s", unit_scale=False, dynamic_ncols=True, desc="simulated",
                        bar_format="{desc}: {n:.1f}/{total:.1f} s |{bar}| wall {elapsed} ETA {remaining}{postfix}")

    def at_output(self, run: RunState, segment: Segment) -> None:
        self.bar.update(segment.end - self.bar.n)  # from the bar's own count: a resumed run starts part way
        stats, stepping = run.stepper.stats, max(run.timings["stepping_s"], 1e-9)
        rate = run.problem.n_nodes * stats.equivalent_applications / stepping
        phase = f"phase {run.phase.index + 1}/{len(run.timeline.phases)} {run.phase.kind}, " if run.phase else ""
        self.bar.set_postfix_str(f"{phase}{rate / 1e6:.1f} M DOF-steps/s", refresh=False)

    def finish(self, run: RunState) -> None:
        self.bar.close()
