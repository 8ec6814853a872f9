"""Surface conditions in force all the time: ``boundaries: [{surface: NAME, type: KIND, ...}]``.

Surfaces not listed are insulated (zero flux), the natural condition of the weak form. Every value may be
a table in time (:mod:`cryofield.model.curves`): ``time: phase`` counts from the start of the phase in force.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from cryofield.model.boundaries import BoundaryModel, BoundaryState, Params, phase_start, register
from cryofield.model.curves import bounds, value_at, varying
from cryofield.model.quantities import HeatTransferCoefficient, Temperature


@register
class FixedSurface(BoundaryModel):
    """``fixed``: the surface is held at ``temperature`` (°C), e.g. the body core far from the probe."""

    kind, role = "fixed", "surface"

    class Params(Params):
        temperature: varying(Temperature)

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        state.fixed[self.surface.nodes] = True
        state.fixed_temperature[self.surface.nodes] = value_at(self.params.temperature, t, phase_start(phase))


@register
class InsulatedSurface(BoundaryModel):
    """``insulated``: no heat crosses the surface (the default for surfaces not listed)."""

    kind, role = "insulated", "surface"

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        pass


@register
class ConvectionSurface(BoundaryModel):
    """``convection``: -k dT/dn = h (T - T_amb); defaults are skin to still room air (8 W/m²/K, 22 °C)."""

    kind, role = "convection", "surface"

    class Params(Params):
        temperature: varying(Temperature) = 22.0
        heat_transfer_coefficient: varying(HeatTransferCoefficient) = 8.0

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        # lumped: hA_i = h A_i on the left, hA_i T_amb on the right
        start = phase_start(phase)
        hA = value_at(self.params.heat_transfer_coefficient, t, start) * self.surface.area
        state.robin_coef[self.surface.nodes] += hA
        state.robin_rhs[self.surface.nodes] += hA * value_at(self.params.temperature, t, start)

    def stability_conductance(self) -> np.ndarray:
        return bounds(self.params.heat_transfer_coefficient)[1] * self.surface.area


@register
class FluxSurface(BoundaryModel):
    """``flux``: a constant heat flux ``heat_flux`` (W/m²) into the tissue, negative when heat is drawn out
    (a constant-power probe; the line heat sink of docs/physics.md §7)."""

    kind, role = "flux", "surface"

    class Params(Params):
        heat_flux: varying(Annotated[float, Field(ge=-1e7, le=1e7)])

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        q = value_at(self.params.heat_flux, t, phase_start(phase))
        state.robin_rhs[self.surface.nodes] += q * self.surface.area
