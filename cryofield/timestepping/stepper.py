"""The stepper: advances the nodal enthalpy, dH/dt = F(H), of one case or an ensemble of variants that share a
mesh, through backend kernels only (the scheme's stages, the change and error reductions, the commit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cryofield.backends.base import Backend
from cryofield.model.boundaries import BoundaryState
from cryofield.timestepping.control import BlowUp, StepControl, StepStats, error_weights, pi_factor
from cryofield.timestepping.multirate import MultirateStep
from cryofield.timestepping.rkl2 import rkl2_stage_table, rkl2_stages
from cryofield.timestepping.schemes import SCHEMES

if TYPE_CHECKING:
    from cryofield.problem.assemble import Problem


class Ensemble:
    """B variants of one mesh advanced together: one pass per kernel per stage for all of them.

    The variants share the mesh and its numbering (element geometry is stored once) and may differ in
    everything else: tissue properties, perfusion, boundary and probe settings, protocol, initial state
    (:class:`~cryofield.backends.base.DeviceProblem` lays the arrays out). Each variant is a
    :class:`Stepper` (``lanes[b]``) with its own time, step size and step control, exactly as if it ran
    alone: a step of the ensemble gives each variant that asks for one its own step length and stage
    count (:meth:`step`); the passes run the most stages any variant needs and a variant takes part in
    its own stages only, its result staying in the buffer its last stage wrote. Each variant then accepts
    or rejects its step on its own change. So a variant's numbers are those of the same case run alone,
    bit for bit (the same arithmetic in the same order, the same step decisions). A variant that asks for
    no step (its protocol has ended, or it waits for its driver) costs nothing but its place in the layout.

    Parameters
    ----------
    backend, problems
        Where to run, and the variants' problems (one mesh).
    H0s, controls
        Initial nodal enthalpy (host arrays, J/m³) and step-size control of each variant.
    dtype
        ``np.float64`` or ``np.float32``.
    t0
        Simulated time of the initial states (s).
    variant_fastest
        Layout of the per-variant arrays (:func:`cryofield.kernels.bodies.at`): the variants of a node adjacent
        (True) or each variant one block (False).
    """

    def __init__(self, backend: Backend, problems: list[Problem], H0s: list[np.ndarray], controls: list[StepControl],
                 dtype=np.float64, t0: float = 0.0, variant_fastest: bool = True, members: list | None = None):
        self.backend, self.dtype = backend, np.dtype(dtype)
        self.dp = dp = backend.load_ensemble(problems, self.dtype, variant_fastest)
        size = dp.n_nodes * dp.n_variants
        H = np.empty(size, self.dtype)
        for b, H0 in enumerate(H0s):
            H[dp.lane(b)] = H0
        self.H = backend.to_device(H)
        self.T = backend.empty(size, self.dtype)
        backend.temperature(dp, self.H, self.T)
        # the two accepted states before the current one (the local error estimate's history)
        self.T_prev = backend.to_device(backend.to_host(self.T))
        self.T_older = backend.to_device(backend.to_host(self.T))
        # scratch: three rotating stage values, the odd and even stages' temperatures, L(Y_0) and L(Y_{j-1})
        self.Y = tuple(backend.empty(size, self.dtype) for _ in range(3))
        self.T_odd, self.T_even = backend.empty(size, self.dtype), backend.empty(size, self.dtype)
        self.L0, self.L = backend.empty(size, self.dtype), backend.empty(size, self.dtype)
        self.dose: tuple | None = None  # (levels, T_min, thresholds, time_below) once a dose tracker asks
        self.warm = False
        #: Ensemble steps taken and stage passes run (each pass: every variant's slot, used or not).
        self.steps = self.passes = 0
        self.multirate = None
        if any(SCHEMES[c.scheme].levels for c in controls):
            if len(problems) != 1:
                raise ValueError("the multirate scheme runs a case alone, not in an ensemble (use scheme: rkl2)")
            self.multirate = MultirateStep(backend, dp, controls[0].levels, self.dtype)
        members = members or [Stepper.__new__(Stepper) for _ in problems]
        self.lanes: list[Stepper] = members
        for b, (lane, problem, control) in enumerate(zip(members, problems, controls, strict=True)):
            lane._join(self, b, problem, control, t0)

    @property
    def size(self) -> int:
        """B, the number of variants."""
        return self.dp.n_variants

    def step(self, requests: dict[int, tuple[float, Callable | None]]) -> tuple[list[int], dict[int, BaseException]]:
        """One step of every variant ``b`` in ``requests``, towards its ``t_end`` (``requests[b] = (t_end, on_step)``).

        Each variant plans its step (:meth:`Stepper.advance_to`'s control), the passes run for all at once,
        each accepts or rejects it on its own change, the accepted ones become the state (and the dose
        trackers advance), then each accepted variant's ``on_step(T_previous, dt)`` runs. Returns the
        variants that have reached their ``t_end``, and those that failed with the exception (a blow-up,
        or an error in ``on_step``); a failed variant asks for no more steps.
        """
        be, dp, nb = self.backend, self.dp, self.size
        counts = np.zeros(nb, np.int32)
        plans = {}
        for b, (t_end, _) in requests.items():
            plans[b] = self.lanes[b]._plan_step(t_end)
            counts[b] = plans[b].stages
        self.steps, self.passes = self.steps + 1, self.passes + int(counts.max())
        table = np.zeros((int(counts.max()) + 1, nb, 5))
        for b, plan in plans.items():
            table[:plan.stages + 1, b] = plan.rows
        if self.multirate is not None and plans:
            self._multirate_stages(plans[0])
        else:
            be.rkl2_stages(dp, table, counts, self._stage_buffers(int(counts.max())))
        change = be.step_change(dp, self.T, self.T_odd, self.T_even, counts)
        errors = self._local_errors(plans, counts)
        accept, failed = np.zeros(nb, np.uint8), {}
        for b, plan in plans.items():
            try:
                accept[b] = self.lanes[b]._judge(plan, float(change[b]), errors.get(b))
            except BlowUp as exc:
                failed[b] = exc
        be.commit(dp, counts, accept, self.H, self.T, self.T_prev, self.T_older, self.Y, self.T_odd, self.T_even)
        dts = np.array([plans[b].dt if accept[b] else 0.0 for b in range(nb)] if plans else np.zeros(nb))
        if self.dose is not None and accept.any():
            _, T_min, thresholds, time_below = self.dose
            be.track(dp, self.T_prev, self.T, dts, T_min, thresholds, time_below)
        reached = []
        for b, plan in plans.items():
            if not accept[b]:
                continue
            lane = self.lanes[b]
            lane._accepted(plan)
            on_step = requests[b][1]
            try:
                if on_step is not None:
                    on_step(self.T_prev[dp.lane(b)], plan.dt)
            except Exception as exc:  # this variant fails; the others go on
                failed[b] = exc
                continue
            if lane._reached(requests[b][0]):
                reached.append(b)
        return reached, failed

    def _local_errors(self, plans: dict[int, PlannedStep], counts: np.ndarray) -> dict[int, float]:
        """The local error estimate of each planned variant whose control has a tolerance and the history."""
        weights, use = np.zeros((self.size, 4)), np.zeros(self.size, np.int32)
        for b, plan in plans.items():
            w = self.lanes[b]._error_weights(plan)
            if w is not None:
                weights[b], use[b] = w, counts[b]
        if not use.any():
            return {}
        error = self.backend.local_error(self.dp, self.T_older, self.T_prev, self.T, self.T_odd, self.T_even, use,
                                         weights)
        return {int(b): float(error[b]) for b in np.flatnonzero(use)}

    def uniform_step(self, dt: float, stages: int, accept: bool = True) -> None:
        """Every variant takes one ``stages``-stage RKL2 step of ``dt`` without step control (for benchmarks): the
        passes and, with ``accept``, the change reduction, the commit and the dose trackers, as an accepted
        step of :meth:`step` costs. The variants' clocks and statistics do not move; their error histories
        start again."""
        be, dp, nb = self.backend, self.dp, self.size
        counts = np.full(nb, stages, np.int32)
        table = np.repeat(rkl2_stage_table(stages, dt)[:, None, :], nb, axis=1)
        be.rkl2_stages(dp, table, counts, self._stage_buffers(stages))
        if not accept:
            return
        be.step_change(dp, self.T, self.T_odd, self.T_even, counts)
        be.commit(dp, counts, np.ones(nb, np.uint8), self.H, self.T, self.T_prev, self.T_older, self.Y, self.T_odd,
                  self.T_even)
        for lane in self.lanes:
            lane._restart_history()
        if self.dose is not None:
            _, T_min, thresholds, time_below = self.dose
            be.track(dp, self.T_prev, self.T, np.full(nb, dt), T_min, thresholds, time_below)

    def _multirate_stages(self, plan: PlannedStep) -> None:
        """The outer stages of a multirate step, its work recorded in ``plan``."""
        mr = self.multirate
        before = mr.applications, mr.equivalent
        mr.run(plan.dt, plan.rows, self._stage_buffers(plan.stages))
        plan.applications, plan.equivalent = mr.applications - before[0], mr.equivalent - before[1]

    def _stage_buffers(self, stages: int) -> list[tuple]:
        """The buffers of stages 1..``stages``: stage j writes Y[(j - 1) % 3] and T_odd (j odd) or T_even."""
        H, L0, L, Y = self.H, self.L0, self.L, self.Y
        # L0 = F(Y_0); Y_1 = Y_0 + mu~_1 dt L0 (forward Euler: a1 = 1, b1 = dt)
        plan = [(self.T, L0, Y[0], self.T_odd, H, H, H, L0)]
        for j in range(2, stages + 1):
            T_in = self.T_odd if (j - 1) % 2 else self.T_even
            # L = F(Y_{j-1}); Y_j = mu Y_{j-1} + nu Y_{j-2} + (1 - mu - nu) Y_0 + mu~ dt L + gamma~ dt L0
            plan.append((T_in, L, Y[(j - 1) % 3], self.T_even if j % 2 == 0 else self.T_odd, Y[(j - 2) % 3],
                         Y[(j - 3) % 3] if j >= 3 else H, H, L0))
        return plan

    def track_doses(self, levels: list[float]) -> tuple:
        """Start the dose trackers (running minimum, time below each of ``levels``) of every variant, from the
        current temperatures, or return those already running (every variant must follow the same levels)."""
        if self.dose is None:
            be = self.backend
            T_min = be.to_device(be.to_host(self.T))
            thresholds = be.to_device(np.asarray(levels, self.dtype))
            time_below = be.to_device(np.zeros((len(levels), self.dp.n_nodes * self.size), self.dtype))
            self.dose = (list(levels), T_min, thresholds, time_below)
        elif self.dose[0] != list(levels):
            raise ValueError(f"the variants of an ensemble must track the same dose levels ({self.dose[0]} and "
                             f"{list(levels)})")
        return self.dose

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) every stepping kernel on the real arrays; the state is unchanged."""
        if self.warm:
            return
        be, dp, nb = self.backend, self.dp, self.size
        none = np.zeros(nb, np.int32)
        be.rkl2_stages(dp, np.zeros((2, nb, 5)), np.ones(nb, np.int32), [(self.T, self.L, self.Y[2], self.T_even,
                                                                            self.H, self.H, self.H, self.L)])
        be.temperature(dp, self.H, self.T_even)
        be.step_change(dp, self.T, self.T_odd, self.T_even, none)
        be.local_error(dp, self.T_older, self.T_prev, self.T, self.T_odd, self.T_even, none, np.zeros((nb, 4)))
        be.commit(dp, none, np.zeros(nb, np.uint8), self.H, self.T, self.T_prev, self.T_older, self.Y, self.T_odd,
                  self.T_even)
        levels = self.dose[0] if self.dose else [0.0]
        scratch = be.to_device(np.zeros((len(levels), dp.n_nodes * nb), self.dtype))
        be.track(dp, self.T, self.T, np.zeros(nb), be.to_device(be.to_host(self.T)),
                 be.to_device(np.asarray(levels, self.dtype)), scratch)
        if self.multirate is not None:
            self.multirate.warm_up(self.T, self.H)
        be.synchronize()
        self.warm = True


@dataclass
class PlannedStep:
    """One variant's part of an ensemble step: its length, whether it ends the segment, its stages and their
    coefficient rows (s + 1, 5)."""

    t_end: float
    dt: float
    proposed: float
    remaining: float
    stages: int
    rows: np.ndarray
    #: Work of a multirate step (set once its stages ran): applications at any level, and their full-mesh share.
    applications: int | None = None
    equivalent: float | None = None


class Stepper:
    """Advances the nodal enthalpy of one problem on a backend through absolute simulated time.

    A stepper is one variant of an :class:`Ensemble`: on its own (this constructor) it is an ensemble of one,
    and :meth:`advance_to` steps it; in an ensemble of many, ``Ensemble.lanes[b]``, the ensemble's
    :meth:`Ensemble.step` does.

    Parameters
    ----------
    backend, problem
        Where to run and what.
    H0
        Initial nodal enthalpy (host array, J/m³).
    control
        Scheme and step-size control.
    dtype
        ``np.float64`` or ``np.float32``.
    t0
        Simulated time of ``H0`` (s).
    """

    def __init__(self, backend: Backend, problem: Problem, H0: np.ndarray, control: StepControl,
                 dtype=np.float64, t0: float = 0.0):
        Ensemble(backend, [problem], [H0], [control], dtype, t0, members=[self])

    def _join(self, ensemble: Ensemble, variant: int, problem: Problem, control: StepControl, t0: float) -> None:
        self.ensemble, self.variant, self.problem = ensemble, variant, problem
        self.backend, self.dtype, self.dp = ensemble.backend, ensemble.dtype, ensemble.dp
        self.control, self.dt, self.t = control, control.stable_dt, float(t0)
        self.stats = StepStats()
        self._restart_history()
        self.load_boundaries(problem.boundary_state(None))  # until the driver sets a phase

    @property
    def lane(self) -> slice:
        """This variant's entries in the ensemble's arrays."""
        return self.dp.lane(self.variant)

    @property
    def T(self) -> Any:
        """The current temperature (a backend array: a view into the ensemble's)."""
        return self.ensemble.T[self.lane]

    def set_boundaries(self, state: BoundaryState, restart: bool = True) -> None:
        """Make ``state`` the boundary conditions; fixed nodes jump to their temperature.

        ``restart`` (a protocol phase change) starts again from the stable step: the jump starts a fast
        transient. A model's update between steps passes False and keeps the step size.
        """
        if restart:
            self.dt = self.control.stable_dt
            self._restart_history()
        self.load_boundaries(state)
        if state.fixed.any():
            ens, be = self.ensemble, self.backend
            H = be.read_lane(self.dp, ens.H, self.variant)
            H[state.fixed] = self.problem.enthalpy(state.fixed_temperature)[state.fixed]
            be.write_lane(self.dp, ens.H, self.variant, H.astype(self.dtype))
            be.temperature(self.dp, ens.H, ens.T)  # T = T(H) holds for every other variant: theirs is unchanged

    def load_boundaries(self, state: BoundaryState) -> None:
        """Make ``state`` the boundary arrays the operator applies, leaving the solution as it is (a resume)."""
        self.backend.upload_boundaries(self.dp, state, self.dtype, self.variant)

    def advance_to(self, t_end: float, on_step: Callable[[Any, float], None] | None = None) -> None:
        """Integrate to the absolute time ``t_end`` (s), hit exactly, with adaptive steps (:class:`StepControl`).

        After each accepted step, ``on_step(T_previous, dt)`` is called with the temperature before the
        step (a backend array, valid during the call) and the step's length; :attr:`T` is the new one.
        Only this variant steps (its ensemble's others wait).
        """
        while not self._reached(t_end):
            _, failed = self.ensemble.step({self.variant: (t_end, on_step)})
            if failed:
                raise failed[self.variant]

    def advance(self, duration: float, on_step: Callable[[Any, float], None] | None = None) -> None:
        """Integrate over ``duration`` seconds from the current time (:meth:`advance_to`)."""
        self.advance_to(self.t + duration, on_step)

    def _reached(self, t_end: float) -> bool:
        # the tolerance depends on t_end alone, so a run resumed mid-way takes the very same steps
        return not t_end - self.t > 1e-12 * max(abs(t_end), 1e-6)

    def _plan_step(self, t_end: float) -> PlannedStep:
        """The next step towards ``t_end``: at most the current step size, the segment's end hit exactly."""
        c = self.control
        proposed = min(self.dt, c.dt_limit())
        remaining = t_end - self.t
        dt = remaining if remaining <= proposed else min(proposed, 0.5 * remaining)
        scheme = SCHEMES[c.scheme]
        if not scheme.super_steps:
            rows = np.array([[0.0] * 5, [1.0, 0.0, 0.0, dt, 0.0]])  # H + dt F(H)
        elif scheme.levels:
            rows = rkl2_stage_table(self.ensemble.multirate.stages(dt), dt)
        else:
            rows = rkl2_stage_table(c.stages or rkl2_stages(dt, c.stable_dt), dt)
        return PlannedStep(t_end, dt, proposed, remaining, rows.shape[0] - 1, rows)

    def _judge(self, plan: PlannedStep, change: float, error: float | None = None) -> bool:
        """Accept the step or shrink the step size (True: accept); raise :class:`BlowUp` on an impossible change.

        ``change`` is the step's largest nodal change (K), ``error`` its local error estimate (K; None when
        the control has no tolerance or the phase has fewer than three earlier states).
        """
        c = self.control
        self.stats.operator_applications += plan.stages if plan.applications is None else plan.applications
        self.stats.equivalent_applications += plan.stages if plan.equivalent is None else plan.equivalent
        if not change <= c.blow_up_change:  # also NaN: a non-finite state compares false
            raise BlowUp(self.t, plan.dt, change, self._worst_node(plan.stages))
        factor, shrink = 0.9 * c.max_change / max(change, 1e-30), c.max_change / max(change, 1e-30)
        reject = change > 1.5 * c.max_change
        if error is not None:  # the local error's controller, within what the change allows
            error_factor = pi_factor(error, self._error_prev, c.tolerance)
            factor, shrink = min(factor, error_factor), min(shrink if reject else np.inf, max(0.2, error_factor))
            reject = reject or not error <= c.tolerance
        self._factor, self._error = min(2.0, max(0.5, factor)), error
        if reject and plan.dt > c.stable_dt * (1 + 1e-9):
            self.dt = max(c.stable_dt, plan.dt * shrink)  # reject: the state is untouched
            self.stats.rejected += 1
            return False
        return True

    def _error_weights(self, plan: PlannedStep) -> np.ndarray | None:
        """:func:`error_weights` of the planned step, or None without a tolerance or the three earlier states."""
        c = self.control
        if c.tolerance is None or not SCHEMES[c.scheme].error_control or len(self._past) < 2:
            return None
        return error_weights((*self._past, self.t, self.t + plan.dt))

    def _restart_history(self) -> None:
        """Forget the earlier states (a phase switch: the boundary jump starts a new trajectory)."""
        self._past: list[float] = []  # times of the ensemble's T_older and T_prev, once accepted steps give them
        self._error_prev: float | None = None

    def _accepted(self, plan: PlannedStep) -> None:
        """Advance the clock and the step size after an accepted step (its result is already the state)."""
        self._past = (self._past + [self.t])[-2:]
        if self._error is not None:
            self._error_prev = self._error
        self.t = plan.t_end if plan.remaining <= plan.proposed else self.t + plan.dt  # a segment's end hit exactly
        self.dt = max(self.control.stable_dt, (plan.proposed if plan.dt < plan.proposed else plan.dt) * self._factor)
        self.stats.steps += 1

    def _worst_node(self, stages: int) -> int:
        """The node whose candidate temperature is non-finite or changed most (host side; only on failure)."""
        ens, be = self.ensemble, self.backend
        candidate = ens.T_even if stages % 2 == 0 else ens.T_odd
        old = be.read_lane(self.dp, ens.T, self.variant).astype(float)
        new = be.read_lane(self.dp, candidate, self.variant).astype(float)
        change = np.where(np.isfinite(new), np.abs(new - old), np.inf)
        return int(np.argmax(change))

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) the stepping kernels on the real arrays; the state is unchanged."""
        self.ensemble.warm_up()

    def track_doses(self, levels: list[float]) -> None:
        """Have the ensemble track this variant's running minimum and time below ``levels`` after every step."""
        self.ensemble.track_doses(levels)

    def dose_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N,) running minimum temperature and (K, N) time below each level, host arrays in the run's dtype."""
        be, (_, T_min, _, time_below) = self.backend, self.ensemble.dose
        rows = [be.read_lane(self.dp, time_below[k], self.variant) for k in range(time_below.shape[0])]
        return be.read_lane(self.dp, T_min, self.variant), np.array(rows).reshape(len(rows), self.problem.n_nodes)

    def restore_doses(self, T_min: np.ndarray, time_below: np.ndarray) -> None:
        """Put :meth:`dose_arrays` back (a resumed run)."""
        be, (_, T_min_all, _, time_below_all) = self.backend, self.ensemble.dose
        be.write_lane(self.dp, T_min_all, self.variant, np.asarray(T_min, self.dtype))
        for k in range(time_below_all.shape[0]):
            be.write_lane(self.dp, time_below_all[k], self.variant, np.asarray(time_below[k], self.dtype))

    def state(self) -> dict:
        """Everything that determines the next steps, as host arrays and numbers (for checkpoints)."""
        be, ens = self.backend, self.ensemble
        return {"H": be.read_lane(self.dp, ens.H, self.variant), "T": be.read_lane(self.dp, ens.T, self.variant),
                "T_prev": be.read_lane(self.dp, ens.T_prev, self.variant),
                "T_older": be.read_lane(self.dp, ens.T_older, self.variant), "past": np.array(self._past, float),
                "error_prev": np.nan if self._error_prev is None else self._error_prev,
                "t": self.t, "dt": self.dt, "steps": self.stats.steps, "rejected": self.stats.rejected,
                "operator_applications": self.stats.operator_applications,
                "equivalent_applications": self.stats.equivalent_applications}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state`: the same arrays bit for bit, so the run takes the very same steps."""
        be, ens = self.backend, self.ensemble
        be.write_lane(self.dp, ens.H, self.variant, np.asarray(state["H"], self.dtype))
        be.write_lane(self.dp, ens.T, self.variant, np.asarray(state["T"], self.dtype))
        self._restart_history()
        if "past" in state:  # (a checkpoint written before the error estimate existed has none: it starts again)
            for name in ("T_prev", "T_older"):
                be.write_lane(self.dp, getattr(ens, name), self.variant, np.asarray(state[name], self.dtype))
            self._past = [float(t) for t in np.atleast_1d(state["past"])]
            self._error_prev = None if np.isnan(state["error_prev"]) else float(state["error_prev"])
        self.t, self.dt = float(state["t"]), float(state["dt"])
        self.stats = StepStats(int(state["steps"]), int(state["rejected"]), int(state["operator_applications"]),
                               float(state.get("equivalent_applications", state["operator_applications"])))

    def temperature_host(self) -> np.ndarray:
        """Current nodal temperature (°C) as a float64 host array."""
        return self.backend.read_lane(self.dp, self.ensemble.T, self.variant).astype(float)

    def enthalpy_host(self) -> np.ndarray:
        """Current nodal enthalpy (J/m³) as a float64 host array."""
        return self.backend.read_lane(self.dp, self.ensemble.H, self.variant).astype(float)
