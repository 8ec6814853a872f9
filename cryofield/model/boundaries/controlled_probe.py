"""The ``controlled`` probe model (docs/physics.md §5): the cryogen exchange of the ``cryogen`` probe with
``h = u h_max``, the cryogen flow ``u`` in [0, 1] set after every step by a PI controller with anti-windup
that holds a thermocouple (:mod:`~cryofield.model.boundaries.sensors`: inside the tip, or at a point in the
tissue) at the phase's temperature; in an active thaw the same controller runs a heater of ``u P_max``.
The cartridge may run down: ``h_max`` falls in proportion to the cooling delivered.

It records the sensor, set point, flow, integral and the heat moved after every step, reading only the
temperatures of its own nodes and its sensor's (:attr:`~cryofield.model.boundaries.SolverView.temperature_at`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field, model_validator

from cryofield.model.boundaries import BoundaryState, Context, Params, SolverView, Surface, phase_start, register
from cryofield.model.boundaries.cryogens import CryogenKeys
from cryofield.model.boundaries.probes import Power, add_heat, add_robin, heater_power, set_point
from cryofield.model.boundaries.recording import RecordingModel
from cryofield.model.boundaries.sensors import Sensor, SensorReader


class Gains(Params):
    """PI gains on the logarithm of the flow: ``ln u = Kp e + Ki ∫ e dt``, e in kelvin from the set point
    (positive: the sensor too warm in a freeze, too cold in a thaw)."""

    proportional: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.01  # 1/K
    integral: Annotated[float, Field(ge=0, le=10, allow_inf_nan=False)] = 0.02  # 1/(K s)

    @model_validator(mode="after")
    def _some(self):
        if self.proportional == 0 and self.integral == 0:
            raise ValueError("at least one of the gains must be above 0")
        return self


@register
class ControlledProbe(RecordingModel):
    """``controlled``: a thermocouple and a PI controller on the cryogen flow, ``h = u h_max``, u in [0, 1].

    In a freeze the controller holds the sensor at the phase's temperature (the set point) with the error
    ``e = T_sensor - T_set``; in an active thaw or a hold it runs a heater of ``u P_max`` (``heater_power``)
    on ``e = T_set - T_sensor``; an active thaw given a ``power`` runs the heater at that power, open loop.

    The tip sits at about ``T_c + q / (u h_max)``: the film's resistance grows as 1/u, so a fixed gain on u
    would be sluggish at full flow and unstable at low flow. The controller therefore acts on ``z = ln u``,
    where equal steps change the tip's temperature about equally (by ``T_tip - T_c`` per unit of z):
    after every accepted step, ``I += e dt`` unless the output is saturated and the error would push it
    further (conditional integration, the anti-windup), then ``z = clip(Kp e + Ki I, ln u_min, 0)`` with
    ``u_min`` = :attr:`MIN_FLOW`. A freeze after anything but a freeze starts at full flow with ``I = 0``, a
    heating phase at the least heat; a phase of the same kind carries the controller on (a set-point step
    is bumpless). With a
    ``cartridge`` (g), ``h_max`` falls in proportion to the cooling delivered, to nothing when the
    cartridge's latent heat is spent.
    """

    #: The smallest flow (and heat) the valve gives short of off: the floor of ``u``.
    MIN_FLOW: ClassVar[float] = 1e-3

    kind, role = "controlled", "probe"
    columns = ("time", "phase", "sensor_C", "set_point_C", "flow", "integral_Ks", "heat_transfer_coefficient_W_m2K",
               "cooling_W", "heating_W", "cooling_J")
    kept_together = ("u", "integral", "t_last", "cooling", "heating", "phase_number")

    class Params(CryogenKeys):
        sensor: Sensor = Sensor()
        gains: Gains = Gains()
        heater_power: Power = 1.0  # W: the most the heater gives in an active thaw or hold
        cartridge: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = None  # g of cryogen

    def __init__(self, params: CryogenKeys, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.sensor = SensorReader(params.sensor, surface, self.context)
        self.h_max0, self.T_c = params.coefficient, params.temperature_at(0.0)
        self.capacity = None if params.cartridge is None else params.cartridge * params.preset.cooling_per_gram
        self.phase, self.phase_index = None, None
        self.u, self.integral, self.t_last = 1.0, 0.0, 0.0
        self.cooling, self.heating = 0.0, 0.0

    @property
    def h_max(self) -> float:
        if self.capacity is None:
            return self.h_max0
        return self.h_max0 * max(0.0, 1.0 - self.cooling / self.capacity)

    @property
    def phase_number(self) -> int:
        """:attr:`phase_index` as checkpoints keep it, a number: -1 before the first phase."""
        return -1 if self.phase_index is None else self.phase_index

    @phase_number.setter
    def phase_number(self, value: float) -> None:
        self.phase_index = None if value < 0 else int(value)

    def _mode(self, phase) -> str:
        if phase is None or phase.kind == "passive_thaw":
            return "off"
        if phase.kind == "freeze":
            return "cool"
        return "open" if phase.power is not None else "heat"

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        index = None if phase is None else phase.index
        mode = self._mode(phase)
        if index != self.phase_index:
            if mode != self._mode(self.phase) or mode not in ("cool", "heat"):
                # a new kind of phase: a freeze starts at full flow, a heater at its least, the integral there
                ki = self.params.gains.integral
                self.u, self.integral = (1.0, 0.0) if mode != "heat" else (
                    self.MIN_FLOW, np.log(self.MIN_FLOW) / ki if ki > 0 else 0.0)
            self.phase_index, self.t_last = index, t  # a set point changed within the mode: bumpless
        self.phase = phase
        if mode == "cool":
            self.T_c = self.params.temperature_at(t, phase_start(phase))
            add_robin(state, self.surface, self.u * self.h_max, self.T_c)
        elif mode == "heat":
            add_heat(state, self.surface, self.u * self.params.heater_power)
        elif mode == "open":
            add_heat(state, self.surface, heater_power(phase, t))

    def update(self, view: SolverView) -> bool:
        phase, mode = self.phase, self._mode(self.phase)
        if mode == "off":
            return False
        dt = max(view.t - self.t_last, 0.0)
        self.t_last = view.t
        sensed = self.sensor.read(view)
        cooling_w = heating_w = 0.0
        if mode == "cool":
            T = view.temperature_at(self.surface.nodes)
            cooling_w = float(np.sum(self.u * self.h_max * self.surface.area * (T - self.T_c)))  # during the step
            self.cooling += max(cooling_w, 0.0) * dt
        else:
            heating_w = heater_power(phase, view.t) if mode == "open" else self.u * self.params.heater_power
            self.heating += heating_w * dt
        target = set_point(phase, view.t)
        changed = False
        if mode in ("cool", "heat"):
            error = sensed - target if mode == "cool" else target - sensed
            kp, ki = self.params.gains.proportional, self.params.gains.integral
            floor = np.log(self.MIN_FLOW)
            trial = kp * error + ki * (self.integral + error * dt)
            if not ((trial > 0.0 and error > 0) or (trial < floor and error < 0)):  # anti-windup
                self.integral += error * dt
            u = float(np.exp(np.clip(kp * error + ki * self.integral, floor, 0.0)))
            changed = u != self.u
            self.u = u
        changed = changed or (mode == "cool" and self.capacity is not None)  # the cartridge runs down
        self.series.add(view.t, phase.index, sensed, np.nan if target is None else target,
                        self.u if mode != "open" else 1.0, self.integral,
                        self.u * self.h_max if mode == "cool" else 0.0, cooling_w, heating_w, self.cooling)
        return changed

    def stability_conductance(self) -> np.ndarray:
        return self.h_max0 * self.surface.area

    def figures(self) -> dict:
        r = self.records()
        out = {"cryogen": self.params.cryogen, "cryogen_temperature_C": self.T_c,
               "max_heat_transfer_coefficient_W_m2K": self.h_max0, "sensor": self.sensor.where,
               "cooling_delivered_J": self.cooling, "heating_delivered_J": self.heating}
        if self.capacity is not None:
            out["cartridge_left"] = max(0.0, 1.0 - self.cooling / self.capacity)
        if len(r.get("time", [])):
            held = settled_error(r)
            if held is not None:
                out["settled_error_K"] = held
            out["mean_flow"] = float(np.mean(r["flow"][r["heat_transfer_coefficient_W_m2K"] > 0])) \
                if (r["heat_transfer_coefficient_W_m2K"] > 0).any() else 0.0
        return out


def settled_error(records: dict[str, np.ndarray], settle: float = 0.5) -> float | None:
    """The largest |sensor - set point| (K) over the second half (``settle``) of every controlled freeze, or
    None when there was none. (A heater cannot cool: a thaw's set point below the tissue's is not missed.)"""
    worst = None
    cooling = records["heat_transfer_coefficient_W_m2K"] > 0
    for index in np.unique(records["phase"][cooling]):
        rows = (records["phase"] == index) & np.isfinite(records["set_point_C"]) & cooling
        if rows.sum() < 2:
            continue
        t = records["time"][rows]
        late = t >= t[0] + settle * (t[-1] - t[0])
        error = float(np.max(np.abs(records["sensor_C"][rows][late] - records["set_point_C"][rows][late])))
        worst = error if worst is None else max(worst, error)
    return worst
