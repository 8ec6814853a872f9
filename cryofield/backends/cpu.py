"""CPU backend: Numba-parallel kernels over elements and nodes (no atomics, deterministic)."""

from __future__ import annotations

import os
import platform

import numba
import numpy as np
from numba import njit, prange

from .. import pointwise
from .base import Backend, DeviceProblem

_jit = njit(cache=True, inline="always")
temperature_of = _jit(pointwise.temperature_of)
conductivity_of = _jit(pointwise.conductivity_of)
liquid_fraction_of = _jit(pointwise.liquid_fraction_of)
below_fraction = _jit(pointwise.below_fraction)


@njit(parallel=True, cache=True)
def element_flux(T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux):
    """flux[e, a] = -k_e sum_{b != a} K_ab (T_b - T_a): heat flow (W) into local node a of element e."""
    for e in prange(tets.shape[0]):
        m = elem_mat[e]
        t0, t1, t2, t3 = T[tets[e, 0]], T[tets[e, 1]], T[tets[e, 2]], T[tets[e, 3]]
        # k_e = mean of k(T) at the four nodes, with the element's tissue
        k = 0.25 * (conductivity_of(t0, m, k_T, k_k, k_n) + conductivity_of(t1, m, k_T, k_k, k_n)
                    + conductivity_of(t2, m, k_T, k_k, k_n) + conductivity_of(t3, m, k_T, k_k, k_n))
        c = edge_coef[e]
        # w_ab = k_e K_ab (T_b - T_a), edges in fem.EDGES order
        w01 = k * c[0] * (t1 - t0)
        w02 = k * c[1] * (t2 - t0)
        w03 = k * c[2] * (t3 - t0)
        w12 = k * c[3] * (t2 - t1)
        w13 = k * c[4] * (t3 - t1)
        w23 = k * c[5] * (t3 - t2)
        flux[e, 0] = -(w01 + w02 + w03)
        flux[e, 1] = w01 - w12 - w13
        flux[e, 2] = w02 + w12 - w23
        flux[e, 3] = w03 + w13 + w23


@njit(parallel=True, cache=True)
def node_rate(T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
              fixed, robin_coef, robin_rhs, out):
    """out_i = [sum_e flux_e,i + hA_i (T_amb - T_i)] / V_i + f_l(T_i) [P_i (T_a - T_i) + Q_i]."""
    flat = flux.ravel()
    for i in prange(T.shape[0]):
        if fixed[i]:
            out[i] = 0.0
            continue
        s = 0.0
        for j in range(node_ptr[i], node_ptr[i + 1]):
            s += flat[node_slot[j]]
        m = node_mat[i]
        fl = liquid_fraction_of(T[i], solidus[m], liquidus[m])
        out[i] = (s + robin_rhs[i] - robin_coef[i] * T[i]) / lumped[i] + fl * (perfusion[i] * (Ta - T[i])
                                                                                + metabolic[i])


@njit(parallel=True, cache=True)
def temperature_kernel(H, node_mat, h_T, h_H, h_n, h_slope, T):
    """T_i = T(H_i)."""
    for i in prange(H.shape[0]):
        T[i] = temperature_of(H[i], node_mat[i], h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def combine_kernel(out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope):
    """Y = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0 (an RKL stage), then T = T(Y)."""
    for i in prange(out.shape[0]):
        y = a1 * Y1[i] + a2 * Y2[i] + a0 * Y0[i] + b1 * L1[i] + b0 * L0[i]
        out[i] = y
        T_out[i] = temperature_of(y, node_mat[i], h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def track_kernel(T_old, T_new, dt, T_min, thresholds, time_below):
    """T_min = min(T_min, T_new); time_below[k] += dt * (fraction of the step with T <= threshold k)."""
    for i in prange(T_new.shape[0]):
        a, b = T_old[i], T_new[i]
        if b < T_min[i]:
            T_min[i] = b
        for k in range(thresholds.shape[0]):
            time_below[k, i] += dt * below_fraction(a, b, thresholds[k])


@njit(parallel=True, cache=True)
def max_abs_difference_kernel(a, b):
    """max_i |a_i - b_i|."""
    m = 0.0
    for i in prange(a.shape[0]):
        m = max(m, abs(a[i] - b[i]))
    return m


class CpuBackend(Backend):
    """Numba ``parallel=True`` kernels on the host; arrays are plain numpy arrays."""

    name = "cpu"

    @property
    def device_name(self) -> str:
        cpu = platform.processor() or platform.machine()
        return f"{cpu} ({numba.get_num_threads()} threads of {os.cpu_count()} cores)"

    def to_device(self, array):
        return np.array(array, copy=True)

    def to_host(self, array):
        return np.array(array, copy=True)

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def temperature(self, dp: DeviceProblem, H, T):
        temperature_kernel(H, dp.node_mat, dp.h_T, dp.h_H, dp.h_n, dp.h_slope, T)

    def apply_operator(self, dp: DeviceProblem, T, out):
        element_flux(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.k_T, dp.k_k, dp.k_n, dp.flux)
        node_rate(T, dp.flux, dp.node_ptr, dp.node_slot, dp.lumped, dp.perfusion, dp.metabolic,
                  dp.arterial_temperature, dp.node_mat, dp.solidus, dp.liquidus, dp.fixed, dp.robin_coef,
                  dp.robin_rhs, out)

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        combine_kernel(out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, dp.node_mat, dp.h_T, dp.h_H, dp.h_n,
                       dp.h_slope)

    def max_abs_difference(self, a, b):
        return float(max_abs_difference_kernel(a, b))

    def track(self, T_old, T_new, dt, T_min, thresholds, time_below):
        track_kernel(T_old, T_new, T_new.dtype.type(dt), T_min, thresholds, time_below)
