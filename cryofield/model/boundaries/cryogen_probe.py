"""The ``cryogen`` probe model (docs/physics.md §5): Robin exchange with the cryogen inside the needle,
``-k dT/dn = h (T - T_c)`` on the active surface, with ``h`` and ``T_c`` from a preset
(:data:`~cryofield.model.boundaries.cryogens.CRYOGENS`): ``h`` given, or scaled from a flow rate.

It records the heat it draws after every step, reading only the temperatures of its own nodes
(:attr:`~cryofield.model.boundaries.SolverView.temperature_at`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cryofield.model.boundaries import BoundaryState, Context, SolverView, Surface, phase_start, register
from cryofield.model.boundaries.cryogens import CryogenKeys
from cryofield.model.boundaries.probes import add_heat, add_robin, heater_power, set_point
from cryofield.model.boundaries.recording import RecordingModel


@register
class CryogenProbe(RecordingModel):
    """``cryogen``: the active surface exchanges heat with the cryogen, ``-k dT/dn = h (T - T_c)``.

    A freeze runs the cryogen (the phase's temperature is not used: ``T_c`` is the cryogen's); an active
    thaw or a hold exchanges with gas at the phase's temperature through the same ``h``, or runs a heater
    at the phase's ``power``; a passive thaw and the basal state leave the surface insulated. The heat
    drawn, ``Q = sum h A_i (T_i - T_c)``, is recorded after every step of a freeze.
    """

    kind, role = "cryogen", "probe"
    freeze_temperature: ClassVar[bool] = False
    columns = ("time", "phase", "heat_drawn_W", "energy_J", "surface_temperature_C")
    kept = ("energy",)

    class Params(CryogenKeys):
        pass

    def __init__(self, params: CryogenKeys, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.h, self.T_c = params.coefficient, params.temperature_at(0.0)
        self.phase = None
        self.energy = 0.0

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        if phase is None or phase.kind == "passive_thaw":
            return
        if phase.kind == "freeze":
            self.T_c = self.params.temperature_at(t, phase_start(phase))
            add_robin(state, self.surface, self.h, self.T_c)
        elif heater_power(phase, t) is not None:
            add_heat(state, self.surface, heater_power(phase, t))
        else:
            add_robin(state, self.surface, self.h, set_point(phase, t))

    def update(self, view: SolverView) -> bool:
        phase = self.phase
        if phase is None:
            return False
        T = view.temperature_at(self.surface.nodes)
        drawn = float(np.sum(self.h * self.surface.area * (T - self.T_c))) if phase.kind == "freeze" else 0.0
        last = self.series.last_time(phase.start)
        self.energy += drawn * max(view.t - max(last, phase.start), 0.0)
        self.series.add(view.t, phase.index, drawn, self.energy, np.average(T, weights=self.surface.area))
        return False

    def stability_conductance(self) -> np.ndarray:
        return self.h * self.surface.area

    def figures(self) -> dict:
        return {"cryogen": self.params.cryogen, "cryogen_temperature_C": self.T_c,
                "heat_transfer_coefficient_W_m2K": self.h, "cooling_delivered_J": self.energy}
