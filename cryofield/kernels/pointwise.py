"""Scalar material laws shared by every backend.

These are plain Python functions on scalars and small table arrays. Each backend compiles them
for itself (``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU), so the CPU and
GPU evaluate exactly the same arithmetic.

Tables are padded 2-D arrays indexed by material ``m``:

* enthalpy: ``h_T[m, :n]`` breakpoint temperatures (°C), ``h_H[m, :n]`` enthalpies (J/m³) at those
  breakpoints, ``h_n[m]`` the count, ``h_slope[m, 0]`` / ``h_slope[m, 1]`` the volumetric heat
  capacity (J/m³/K) used below the first / above the last breakpoint.
* conductivity: ``k_T[m, :n]``, ``k_k[m, :n]``, ``k_n[m]``; linear between points, constant outside.
"""

from __future__ import annotations


def enthalpy_of(T, m, h_T, h_H, h_n, h_slope):
    """H(T): piecewise-linear volumetric enthalpy (J/m³) of material ``m`` at ``T`` (°C)."""
    n = h_n[m]
    if T <= h_T[m, 0]:
        return h_H[m, 0] + h_slope[m, 0] * (T - h_T[m, 0])
    if T >= h_T[m, n - 1]:
        return h_H[m, n - 1] + h_slope[m, 1] * (T - h_T[m, n - 1])
    j = 1
    while T > h_T[m, j]:
        j += 1
    w = (T - h_T[m, j - 1]) / (h_T[m, j] - h_T[m, j - 1])
    return h_H[m, j - 1] + w * (h_H[m, j] - h_H[m, j - 1])


def temperature_of(H, m, h_T, h_H, h_n, h_slope):
    """T(H): the exact inverse of :func:`enthalpy_of` (no iteration, H(T) is piecewise linear)."""
    n = h_n[m]
    if H <= h_H[m, 0]:
        return h_T[m, 0] + (H - h_H[m, 0]) / h_slope[m, 0]
    if H >= h_H[m, n - 1]:
        return h_T[m, n - 1] + (H - h_H[m, n - 1]) / h_slope[m, 1]
    j = 1
    while H > h_H[m, j]:
        j += 1
    w = (H - h_H[m, j - 1]) / (h_H[m, j] - h_H[m, j - 1])
    return h_T[m, j - 1] + w * (h_T[m, j] - h_T[m, j - 1])


def conductivity_of(T, m, k_T, k_k, k_n):
    """k(T) (W/m/K): linear between table points, constant outside them."""
    n = k_n[m]
    if T <= k_T[m, 0]:
        return k_k[m, 0]
    if T >= k_T[m, n - 1]:
        return k_k[m, n - 1]
    j = 1
    while T > k_T[m, j]:
        j += 1
    w = (T - k_T[m, j - 1]) / (k_T[m, j] - k_T[m, j - 1])
    return k_k[m, j - 1] + w * (k_k[m, j] - k_k[m, j - 1])


def liquid_fraction_of(T, T_solidus, T_liquidus):
    """f_l = clamp((T - T_s) / (T_l - T_s), 0, 1)."""
    f = (T - T_solidus) / (T_liquidus - T_solidus)
    if f < 0.0:
        return 0.0
    if f > 1.0:
        return 1.0
    return f


def below_fraction(a, b, level):
    """Fraction of a step during which T <= level, T linear in time from a to b."""
    if a <= level and b <= level:
        return 1.0
    if a > level and b > level:
        return 0.0
    if a > level:
        return (level - b) / (a - b)
    return (level - a) / (b - a)
