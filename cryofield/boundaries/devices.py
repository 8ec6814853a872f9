"""Device models (docs/physics.md §5): cryogen probes, a thermocouple-controlled probe, a skin warmer and a
vessel heat sink, each a registered boundary model with its own keys.

* ``cryogen`` (probe): Robin exchange with the cryogen inside the needle, ``-k dT/dn = h (T - T_c)`` on
  the active surface, with ``h`` and ``T_c`` from a preset (:data:`CRYOGENS`): ``h`` given, or scaled
  from a flow rate, ``h = h_ref (flow / flow_ref)^0.8``.
* ``controlled`` (probe): the same exchange with ``h = u h_max``, the cryogen flow ``u`` in [0, 1] set
  after every step by a PI controller with anti-windup that holds a thermocouple (inside the tip, or at
  a point in the tissue) at the phase's temperature; in an active thaw the same controller runs a heater
  of ``u P_max``. The cartridge may run down: ``h_max`` falls in proportion to the cooling delivered.
* ``warmer`` (surface): a heated contact or shaft segment at a set temperature, through a contact
  conductance, with an optional power limit; it records the heat it delivers.
* ``vessel`` (surface): the lumen wall of an artery exchanging heat with blood at 37 °C through a Nusselt
  correlation for its diameter and flow; it may sit on an interior surface.

Models that keep time series (:meth:`~cryofield.boundaries.BoundaryModel.records`) read only the
temperatures of their own nodes after every step (:attr:`~cryofield.boundaries.SolverView.temperature_at`).

Examples
--------
>>> round(cryogen_coefficient(CRYOGENS["n2o"], None, 2.0))
34822
>>> round(nusselt(95.0, 24.3, 2.5e-3, 10e-3, "developing"), 1)
13.9
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from .. import fem
from ..curves import value_at, varying
from ..errors import InputError
from ..quantities import HeatTransferCoefficient, Temperature
from . import BoundaryModel, BoundaryState, Context, Params, SolverView, Surface, phase_start, register
from .probes import add_heat, heater_power, set_point


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

Power = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
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


class _Series:
    """Rows of a time series, one per accepted step (and checkpointable)."""

    def __init__(self, columns: tuple[str, ...]):
        self.columns = columns
        self.rows: list[tuple[float, ...]] = []

    def add(self, *values: float) -> None:
        self.rows.append(tuple(float(v) for v in values))

    def arrays(self) -> dict[str, np.ndarray]:
        table = np.array(self.rows, float).reshape(len(self.rows), len(self.columns))
        return {name: table[:, i] for i, name in enumerate(self.columns)}

    def state(self) -> dict:
        return {"series": np.array(self.rows, float).reshape(len(self.rows), len(self.columns))}

    def restore(self, state: dict) -> None:
        self.rows = [tuple(row) for row in np.asarray(state.get("series", np.zeros((0, len(self.columns)))))]


def _robin(state: BoundaryState, surface: Surface, h: float, temperature: float) -> None:
    hA = h * surface.area
    state.robin_coef[surface.nodes] += hA
    state.robin_rhs[surface.nodes] += hA * temperature


@register
class CryogenProbe(BoundaryModel):
    """``cryogen``: the active surface exchanges heat with the cryogen, ``-k dT/dn = h (T - T_c)``.

    A freeze runs the cryogen (the phase's temperature is not used: ``T_c`` is the cryogen's); an active
    thaw or a hold exchanges with gas at the phase's temperature through the same ``h``, or runs a heater
    at the phase's ``power``; a passive thaw and the basal state leave the surface insulated. The heat
    drawn, ``Q = sum h A_i (T_i - T_c)``, is recorded after every step of a freeze.
    """

    kind, role = "cryogen", "probe"
    freeze_temperature: ClassVar[bool] = False

    class Params(CryogenKeys):
        pass

    def __init__(self, params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.h, self.T_c = params.coefficient, params.temperature_at(0.0)
        self.phase = None
        self.energy = 0.0
        self.series = _Series(("time", "phase", "heat_drawn_W", "energy_J", "surface_temperature_C"))

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        if phase is None or phase.kind == "passive_thaw":
            return
        if phase.kind == "freeze":
            self.T_c = self.params.temperature_at(t, phase_start(phase))
            _robin(state, self.surface, self.h, self.T_c)
        elif heater_power(phase, t) is not None:
            add_heat(state, self.surface, heater_power(phase, t))
        else:
            _robin(state, self.surface, self.h, set_point(phase, t))

    def update(self, view: SolverView) -> bool:
        phase = self.phase
        if phase is None:
            return False
        T = view.temperature_at(self.surface.nodes)
        drawn = float(np.sum(self.h * self.surface.area * (T - self.T_c))) if phase.kind == "freeze" else 0.0
        last = self.series.rows[-1][0] if self.series.rows else phase.start
        self.energy += drawn * max(view.t - max(last, phase.start), 0.0)
        self.series.add(view.t, phase.index, drawn, self.energy, np.average(T, weights=self.surface.area))
        return False

    def stability_conductance(self) -> np.ndarray:
        return self.h * self.surface.area

    def records(self) -> dict[str, np.ndarray]:
        return self.series.arrays()

    def summary(self) -> dict:
        return {"model": self.kind, "cryogen": self.params.cryogen, "cryogen_temperature_C": self.T_c,
                "heat_transfer_coefficient_W_m2K": self.h, "cooling_delivered_J": self.energy}

    def state(self) -> dict:
        return self.series.state() | {"energy": np.array(self.energy)}

    def restore(self, state: dict) -> None:
        self.series.restore(state)
        self.energy = float(state.get("energy", 0.0))


class Sensor(Params):
    """Where the thermocouple is: ``tip`` (inside the tip: the mean over the hemispherical end of the
    active surface, of the middle needle of a multi-needle tip), ``surface`` (the area mean of the
    active surface) or ``point`` (a point in the tissue, in the mesh's units, read with P1 weights)."""

    at: Literal["tip", "surface", "point"] = "tip"
    point: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _point(self):
        if self.point is not None and self.at == "tip":
            object.__setattr__(self, "at", "point")
        if (self.at == "point") != (self.point is not None):
            raise ValueError("a point sensor needs its 'point' ([x, y, z] in the mesh's units), and only it")
        return self


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


class SensorReader:
    """Reads a sensor from the solution: fixed nodes and weights (area or barycentric), found once."""

    def __init__(self, sensor: Sensor, surface: Surface, context: Context):
        self.nodes, self.weights = surface.nodes, surface.area / surface.area.sum()
        self.where = "surface mean"
        if sensor.at == "point":
            x = np.asarray(sensor.point, float) * context.length_scale
            self.nodes, self.weights = locate(context.points, context.tets, x, f"{context.key}.sensor.point")
            self.where = f"tissue point {list(sensor.point)}"
        elif sensor.at == "tip":
            tip = _tip_nodes(surface, context)
            if tip is not None:
                self.nodes, self.weights = tip
                self.where = "inside the tip"
            else:
                self.where = "surface mean (the mesh gives no probe pose for a tip)"

    def read(self, view: SolverView) -> float:
        return float(self.weights @ view.temperature_at(self.nodes))


def _tip_nodes(surface: Surface, context: Context) -> tuple[np.ndarray, np.ndarray] | None:
    """The active-surface nodes on the hemispherical end of the (middle) needle, area weights; None
    without a pose."""
    pose = (context.metadata.get("probes") or {}).get(context.name)
    if not pose or "tip" not in pose or "axis" not in pose or context.points is None:
        return None
    tips = pose.get("needles") or [pose["tip"]]
    apex = np.asarray(tips[len(tips) // 2], float)
    axis = np.asarray(pose["axis"], float) / np.linalg.norm(pose["axis"])
    radius = 0.5 * float(pose.get("diameter", 0.0))
    rel = context.points[surface.nodes] - apex
    along = rel @ axis
    near = np.linalg.norm(rel, axis=1) <= 2.5 * max(radius, 1e-9)
    cap = near & (along <= radius * 1.001)
    if cap.sum() < 3:
        cap = np.argsort(np.linalg.norm(rel, axis=1))[:4]
        return surface.nodes[cap], np.full(len(cap), 0.25)
    return surface.nodes[cap], surface.area[cap] / surface.area[cap].sum()


def locate(points: np.ndarray, tets: np.ndarray, x: np.ndarray, key: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The nodes of the element holding ``x`` (m) and its barycentric (P1) weights there
    (:func:`cryofield.fem.locate_points`).

    Raises
    ------
    InputError
        When ``x`` lies outside the mesh (naming ``key``).
    """
    nodes, weights, found = fem.locate_points(points, tets, np.asarray(x, float)[None], candidates=64)
    if not found[0]:
        raise InputError(f"the sensor point {np.round(x * 1e3, 3).tolist()} mm lies outside the mesh (or in a hole)",
                         key=key or None)
    return nodes[0], weights[0]


@register
class ControlledProbe(BoundaryModel):
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

    class Params(CryogenKeys):
        sensor: Sensor = Sensor()
        gains: Gains = Gains()
        heater_power: Power = 1.0  # W: the most the heater gives in an active thaw or hold
        cartridge: Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)] | None = None  # g of cryogen

    def __init__(self, params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.sensor = SensorReader(params.sensor, surface, self.context)
        self.h_max0, self.T_c = params.coefficient, params.temperature_at(0.0)
        self.capacity = None if params.cartridge is None else params.cartridge * params.preset.cooling_per_gram
        self.phase, self.phase_index = None, None
        self.u, self.integral, self.t_last = 1.0, 0.0, 0.0
        self.cooling, self.heating = 0.0, 0.0
        self.series = _Series(("time", "phase", "sensor_C", "set_point_C", "flow", "integral_Ks",
                               "heat_transfer_coefficient_W_m2K", "cooling_W", "heating_W", "cooling_J"))

    @property
    def h_max(self) -> float:
        if self.capacity is None:
            return self.h_max0
        return self.h_max0 * max(0.0, 1.0 - self.cooling / self.capacity)

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
            _robin(state, self.surface, self.u * self.h_max, self.T_c)
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

    def records(self) -> dict[str, np.ndarray]:
        return self.series.arrays()

    def summary(self) -> dict:
        r = self.records()
        out = {"model": self.kind, "cryogen": self.params.cryogen, "cryogen_temperature_C": self.T_c,
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

    def state(self) -> dict:
        return self.series.state() | {"scalars": np.array([self.u, self.integral, self.t_last, self.cooling,
                                                           self.heating, -1 if self.phase_index is None
                                                           else self.phase_index], float)}

    def restore(self, state: dict) -> None:
        self.series.restore(state)
        if "scalars" in state:
            u, integral, t_last, cooling, heating, index = np.asarray(state["scalars"], float)
            self.u, self.integral, self.t_last, self.cooling, self.heating = u, integral, t_last, cooling, heating
            self.phase_index = None if index < 0 else int(index)


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


@register
class Warmer(BoundaryModel):
    """``warmer``: a heater at ``temperature`` in contact with the surface through a contact conductance,
    ``q = h (T_heater - T)`` into the tissue, at most ``max_power`` (W) in all.

    Put it on a heated proximal shaft segment (a placed probe's ``NAME_shaft``) or a heated contact on the
    skin around the entry (``NAME_contact``, placement ``contact_radius``). ``during: protocol`` (the
    default) runs it in every protocol phase and not in the basal state; ``always`` also there. The heat
    it delivers is recorded after every step.
    """

    kind, role = "warmer", "surface"

    class Params(Params):
        temperature: Temperature = 40.0
        heat_transfer_coefficient: HeatTransferCoefficient = 1000.0  # contact conductance (W/m²/K)
        max_power: Power | None = None
        during: Literal["protocol", "always"] = "protocol"

    def __init__(self, params, surface: Surface, context: Context | None = None):
        super().__init__(params, surface, context)
        self.scale, self.phase, self.active, self.energy = 1.0, None, False, 0.0
        self.series = _Series(("time", "phase", "power_W", "energy_J", "min_surface_C"))

    def assemble(self, state: BoundaryState, phase, t: float) -> None:
        self.phase = phase
        self.active = phase is not None or self.params.during == "always"
        if self.active:
            _robin(state, self.surface, self.scale * self.params.heat_transfer_coefficient, self.params.temperature)

    def update(self, view: SolverView) -> bool:
        if not self.active or self.phase is None:
            return False
        T = view.temperature_at(self.surface.nodes)
        hA = self.params.heat_transfer_coefficient * self.surface.area
        full = float(np.sum(hA * (self.params.temperature - T)))
        power = self.scale * full
        last = self.series.rows[-1][0] if self.series.rows else self.phase.start
        self.energy += power * max(view.t - last, 0.0)
        self.series.add(view.t, self.phase.index, power, self.energy, float(T.min()))
        limit = self.params.max_power
        scale = 1.0 if limit is None or full <= limit else limit / full
        changed = scale != self.scale
        self.scale = scale
        return changed

    def stability_conductance(self) -> np.ndarray:
        return self.params.heat_transfer_coefficient * self.surface.area

    def records(self) -> dict[str, np.ndarray]:
        return self.series.arrays()

    def summary(self) -> dict:
        r = self.records()
        return {"model": self.kind, "surface": self.surface.name, "temperature_C": self.params.temperature,
                "heat_delivered_J": self.energy,
                "max_power_W": float(r["power_W"].max()) if len(r["power_W"]) else 0.0}

    def state(self) -> dict:
        return self.series.state() | {"scalars": np.array([self.scale, self.energy])}

    def restore(self, state: dict) -> None:
        self.series.restore(state)
        if "scalars" in state:
            self.scale, self.energy = (float(v) for v in state["scalars"])


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
class VesselWall(BoundaryModel):
    """``vessel``: the lumen wall exchanges heat with blood at ``blood_temperature`` through ``h = Nu k / D``,
    Nu from the lumen's diameter and the flow (:func:`nusselt`), ``-k dT/dn = h (T - T_b)``; always on, so
    the vessel warms its surroundings. ``heat_transfer_coefficient`` overrides the correlation; the diameter
    defaults to the mesh's (metadata ``sections`` or ``diameters`` of the region the surface bounds)."""

    kind, role = "vessel", "surface"
    allows_interior: ClassVar[bool] = True

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

    def __init__(self, params, surface: Surface, context: Context | None = None):
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
        self.series = _Series(("time", "phase", "power_W", "energy_J", "min_wall_C"))

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
        _robin(state, self.surface, self.h, self.params.blood_temperature)

    def update(self, view: SolverView) -> bool:
        T = view.temperature_at(self.surface.nodes)
        power = float(np.sum(self.h * self.surface.area * (self.params.blood_temperature - T)))
        last = self.series.rows[-1][0] if self.series.rows else (self.phase.start if self.phase else 0.0)
        self.energy += power * max(view.t - last, 0.0)
        self.series.add(view.t, -1 if self.phase is None else self.phase.index, power, self.energy, float(T.min()))
        return False

    def stability_conductance(self) -> np.ndarray:
        return self.h * self.surface.area

    def records(self) -> dict[str, np.ndarray]:
        return self.series.arrays()

    def summary(self) -> dict:
        return {"model": self.kind, "surface": self.surface.name, "diameter_mm": self.diameter * 1e3,
                "reynolds": self.reynolds, "prandtl": self.prandtl, "nusselt": self.nusselt,
                "heat_transfer_coefficient_W_m2K": self.h, "heat_delivered_J": self.energy}

    def state(self) -> dict:
        return self.series.state() | {"energy": np.array(self.energy)}

    def restore(self, state: dict) -> None:
        self.series.restore(state)
        self.energy = float(state.get("energy", 0.0))
