"""The ``warmer`` surface model (docs/physics.md §5): a heated contact or shaft segment at a set temperature,
through a contact conductance, with an optional power limit.

It records the heat it delivers after every step, reading only the temperatures of its own nodes
(:attr:`~cryofield.model.boundaries.SolverView.temperature_at`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cryofield.model.boundaries import BoundaryState, Context, Params, SolverView, Surface, register
from cryofield.model.boundaries.probes import Power, add_robin
from cryofield.model.boundaries.recording import RecordingModel
from cryofield.model.quantities import HeatTransferCoefficient, Temperature


@register
class Warmer(RecordingModel):
    """``warmer``: a heater at ``temperature`` in contact with the surface through a contact conductance,
    ``q = h (T_heater - T)`` into the tissue, at most ``max_power`` (W) in all.

    Put it on a heated proximal shaft segment (a placed probe's ``NAME_shaft``) or a heated contact on the
    skin around the entry (``NAME_contact``, placement ``contact_radius``). ``during: protocol`` (the
    default) runs it in every protocol phase and not in the basal state; ``always`` also there. The heat
    it delivers is recorded after every step.
    """

    kind, role = "warmer", "surface"
    columns = ("time", "phase", "power_W", "energy_J", "min_surface_C")
    kept_together = ("scale", "energy")

    class Params(Params):
        temperature: Temperature = 40.0
        heat_transfer_coefficient: HeatTransferCoefficient = 1000.0  # contact conductance (W/m²/K)
        max_power: Power | None = None
        during: Literal["protocol", "always"] = "protocol"

    def __init__(self, params: Params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.scale, self.phase, self.active, self.energy = 1.0, None, False, 0.0

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        self.active = phase is not None or self.params.during == "always"
        if self.active:
            add_robin(state, self.surface, self.scale * self.params.heat_transfer_coefficient, self.params.temperature)

    def update(self, view: SolverView) -> bool:
        if not self.active or self.phase is None:
            return False
        T = view.temperature_at(self.surface.nodes)
        hA = self.params.heat_transfer_coefficient * self.surface.area
        full = float(np.sum(hA * (self.params.temperature - T)))
        power = self.scale * full
        self.energy += power * max(view.t - self.series.last_time(self.phase.start), 0.0)
        self.series.add(view.t, self.phase.index, power, self.energy, float(T.min()))
        limit = self.params.max_power
        scale = 1.0 if limit is None or full <= limit else limit / full
        changed = scale != self.scale
        self.scale = scale
        return changed

    def stability_conductance(self) -> np.ndarray:
        return self.params.heat_transfer_coefficient * self.surface.area

    def figures(self) -> dict:
        r = self.records()
        return {"temperature_C": self.params.temperature, "heat_delivered_J": self.energy,
                "max_power_W": float(r["power_W"].max()) if len(r["power_W"]) else 0.0}
