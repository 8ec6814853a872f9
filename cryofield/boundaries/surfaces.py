"""Surface conditions in force all the time: ``boundaries: [{surface: NAME, type: KIND, ...}]``.

Surfaces not listed are insulated (zero flux), the natural condition of the weak form.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from ..quantities import HeatTransferCoefficient, Temperature
from . import BoundaryModel, BoundaryState, Params, register


@register
class FixedSurface(BoundaryModel):
    """``fixed``: the surface is held at ``temperature`` (°C), e.g. the body core far from the probe."""

    kind, role = "fixed", "surface"

    class Params(Params):
        temperature: Temperature

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        state.fixed[self.surface.nodes] = True
        state.fixed_temperature[self.surface.nodes] = self.params.temperature


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
        temperature: Temperature = 22.0
        heat_transfer_coefficient: HeatTransferCoefficient = 8.0

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        # lumped: hA_i = h A_i on the left, hA_i T_amb on the right
        hA = self.params.heat_transfer_coefficient * self.surface.area
        state.robin_coef[self.surface.nodes] += hA
        state.robin_rhs[self.surface.nodes] += hA * self.params.temperature

    def stability_conductance(self) -> np.ndarray:
        return self.params.heat_transfer_coefficient * self.surface.area


@register
class FluxSurface(BoundaryModel):
    """``flux``: a constant heat flux ``heat_flux`` (W/m²) into the tissue, negative when heat is drawn out
    (a constant-power probe; the line heat sink of docs/physics.md §7)."""

    kind, role = "flux", "surface"

    class Params(Params):
        heat_flux: Annotated[float, Field(ge=-1e7, le=1e7)]

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        state.robin_rhs[self.surface.nodes] += self.params.heat_flux * self.surface.area
