"""The ``vessel`` surface model (docs/physics.md §5): the lumen wall of an artery exchanging heat with blood
at 37 °C through a Nusselt correlation for its diameter and flow; it may sit on an interior surface.

It records the heat the blood delivers after every step, reading only the temperatures of its own nodes
(:attr:`~cryofield.model.boundaries.SolverView.temperature_at`).

Examples
--------
>>> round(nusselt(95.0, 24.3, 2.5e-3, 10e-3, "developing"), 1)
13.9
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from cryofield.errors import InputError
from cryofield.model.boundaries import BoundaryState, Context, Params, SolverView, Surface, register
from cryofield.model.boundaries.probes import add_robin
from cryofield.model.boundaries.recording import RecordingModel
from cryofield.model.quantities import HeatTransferCoefficient, Temperature


def nusselt(reynolds: float, prandtl: float, diameter: float, length: float, correlation: str) -> float:
    """Nusselt number of flow in a tube with a wall at a different temperature (docs/physics.md §5).

    Laminar (Re < 2300): 3.66 fully developed; developing (the wall differs over ``length`` only), Hausen's
    ``3.66 + 0.0668 Gz / (1 + 0.04 Gz^(2/3))``, ``Gz = Re Pr D / L``. Turbulent: Gnielinski.
    """
    if reynolds >= 2300.0:
        f = (0.790 * np.log(reynolds) - 1.64) ** -2
        return float((f / 8) * (reynolds - 1000.0) * prandtl / (1 + 12.7 * np.sqrt(f / 8) * (prandtl ** (2 / 3) - 1)))
    if correlation == "fully_developed":
        return 3.66
    graetz = reynolds * prandtl * diameter / length
    return float(3.66 + 0.0668 * graetz / (1 + 0.04 * graetz ** (2 / 3)))


@register
class VesselWall(RecordingModel):
    """``vessel``: the lumen wall exchanges heat with blood at ``blood_temperature`` through ``h = Nu k / D``,
    Nu from the lumen's diameter and the flow (:func:`nusselt`), ``-k dT/dn = h (T - T_b)``; always on, so
    the vessel warms its surroundings. ``heat_transfer_coefficient`` overrides the correlation; the diameter
    defaults to the mesh's (metadata ``sections`` or ``diameters`` of the region the surface bounds)."""

    kind, role = "vessel", "surface"
    allows_interior: ClassVar[bool] = True
    columns = ("time", "phase", "power_W", "energy_J", "min_wall_C")
    kept = ("energy",)

    class Params(Params):
        blood_temperature: Temperature = 37.0
        flow_rate: Annotated[float, Field(gt=0, le=5000, allow_inf_nan=False)] = 37.5  # mL/min
        diameter: Annotated[float, Field(gt=0, le=50, allow_inf_nan=False)] | None = None  # in the mesh's units
        heated_length: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] = 10.0  # in the mesh's units
        correlation: Literal["developing", "fully_developed"] = "developing"
        heat_transfer_coefficient: HeatTransferCoefficient | None = None
        density: Annotated[float, Field(ge=500, le=2000)] = 1050.0
        specific_heat: Annotated[float, Field(ge=1000, le=6000)] = 3617.0
        conductivity: Annotated[float, Field(gt=0, le=5)] = 0.52
        viscosity: Annotated[float, Field(gt=0, le=0.1)] = 3.5e-3  # Pa s

    def __init__(self, params: Params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        p, ctx = params, self.context
        self.diameter = self._diameter()
        area = np.pi * self.diameter**2 / 4
        velocity = p.flow_rate * 1e-6 / 60 / area
        self.reynolds = p.density * velocity * self.diameter / p.viscosity
        self.prandtl = p.viscosity * p.specific_heat / p.conductivity
        self.nusselt = nusselt(self.reynolds, self.prandtl, self.diameter, p.heated_length * ctx.length_scale,
                               p.correlation)
        self.h = p.heat_transfer_coefficient or self.nusselt * p.conductivity / self.diameter
        self.energy, self.phase = 0.0, None

    def _diameter(self) -> float:
        ctx = self.context
        if self.params.diameter is not None:
            return self.params.diameter * ctx.length_scale
        meta = ctx.metadata or {}
        regions = sorted((k for k in set(meta.get("sections", {})) | set(meta.get("diameters", {}))
                          if self.surface.name.startswith(k)), key=len, reverse=True)
        for region in regions:
            section = meta.get("sections", {}).get(region)
            if section and section.get("width", 0) > 0:
                return float(section["width"])
            if meta.get("diameters", {}).get(region, 0) > 0:
                return float(meta["diameters"][region])
        raise InputError(f"the mesh gives no diameter for the vessel of surface '{self.surface.name}': give it "
                         "(in the mesh's units)", key=f"{ctx.key}.diameter" if ctx.key else None)

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        add_robin(state, self.surface, self.h, self.params.blood_temperature)

    def update(self, view: SolverView) -> bool:
        T = view.temperature_at(self.surface.nodes)
        power = float(np.sum(self.h * self.surface.area * (self.params.blood_temperature - T)))
        last = self.series.last_time(self.phase.start if self.phase else 0.0)
        self.energy += power * max(view.t - last, 0.0)
        self.series.add(view.t, -1 if self.phase is None else self.phase.index, power, self.energy, float(T.min()))
        return False

    def stability_conductance(self) -> np.ndarray:
        return self.h * self.surface.area

    def figures(self) -> dict:
        return {"diameter_mm": self.diameter * 1e3, "reynolds": self.reynolds, "prandtl": self.prandtl,
                "nusselt": self.nusselt, "heat_transfer_coefficient_W_m2K": self.h, "heat_delivered_J": self.energy}
