"""The clinical reading of the dose fields once the run is over: the damage fraction, the profiles along
each nerve (``/clinical``) and the summary's ``clinical`` block (:mod:`cryofield.outcomes.clinical`)."""

from __future__ import annotations

import numpy as np

from cryofield.io.results import ResultWriter
from cryofield.model.roles import RoleTable, threshold_label
from cryofield.outcomes.clinical import damage_fraction
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
                                        damage=fields["damage_fraction"], walls=self.inputs.walls,
                                        targets=self.inputs.targets)
        return {"clinical": clinical} if clinical else None

    def _below_injury(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        return fields[f"time_below_{threshold_label(self.limits.injury_c)}"]
