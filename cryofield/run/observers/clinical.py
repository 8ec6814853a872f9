"""The clinical reading of the dose fields once the run is over: the damage fraction, the profiles along
each nerve (``/clinical``) and the summary's ``clinical`` block (:mod:`cryofield.outcomes.clinical`)."""

from __future__ import annotations

import numpy as np

from cryofield.io.results import ResultWriter
from cryofield.model.roles import Thresholds
from cryofield.outcomes.clinical import ClinicalReading, damage_fraction
from cryofield.run.driver import Observer, RunState
from cryofield.run.observers.dose import DoseTracker
from cryofield.run.record import threshold_label


class ClinicalReadout(Observer):
    """Reads the clinical outcome off a :class:`~cryofield.run.observers.dose.DoseTracker` at the end of the run.

    Parameters
    ----------
    dose
        The run's dose tracker; it must follow the injury and the threshold-damage levels of ``limits``
        (:func:`cryofield.run.record.dose_levels`).
    reading, inputs
        The clinical reading of the run's mesh and what it needs besides the fields
        (:func:`cryofield.run.record.clinical_inputs`).
    limits
        The run's thresholds (its role table's).
    """

    name = "clinical"

    def __init__(self, dose: DoseTracker, reading: ClinicalReading, inputs: dict, limits: Thresholds):
        self.dose, self.reading, self.inputs, self.limits = dose, reading, inputs, limits

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

    def summary(self, run: RunState) -> dict | None:
        """The ``clinical`` block, when the mesh has a nerve to read (:meth:`ClinicalReading.summary`)."""
        if not self.reading.nerves:
            return None
        fields = self.fields(run)
        clinical = self.reading.summary(fields["min_temperature"], time_below=self._below_injury(fields),
                                        damage=fields["damage_fraction"], **self.inputs)
        return {"clinical": clinical} if clinical else None

    def _below_injury(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        return fields[f"time_below_{threshold_label(self.limits.injury_c)}"]
