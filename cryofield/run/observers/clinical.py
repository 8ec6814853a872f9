"""The clinical reading of the dose fields: at every output time the fraction of each nerve's fibres injured
so far (``/clinical_fibres/NERVE``: ``time``, ``injured_fraction``), and once the run is over the damage
fraction, the profiles along each nerve (``/clinical``), every fibre's reading (``/clinical_fibres``) and
the summary's ``clinical`` block (:mod:`cryofield.outcomes.clinical`, :mod:`cryofield.outcomes.fibres`)."""

from __future__ import annotations

import json

import numpy as np

from cryofield.io.results import ResultWriter
from cryofield.model.roles import RoleTable, threshold_label
from cryofield.model.schedule import Segment
from cryofield.outcomes.clinical import damage_fraction
from cryofield.outcomes.fibres import fibre_arrays, injured
from cryofield.outcomes.inputs import ClinicalInputs
from cryofield.run.driver import Observer, RunState
from cryofield.run.observers.dose import DoseTracker


class ClinicalReadout(Observer):
    """Reads the clinical outcome off a :class:`~cryofield.run.observers.dose.DoseTracker` at the end of the run.

    Parameters
    ----------
    dose
        The run's dose tracker; it must follow the injury and the threshold-damage levels of ``limits``
        (:func:`cryofield.run.record.dose_levels`).
    inputs
        What the clinical reading needs besides the mesh and the fields
        (:meth:`cryofield.run.plan.Plan.clinical_inputs`:
        built once per run, and stored in the result beside the role table).
    points, tets, elem_region, region_names, roles
        The run's mesh, its regions and their role table.
    limits
        The run's thresholds (its role table's).
    """

    name = "clinical"

    def __init__(self, dose: DoseTracker, inputs: ClinicalInputs, points: np.ndarray, tets: np.ndarray,
                 elem_region: np.ndarray, region_names: list[str], roles: RoleTable):
        self.dose, self.inputs, self.limits = dose, inputs, roles.thresholds
        self.reading = inputs.reading(points, tets, elem_region, region_names, roles)
        self.rows: dict[str, list[float]] = {"time": []}

    def at_output(self, run: RunState, segment: Segment) -> None:
        """The injured fraction of each nerve's fibres at the injury level so far (for the time series)."""
        nerves, reading, limits = self.reading.fibre_nerves, self.reading, self.limits
        if not nerves:
            return
        T_min = self.dose.min_temperature(run)
        self.rows["time"].append(segment.end)
        for nerve in nerves:
            if not reading.touched(nerve, T_min, limits.injury_c):  # no fibre can be injured yet
                fraction = 0.0
            elif limits.fibre_min_length_mm > 0:  # the injured length needs the whole reading
                fibres = reading.bundle(nerve).read(T_min, None, (limits.injury_c,), limits)
                fraction = float(np.mean(injured(fibres, limits.injury_c, limits.fibre_min_length_mm)))
            else:
                fraction = reading.bundle(nerve).reached_fraction(T_min, limits.injury_c)
            self.rows.setdefault(nerve, []).append(fraction)

    def state(self, run: RunState) -> dict[str, np.ndarray]:
        return {name: np.asarray(values, float) for name, values in self.rows.items()}

    def restore(self, run: RunState, state: dict[str, np.ndarray]) -> None:
        self.rows = {name: [float(v) for v in np.atleast_1d(values)] for name, values in state.items()}
        self.rows.setdefault("time", [])

    def fields(self, run: RunState) -> dict[str, np.ndarray]:
        """The dose fields and the threshold damage fraction computed from them (``damage_fraction``)."""
        fields = self.dose.fields(run)
        below_damage = fields[f"time_below_{threshold_label(self.limits.damage_c)}"]
        return fields | {"damage_fraction": damage_fraction(fields["min_temperature"], below_damage, self.limits)}

    def write(self, writer: ResultWriter, run: RunState) -> None:
        """``/fields/damage_fraction`` beside the dose fields, and per nerve its profile along its centreline."""
        fields = self.fields(run)
        writer.write_arrays("fields", {"damage_fraction": fields["damage_fraction"]})
        for nerve, profile in self.reading.profiles(fields["min_temperature"], self._below_injury(fields)).items():
            writer.write_arrays(f"clinical/{nerve}", profile, {"profile_mm": self.limits.profile_mm})
        for nerve in self.reading.fibre_nerves:
            below = self._below_injury(fields)
            series = {"time": np.asarray(self.rows["time"], float),
                      "injured_fraction": np.asarray(self.rows.get(nerve, []), float)}
            if self.reading.touched(nerve, fields["min_temperature"]):  # a nerve that stayed warm has none read
                fibres = self.reading.read_fibres(nerve, fields["min_temperature"], below)
                series |= fibre_arrays(fibres)
                block = self.reading.fibre_block(nerve, fibres)
            else:
                block = self.reading.fibres_of(nerve, fields["min_temperature"], below)
            attrs = {"levels": np.asarray(self.reading.fibre_levels), "injury_c": self.limits.injury_c,
                     "summary": json.dumps(block)}
            writer.write_arrays(f"clinical_fibres/{nerve}", series, attrs)

    def summary(self, run: RunState) -> dict | None:
        """The ``clinical`` block, when the mesh has a nerve to read (:meth:`ClinicalReading.summary`)."""
        if not self.reading.nerves:
            return None
        fields = self.fields(run)
        clinical = self.reading.summary(fields["min_temperature"], time_below=self._below_injury(fields),
                                        damage=fields["damage_fraction"], walls=self.inputs.walls,
                                        targets=self.inputs.targets)
        return {"clinical": clinical} if clinical else None

    def _below_injury(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        return fields[f"time_below_{threshold_label(self.limits.injury_c)}"]
