"""Step control: the step-size controller, its local error estimate and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cryofield.timestepping.rkl2 import rkl2_max_dt
from cryofield.timestepping.schemes import SCHEMES


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
        A name of :data:`cryofield.timestepping.schemes.SCHEMES`.
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
        The multirate scheme's levels (:class:`cryofield.timestepping.multirate.Levels`).
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
        """The longest step the scheme and the settings allow (s)."""
        if not SCHEMES[self.scheme].super_steps:
            return min(self.max_dt, self.stable_dt)
        if self.stages is not None:
            return min(self.max_dt, rkl2_max_dt(self.stages, self.stable_dt))
        return self.max_dt


def pi_factor(error: float, previous: float | None, tolerance: float) -> float:
    """Step-size factor from the local error estimate: PI control (0.7/3, 0.4/3) after an accepted estimate
    ``previous``, elementary (1/3) before, with safety 0.9; errors floored at 1e-4 of the tolerance (a step with
    no estimated error grows by the largest factor).

    Examples
    --------
    >>> round(pi_factor(1.0, None, 8.0), 6)  # (8/1)^(1/3) * 0.9
    1.8
    """
    ratio = tolerance / max(error, 1e-4 * tolerance)
    if previous is None:
        return 0.9 * ratio ** (1 / 3)
    return 0.9 * ratio ** (0.7 / 3) * (max(previous, 1e-4 * tolerance) / tolerance) ** (0.4 / 3)
