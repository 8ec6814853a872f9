"""Cryogens as the probe models use them (docs/physics.md §5): presets of temperature, film coefficient and
latent heat, and the probe keys that choose one (``cryogen``, ``cryogen_temperature``,
``heat_transfer_coefficient``, ``flow_rate``), shared by the ``cryogen`` and ``controlled`` probes.

The film coefficient is given, or scaled from a flow rate, ``h = h_ref (flow / flow_ref)^0.8``. This
module defines no model of its own, so it registers nothing.

Examples
--------
>>> round(cryogen_coefficient(CRYOGENS["n2o"], None, 2.0))
34822
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from cryofield.model.boundaries import Params
from cryofield.model.curves import value_at, varying
from cryofield.model.quantities import HeatTransferCoefficient, Temperature


@dataclass(frozen=True)
class Cryogen:
    """A cryogen as the probe models use it (docs/physics.md §5 gives the sources and tags)."""

    label: str
    temperature: float  # °C on the inner side of the active wall
    heat_transfer_coefficient: float  # W/m²/K at the reference flow
    flow: float  # reference flow (g/min)
    cooling_per_gram: float  # J/g: its latent heat of vaporisation, what one gram can absorb


#: Cryogen presets: temperature [R] (boiling points at 1 atm), film coefficient at a reference flow [D]
#: (order of magnitude of boiling and expanding flows in a needle), latent heat [M].
CRYOGENS: dict[str, Cryogen] = {
    "n2o": Cryogen("nitrous oxide", -88.5, 2.0e4, 1.0, 376.0),
    "argon": Cryogen("argon (Joule-Thomson expansion)", -185.8, 1.0e4, 1.0, 161.0),
    "ln2": Cryogen("liquid nitrogen", -195.8, 5.0e3, 10.0, 199.0),
}

#: Exponent of the flow in h = h_ref (flow / flow_ref)^n: forced convection, h ∝ Re^0.8 (Dittus–Boelter).
FLOW_EXPONENT = 0.8

Flow = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]


def cryogen_coefficient(cryogen: Cryogen, h: float | None, flow: float | None) -> float:
    """The film coefficient (W/m²/K): ``h`` when given, else the preset's scaled to ``flow`` (g/min)."""
    if h is not None:
        return h
    if flow is None:
        return cryogen.heat_transfer_coefficient
    return cryogen.heat_transfer_coefficient * (flow / cryogen.flow) ** FLOW_EXPONENT


class CryogenKeys(Params):
    """The cryogen of a probe: a preset, its temperature and its film coefficient or flow."""

    cryogen: Literal["n2o", "argon", "ln2"] = "n2o"
    cryogen_temperature: varying(Temperature) | None = None  # °C (or a table in time); default the preset's
    heat_transfer_coefficient: HeatTransferCoefficient | None = None  # W/m²/K; default from the flow or preset
    flow_rate: Flow | None = None  # g/min; h scales as flow^0.8 from the preset's reference

    @model_validator(mode="after")
    def _one_way_to_h(self):
        if self.heat_transfer_coefficient is not None and self.flow_rate is not None:
            raise ValueError("give heat_transfer_coefficient or flow_rate, not both")
        return self

    @property
    def preset(self) -> Cryogen:
        return CRYOGENS[self.cryogen]

    def temperature_at(self, t: float, start: float = 0.0) -> float:
        """The cryogen's temperature (°C) at ``t`` (s) in a phase that started at ``start``."""
        return self.preset.temperature if self.cryogen_temperature is None else value_at(self.cryogen_temperature,
                                                                                         t, start)

    @property
    def coefficient(self) -> float:
        return cryogen_coefficient(self.preset, self.heat_transfer_coefficient, self.flow_rate)
