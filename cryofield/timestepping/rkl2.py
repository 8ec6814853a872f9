"""RKL2 super time stepping: its coefficients, stage tables and stability bound.

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

import numpy as np


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
