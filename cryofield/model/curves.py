"""Values that change in time: a constant, or a table of ``[t, value]`` rows.

Any probe or boundary temperature, heat-transfer coefficient, heat flux, cryogen temperature or heater
power of a case may be given as a table instead of a number::

    protocol:
      - kind: freeze
        duration: 120
        temperature: {table: [[0, 20], [20, -60], [60, -85], [120, -88]]}   # phase-local time (s), °C
    boundaries:
      - {surface: skin, type: convection, heat_transfer_coefficient: {table: [[0, 8], [300, 25]], time: absolute}}

The value is linear between rows and constant before the first and after the last. ``time: phase`` (the
default) counts from the start of the phase in force (for a surface condition, the phase the run is in),
``time: absolute`` from the start of the run. A model evaluates its values at the start of each time
step and holds them over the step (the step is short next to the curve's rows: ``solver.max_dt``); a
model with a table is assembled again after every step (:meth:`Curve.at`).

Each value of a table is checked against the same limits as the constant it replaces (a temperature
above absolute zero, a positive coefficient), the key of the offending row named.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, field_validator


class Curve(BaseModel):
    """A value in time: ``table`` rows ``[t, value]`` (t in s, increasing, from 0), linear between rows.

    Examples
    --------
    >>> c = Curve(table=[[0, 20], [10, -60], [30, -80]])
    >>> c.at(5.0), c.at(100.0), c.at(12.0, start=10.0)
    (-20.0, -80.0, 4.0)
    >>> c.low, c.high
    (-80.0, 20.0)
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    table: Annotated[list[tuple[Annotated[float, Field(ge=0)], float]], Field(min_length=1, max_length=100_000)]
    time: Literal["phase", "absolute"] = "phase"

    @field_validator("table")
    @classmethod
    def _increasing(cls, rows):
        t = [row[0] for row in rows]
        if any(b <= a for a, b in zip(t, t[1:])):
            raise ValueError("the times of a table (first column, s) must increase from row to row")
        return rows

    def at(self, t: float, start: float = 0.0) -> float:
        """The value at absolute time ``t`` (s), in a phase that started at ``start`` (s)."""
        local = t - start if self.time == "phase" else t
        rows = np.asarray(self.table, float)
        return float(np.interp(local, rows[:, 0], rows[:, 1]))

    @property
    def low(self) -> float:
        return float(min(v for _, v in self.table))

    @property
    def high(self) -> float:
        return float(max(v for _, v in self.table))


def varying(scalar: Any) -> Any:
    """The type "``scalar``, or a :class:`Curve` whose every value is a valid ``scalar``" (for schemas)."""
    adapter = TypeAdapter(scalar)

    class BoundedCurve(Curve):
        @field_validator("table")
        @classmethod
        def _values(cls, rows):
            for i, (_, value) in enumerate(rows):
                try:
                    adapter.validate_python(value)
                except Exception as exc:
                    message = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
                    raise ValueError(f"row {i} (value {value:g}): {message}") from None
            return rows

    BoundedCurve.__name__ = BoundedCurve.__qualname__ = "Curve"
    # a mapping is a table, anything else the constant: each is validated as what it is, and its error is its own
    return Annotated[Annotated[scalar, Tag("curve-constant")] | Annotated[BoundedCurve, Tag("curve-table")],
                     Discriminator(_kind)]


def _kind(value: Any) -> str:
    return "curve-table" if isinstance(value, dict | Curve) else "curve-constant"


def value_at(value: float | Curve | None, t: float, start: float = 0.0) -> float | None:
    """A constant as it is, a curve at ``t`` (:meth:`Curve.at`); None stays None."""
    if isinstance(value, Curve):
        return value.at(t, start)
    return value if value is None else float(value)


def bounds(value: float | Curve | None) -> tuple[float, float] | None:
    """(lowest, highest) a value takes at any time, or None."""
    if value is None:
        return None
    if isinstance(value, Curve):
        return value.low, value.high
    return float(value), float(value)


def varies(*values: Any) -> bool:
    """Whether any of ``values`` is a curve."""
    return any(isinstance(v, Curve) for v in values)
