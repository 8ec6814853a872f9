"""Time integration of dH/dt = F(H): RKL2 super time stepping or forward Euler, through backend kernels.

Why RKL2 (Meyer, Balsara & Aslam, J. Comput. Phys. 257, 2014): an explicit s-stage scheme, second order
in time, stable up to ``dt = dt_FE (s² + s − 2) / 4`` where ``dt_FE`` is the forward-Euler limit of the
stiffest element. Its cost per simulated second falls like 1/s, so a 0.1 mm probe-tip element no longer
dictates the step; each stage is one operator application plus one fused vector update, exactly the
kernels a GPU runs well, with no linear solves and no nonlinear iteration on the enthalpy kinks. An
implicit enthalpy scheme would need a Newton or Chernoff iteration per step on top of a preconditioned
solve; measured in ``benchmarks/`` against forward Euler, which the ``euler`` scheme keeps as a reference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends.base import Backend
from .boundaries import BoundaryState
from .problem import Problem


@functools.lru_cache(maxsize=512)
def rkl2_coefficients(s: int) -> np.ndarray:
    """Rows j = 1..s of (mu_j, nu_j, mu~_j, gamma~_j) for RKL2 with ``s`` stages (row 0 unused).

    Stage recursion (Y_0 = u^n, u^{n+1} = Y_s)::

        Y_1 = Y_0 + mu~_1 dt L(Y_0)
        Y_j = mu_j Y_{j-1} + nu_j Y_{j-2} + (1 - mu_j - nu_j) Y_0 + mu~_j dt L(Y_{j-1}) + gamma~_j dt L(Y_0)

    Computed once per ``s`` (cached; the array is read-only).
    """
    if s < 2:
        raise ValueError("RKL2 needs at least 2 stages")
    w1 = 4.0 / (s * s + s - 2.0)
    b = np.empty(s + 1)
    b[:3] = 1.0 / 3.0
    j = np.arange(3, s + 1)
    b[3:] = (j * j + j - 2.0) / (2.0 * j * (j + 1.0))
    a = 1.0 - b
    coef = np.zeros((s + 1, 4))
    coef[1, 2] = b[1] * w1
    for j in range(2, s + 1):
        mu = (2.0 * j - 1.0) / j * b[j] / b[j - 1]
        nu = -(j - 1.0) / j * b[j] / b[j - 2]
        coef[j] = mu, nu, mu * w1, -a[j - 1] * mu * w1
    coef.flags.writeable = False
    return coef


@functools.lru_cache(maxsize=512)
def _stage_rows(s: int) -> np.ndarray:
    """(s + 1, 5): row j = (a1, a2, a0, b1 / dt, b0 / dt) of RKL2 stage j (:func:`rkl2_stage_table`)."""
    coef = rkl2_coefficients(s)
    rows = np.zeros((s + 1, 5))
    rows[1] = 1.0, 0.0, 0.0, coef[1, 2], 0.0
    mu, nu = coef[2:, 0], coef[2:, 1]
    rows[2:, 0], rows[2:, 1], rows[2:, 2], rows[2:, 3], rows[2:, 4] = mu, nu, 1.0 - mu - nu, coef[2:, 2], coef[2:, 3]
    rows.flags.writeable = False
    return rows


def rkl2_stage_table(s: int, dt: float) -> np.ndarray:
    """(s + 1, 5): row j = (a1, a2, a0, b1, b0) of stage j of an ``s``-stage RKL2 step of ``dt`` (row 0 unused).

    Stage j computes ``a1 Y_{j-1} + a2 Y_{j-2} + a0 Y_0 + b1 L(Y_{j-1}) + b0 L(Y_0)``
    (:meth:`cryofield.backends.base.Backend.stage`): row 1 is (1, 0, 0, mu~_1 dt, 0), row j >= 2 is
    (mu_j, nu_j, 1 - mu_j - nu_j, mu~_j dt, gamma~_j dt).
    """
    table = _stage_rows(s).copy()
    table[:, 3:] *= dt
    return table


def rkl2_stages(dt: float, dt_fe: float) -> int:
    """Fewest stages s >= 2 with (s² + s − 2)/4 >= dt/dt_fe."""
    ratio = dt / dt_fe
    s = math.ceil((-1.0 + math.sqrt(9.0 + 16.0 * ratio)) / 2.0 - 1e-12)
    return max(2, s)


def rkl2_max_dt(s: int, dt_fe: float) -> float:
    """Largest stable step of ``s``-stage RKL2."""
    return dt_fe * (s * s + s - 2.0) / 4.0


def error_weights(times: tuple[float, float, float, float]) -> np.ndarray:
    """Weights w of the local error estimate sum_k w_k T(t_k) of the step from ``times[2]`` to ``times[3]``.

    The third divided difference over the four times, times dt³ (dt = times[3] - times[2]): for smooth T
    about dt³ (d³T/dt³) / 6, the leading term of a second-order one-step method's local error up to its
    constant, whatever the earlier steps were.

    Examples
    --------
    >>> w = error_weights((0.0, 1.0, 2.0, 3.0))
    >>> [round(float(x), 6) for x in w], round(float(w @ np.array([0.0, 1.0, 8.0, 27.0])), 12)  # T = t³
    ([-0.166667, 0.5, -0.5, 0.166667], 1.0)
    """
    t = np.asarray(times, float)
    dt = t[3] - t[2]
    return np.array([dt ** 3 / np.prod([t[k] - t[j] for j in range(4) if j != k]) for k in range(4)])


@dataclass
class StepStats:
    """Counters for throughput figures (rejected steps count their operator applications too)."""

    steps: int = 0
    rejected: int = 0
    operator_applications: int = 0
    #: Operator applications weighted by the share of the mesh each covers (a multirate level's are partial).
    equivalent_applications: float = 0.0


class BlowUp(RuntimeError):
    """The solution stopped being physical: a non-finite temperature or a change no stable step can make."""

    def __init__(self, t: float, dt: float, change: float, node: int):
        self.t, self.dt, self.change, self.node = t, dt, change, node
        what = "a temperature became NaN or infinite" if not np.isfinite(change) else \
            f"a temperature changed by {change:.3g} K in one step"
        super().__init__(f"the solution blew up in the step from t = {t:.6g} s (dt {dt:.3g} s): {what}, "
                         f"first at node {node}")


@dataclass
class StepControl:
    """Step-size control.

    The step adapts so that no node's temperature changes by more than about ``max_change`` kelvin in a
    step (a step that exceeds 1.5 times that is redone smaller). This resolves the steep early transient
    after each protocol switch, where a long super-step would overshoot the enthalpy kinks, and lets the
    step grow (at most doubling) to ``max_dt`` as the ice front slows. Every phase starts again from
    ``stable_dt``.

    With a ``tolerance``, each step's local error is estimated too, from the step's result and the three
    states before it (:func:`error_weights`: about dt³ |d³T/dt³| / 6 at every node, the leading term of a
    second-order step's local error; the largest over the nodes whose four temperatures do not straddle
    their solidus or liquidus). A step whose estimate exceeds the tolerance is redone smaller, and the
    next step follows a PI controller on it (exponents 0.7/3 and 0.4/3), within what ``max_change``
    allows. The estimate costs no operator application (one pass over four fields); it starts with the
    third step of a phase, and the Euler scheme (at its stability limit) does not use it.

    Attributes
    ----------
    scheme
        ``"rkl2"``, ``"multirate"`` (RKL2 with the stiff nodes' own nested stages, :mod:`cryofield.multirate`)
        or ``"euler"``.
    stable_dt
        Forward-Euler stability limit times the safety factor (s).
    max_dt
        Upper bound on the step (s).
    max_change
        Target largest nodal temperature change per step (K).
    stages
        Fixed RKL2 stage count, or None to choose the fewest stable stages for each step.
    tolerance
        Largest estimated local error of a step (K), or None for the nodal-change control alone.
    levels
        The multirate scheme's levels (:class:`cryofield.multirate.Levels`).
    """

    scheme: str
    stable_dt: float
    max_dt: float
    max_change: float = 10.0
    stages: int | None = None
    #: A nodal change above this in one step (K) cannot be physical (the whole span of temperatures a run can
    #: meet is a few hundred kelvin): the run stops with :class:`BlowUp` instead of going on.
    blow_up_change: float = 1000.0
    levels: Any = None
    tolerance: float | None = None

    def dt_limit(self) -> float:
        if self.scheme == "euler":
            return min(self.max_dt, self.stable_dt)
        if self.stages is not None:
            return min(self.max_dt, rkl2_max_dt(self.stages, self.stable_dt))
        return self.max_dt


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
        Layout of the per-variant arrays (:func:`cryofield.kernels.at`): the variants of a node adjacent
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
        if any(c.scheme == "multirate" for c in controls):
            from .multirate import MultirateStep

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
        if c.scheme == "euler":
            rows = np.array([[0.0] * 5, [1.0, 0.0, 0.0, dt, 0.0]])  # H + dt F(H)
        elif c.scheme == "multirate":
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
            error_factor = self._error_factor(error)
            factor, shrink = min(factor, error_factor), min(shrink if reject else np.inf, max(0.2, error_factor))
            reject = reject or not error <= c.tolerance
        self._factor, self._error = min(2.0, max(0.5, factor)), error
        if reject and plan.dt > c.stable_dt * (1 + 1e-9):
            self.dt = max(c.stable_dt, plan.dt * shrink)  # reject: the state is untouched
            self.stats.rejected += 1
            return False
        return True

    def _error_factor(self, error: float) -> float:
        """Step-size factor from the local error estimate: PI control (0.7/3, 0.4/3) after an accepted estimate,
        elementary (1/3) before, with safety 0.9; errors floored at 1e-4 of the tolerance (a step with no
        estimated error grows by the largest factor)."""
        tol = self.control.tolerance
        ratio = tol / max(error, 1e-4 * tol)
        if self._error_prev is None:
            return 0.9 * ratio ** (1 / 3)
        return 0.9 * ratio ** (0.7 / 3) * (max(self._error_prev, 1e-4 * tol) / tol) ** (0.4 / 3)

    def _error_weights(self, plan: PlannedStep) -> np.ndarray | None:
        """:func:`error_weights` of the planned step, or None without a tolerance or the three earlier states."""
        c = self.control
        if c.tolerance is None or c.scheme == "euler" or len(self._past) < 2:
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
