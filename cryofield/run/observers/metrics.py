"""The metric time series: probe temperatures, the coldest temperature and the frozen volumes per region."""

from __future__ import annotations

import numpy as np

from cryofield.fem.metrics import RegionMeasures, corner_radii
from cryofield.io.results import ResultWriter
from cryofield.model.schedule import Segment
from cryofield.problem.assemble import Problem
from cryofield.run.driver import Observer, RunState


class MetricsRecorder(Observer):
    """At every output time: mean probe temperature, minimum temperature and isotherm volumes per region."""

    name = "metrics"

    def __init__(self, problem: Problem, isotherms: list[float]):
        self.isotherms = list(isotherms)
        self.probes = problem.probes
        self.region_names = list(problem.region_names)
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

    def write(self, writer: ResultWriter, run: RunState) -> None:
        """``/metrics``: the series of :meth:`arrays`, and what their axes are (isotherms, regions, probes)."""
        writer.write_arrays("metrics", self.arrays(), {
            "levels": np.array(self.isotherms, float), "regions": np.array(self.region_names, dtype="S64"),
            "probes": np.array([p.name for p in self.probes], dtype="S64")})

    def summary(self, run: RunState) -> dict:
        """The largest frozen volume (mm³) per isotherm in all and per region, and each probe's coldest mean."""
        arrays = self.arrays()
        volume = arrays["volume_below"]  # (M, L, R) m³, summed before scaling to mm³ as the summary always did
        largest = {f"{level:g}": float(volume[:, i, :].sum(axis=1).max() * 1e9)
                   for i, level in enumerate(self.isotherms)}
        regions = {name: {"max_volume_below_mm3": {f"{level:g}": float(volume[:, i, r].max() * 1e9)
                                                   for i, level in enumerate(self.isotherms)}}
                   for r, name in enumerate(self.region_names)}
        probes = {p.name: {"min_temperature_C": float(np.min(arrays["probe_temperature"][:, i]))}
                  for i, p in enumerate(self.probes)}
        return {"total_volume_below_mm3": largest, "regions": regions, "probes": probes}
