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


@dataclass
class StepStats:
    """Counters for throughput figures (rejected steps count their operator applications too)."""

    steps: int = 0
    rejected: int = 0
    operator_applications: int = 0


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

    Attributes
    ----------
    scheme
        ``"rkl2"`` or ``"euler"``.
    stable_dt
        Forward-Euler stability limit times the safety factor (s).
    max_dt
        Upper bound on the step (s).
    max_change
        Target largest nodal temperature change per step (K).
    stages
        Fixed RKL2 stage count, or None to choose the fewest stable stages for each step.
    """

    scheme: str
    stable_dt: float
    max_dt: float
    max_change: float = 10.0
    stages: int | None = None
    #: A nodal change above this in one step (K) cannot be physical (the whole span of temperatures a run can
    #: meet is a few hundred kelvin): the run stops with :class:`BlowUp` instead of going on.
    blow_up_change: float = 1000.0

    def dt_limit(self) -> float:
        if self.scheme == "euler":
            return min(self.max_dt, self.stable_dt)
        if self.stages is not None:
            return min(self.max_dt, rkl2_max_dt(self.stages, self.stable_dt))
        return self.max_dt


class Stepper:
    """Advances nodal enthalpy on a backend through absolute simulated time.

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
        self.backend, self.problem, self.dtype = backend, problem, np.dtype(dtype)
        self.control, self.dt, self.t = control, control.stable_dt, float(t0)
        self.dp = backend.load(problem, self.dtype)
        backend.upload_boundaries(self.dp, problem.boundary_state(None), self.dtype)  # until the driver sets a phase
        n = problem.n_nodes
        self.H = backend.to_device(H0.astype(self.dtype))
        self.T = backend.empty(n, self.dtype)
        backend.temperature(self.dp, self.H, self.T)
        # scratch: three rotating stage values, two ping-pong stage temperatures, L(Y_0) and L(Y_{j-1})
        self.Y = [backend.empty(n, self.dtype) for _ in range(3)]
        self.T_stage = [backend.empty(n, self.dtype) for _ in range(2)]
        self.L0, self.L = backend.empty(n, self.dtype), backend.empty(n, self.dtype)
        self.stats = StepStats()

    def set_boundaries(self, state: BoundaryState, restart: bool = True) -> None:
        """Make ``state`` the boundary conditions; fixed nodes jump to their temperature.

        ``restart`` (a protocol phase change) starts again from the stable step: the jump starts a fast
        transient. A model's update between steps passes False and keeps the step size.
        """
        if restart:
            self.dt = self.control.stable_dt
        self.load_boundaries(state)
        if state.fixed.any():
            H = self.backend.to_host(self.H)
            H[state.fixed] = self.problem.enthalpy(state.fixed_temperature)[state.fixed]
            self.backend.update(self.H, H.astype(self.dtype))  # in place: every buffer keeps its identity
            self.backend.temperature(self.dp, self.H, self.T)

    def load_boundaries(self, state: BoundaryState) -> None:
        """Make ``state`` the boundary arrays the operator applies, leaving the solution as it is (a resume)."""
        self.backend.upload_boundaries(self.dp, state, self.dtype)

    def advance_to(self, t_end: float, on_step: Callable[[Any, float], None] | None = None) -> None:
        """Integrate to the absolute time ``t_end`` (s), hit exactly, with adaptive steps (:class:`StepControl`).

        After each accepted step, ``on_step(T_previous, dt)`` is called with the temperature before the
        step (a backend array, valid during the call) and the step's length; :attr:`T` is the new one.
        """
        c = self.control
        # the tolerance depends on t_end alone, so a run resumed mid-way takes the very same steps
        while t_end - self.t > 1e-12 * max(abs(t_end), 1e-6):
            proposed = min(self.dt, c.dt_limit())
            remaining = t_end - self.t
            dt = remaining if remaining <= proposed else min(proposed, 0.5 * remaining)
            if c.scheme == "euler":
                H_new, T_new = self.step_euler(dt)
                applications = 1
            else:
                applications = c.stages or rkl2_stages(dt, c.stable_dt)
                H_new, T_new = self.step_rkl2(dt, applications)
            self.stats.operator_applications += applications
            change = self.backend.max_abs_difference(self.T, T_new)
            if not change <= self.control.blow_up_change:  # also NaN: a non-finite state compares false
                raise BlowUp(self.t, dt, change, self._worst_node(T_new))
            factor = min(2.0, max(0.5, 0.9 * c.max_change / max(change, 1e-30)))
            if change > 1.5 * c.max_change and dt > c.stable_dt * (1 + 1e-9):
                self.dt = max(c.stable_dt, dt * c.max_change / change)  # reject: the state is untouched
                self.stats.rejected += 1
                continue
            T_previous = self._accept(H_new, T_new)
            self.t = t_end if remaining <= proposed else self.t + dt
            self.dt = max(c.stable_dt, (proposed if dt < proposed else dt) * factor)
            if on_step is not None:
                on_step(T_previous, dt)

    def advance(self, duration: float, on_step: Callable[[Any, float], None] | None = None) -> None:
        """Integrate over ``duration`` seconds from the current time (:meth:`advance_to`)."""
        self.advance_to(self.t + duration, on_step)

    def step_rkl2(self, dt: float, stages: int):
        """One RKL2 step with ``stages`` stages (:func:`rkl2_stage_table`); returns the candidate (H, T).

        The whole step goes to the backend at once (:meth:`~cryofield.backends.base.Backend.rkl2_stages`):
        the buffers of each stage and the coefficient table.
        """
        prev2, prev, T_prev = self.H, self.Y[0], self.T_stage[0]
        # L0 = F(Y_0); Y_1 = Y_0 + mu~_1 dt L0
        plan = [(self.T, self.L0, prev, T_prev, self.H, self.H, self.H, self.L0)]
        for j in range(2, stages + 1):
            new = next(y for y in self.Y if y is not prev and y is not prev2)
            T_new = self.T_stage[j % 2 == 0]
            # L = F(Y_{j-1}); Y_j = mu Y_{j-1} + nu Y_{j-2} + (1 - mu - nu) Y_0 + mu~ dt L + gamma~ dt L0
            plan.append((T_prev, self.L, new, T_new, prev, prev2, self.H, self.L0))
            prev2, prev, T_prev = prev, new, T_new
        self.backend.rkl2_stages(self.dp, rkl2_stage_table(stages, dt), plan)
        return prev, T_prev

    def step_euler(self, dt: float):
        """One forward-Euler step: H <- H + dt F(H)."""
        be, dp = self.backend, self.dp
        be.stage(dp, self.T, self.L0, self.Y[0], self.T_stage[0], (1.0, 0.0, 0.0, dt, 0.0), self.H, self.H, self.H,
                 self.L0)
        return self.Y[0], self.T_stage[0]

    def warm_up(self) -> None:
        """Compile (or load from Numba's cache) the stepping kernels on the real arrays; the state is unchanged."""
        be, dp, scratch = self.backend, self.dp, self.Y[2]
        be.stage(dp, self.T, self.L, scratch, self.T_stage[1], (1.0, 0.0, 0.0, 0.0, 0.0), self.H, self.H, self.H,
                 self.L)
        be.temperature(dp, self.H, self.T_stage[1])
        be.max_abs_difference(self.T, self.T_stage[1])
        be.synchronize()

    def _accept(self, H_new, T_new):
        """Make the last stage the new state by swapping buffers (no copies); returns the previous temperature."""
        T_previous = self.T
        self.Y[_position(self.Y, H_new)] = self.H
        self.T_stage[_position(self.T_stage, T_new)] = self.T
        self.H, self.T = H_new, T_new
        self.stats.steps += 1
        return T_previous

    def _worst_node(self, T_new) -> int:
        """The node whose candidate temperature is non-finite or changed most (host side; only on failure)."""
        old, new = self.backend.to_host(self.T).astype(float), self.backend.to_host(T_new).astype(float)
        change = np.where(np.isfinite(new), np.abs(new - old), np.inf)
        return int(np.argmax(change))

    def state(self) -> dict:
        """Everything that determines the next steps, as host arrays and numbers (for checkpoints)."""
        be = self.backend
        return {"H": be.to_host(self.H), "T": be.to_host(self.T), "t": self.t, "dt": self.dt,
                "steps": self.stats.steps, "rejected": self.stats.rejected,
                "operator_applications": self.stats.operator_applications}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state`: the same arrays bit for bit, so the run takes the very same steps."""
        be = self.backend
        self.H = be.to_device(np.asarray(state["H"], self.dtype))
        self.T = be.to_device(np.asarray(state["T"], self.dtype))
        self.t, self.dt = float(state["t"]), float(state["dt"])
        self.stats = StepStats(int(state["steps"]), int(state["rejected"]), int(state["operator_applications"]))

    def temperature_host(self) -> np.ndarray:
        """Current nodal temperature (°C) as a float64 host array."""
        return self.backend.to_host(self.T).astype(float)

    def enthalpy_host(self) -> np.ndarray:
        """Current nodal enthalpy (J/m³) as a float64 host array."""
        return self.backend.to_host(self.H).astype(float)


def _position(buffers: list, buffer) -> int:
    """Index of ``buffer`` in ``buffers`` by identity (arrays do not compare with ==)."""
    return next(i for i, b in enumerate(buffers) if b is buffer)
