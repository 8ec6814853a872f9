"""Probe models: a probe's active surface driven by the protocol, ``probes: [{name, surface, model, ...}]``.

The protocol phase gives the set point (docs/physics.md §5): a freeze's cryogen temperature, an active
thaw's warming temperature, a hold's temperature; in a passive thaw (set point None) and in the basal
state the probe is off and its surface insulated. An active thaw given a heater ``power`` instead puts
that power through the active surface (a flux spread by area), whatever the model.

The device models have a module each: :mod:`.cryogen_probe` and :mod:`.controlled_probe` (cryogen presets in
:mod:`.cryogens`, the thermocouple in :mod:`.sensors`), :mod:`.warmer` and :mod:`.vessel`, their records in
:mod:`.recording`. The term helpers here (set point, heater power, a heat flow, a Robin exchange) serve them too.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from cryofield.model.boundaries import BoundaryModel, BoundaryState, Params, Surface, phase_start, register
from cryofield.model.curves import bounds, value_at, varying
from cryofield.model.quantities import HeatTransferCoefficient

#: A heater's power (W): a probe's heater, a warmer's limit.
Power = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


def set_point(phase, t: float) -> float | None:
    """The probe temperature the phase drives at ``t`` (°C), or None when the probe is off (or heated at a power)."""
    return None if phase is None else value_at(phase.probe_temperature, t, phase_start(phase))


def heater_power(phase, t: float) -> float | None:
    """The heater power (W) an active-thaw phase runs the probe at ``t``, or None."""
    return None if phase is None else value_at(phase.power, t, phase_start(phase))


def add_heat(state: BoundaryState, surface, power: float) -> None:
    """``power`` (W) into the tissue through ``surface``, spread over it in proportion to area (a flux)."""
    state.robin_rhs[surface.nodes] += power * surface.area / surface.area.sum()


def add_robin(state: BoundaryState, surface: Surface, h: float, temperature: float) -> None:
    """A Robin exchange ``-k dT/dn = h (T - temperature)`` on ``surface``, lumped: ``h A_i`` on the left,
    ``h A_i temperature`` on the right."""
    hA = h * surface.area
    state.robin_coef[surface.nodes] += hA
    state.robin_rhs[surface.nodes] += hA * temperature


@register
class FixedProbe(BoundaryModel):
    """``fixed``: the active surface is held at the phase's temperature (an ideal probe)."""

    kind, role = "fixed", "probe"

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        target = set_point(phase, t)
        if target is not None:
            state.fixed[self.surface.nodes] = True
            state.fixed_temperature[self.surface.nodes] = target
        elif heater_power(phase, t) is not None:
            add_heat(state, self.surface, heater_power(phase, t))


@register
class ConvectiveProbe(BoundaryModel):
    """``convective``: -k dT/dn = h (T - T_phase) on the active surface, the cryogen's film coefficient ``h``."""

    kind, role = "convective", "probe"

    class Params(Params):
        heat_transfer_coefficient: varying(HeatTransferCoefficient) = 3000.0

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        target = set_point(phase, t)
        if target is not None:
            h = value_at(self.params.heat_transfer_coefficient, t, phase_start(phase))
            hA = h * self.surface.area
            state.robin_coef[self.surface.nodes] += hA
            state.robin_rhs[self.surface.nodes] += hA * target
        elif heater_power(phase, t) is not None:
            add_heat(state, self.surface, heater_power(phase, t))

    def stability_conductance(self) -> np.ndarray:
        return bounds(self.params.heat_transfer_coefficient)[1] * self.surface.area
