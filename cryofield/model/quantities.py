"""Validated quantity types shared by every schema (case sections, boundary models, mesh specs)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

ABSOLUTE_ZERO_C = -273.15

#: A temperature in °C, above absolute zero and below anything a tissue can meet.
Temperature = Annotated[float, Field(gt=ABSOLUTE_ZERO_C, lt=1000.0, allow_inf_nan=False)]
#: A positive, finite duration in seconds.
Duration = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
#: A heat-transfer coefficient in W/m²/K (still air is about 5, boiling cryogen 1e3-1e4).
HeatTransferCoefficient = Annotated[float, Field(gt=0, le=1e6)]
