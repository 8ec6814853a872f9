"""CPU backend: Numba-parallel loops over elements and nodes around the shared kernel bodies.

The arithmetic is :mod:`cryofield.kernels`, rendered here with ``numba.njit``; this module only writes
the ``prange`` loops. No atomics: every node gathers its elements' flows in a fixed order, so runs are
deterministic.
"""

from __future__ import annotations

import os
import platform

import numba
import numpy as np
from numba import njit, prange

from .. import kernels
from .. import kernels as K  # layout constants of the packed arrays (Numba freezes them at compile time)
from .base import Backend, DeviceProblem

k = kernels.render(njit(cache=True, inline="always"), f"{__name__}.bodies")


@njit(parallel=True, cache=True)
def element_flux_loop(T, tets, edge_coef, elem_mat, mat_f, mat_n, flux):
    """flux[e] for every element (:func:`cryofield.kernels.element_flux_at`)."""
    k_T, k_k, k_n = mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N]
    for e in prange(tets.shape[0]):
        k.element_flux_at(e, T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux)


@njit(parallel=True, cache=True)
def node_rate_loop(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, Ta, out):
    """out_i = dH_i/dt for every node (:func:`cryofield.kernels.node_rate_at`)."""
    lumped, perfusion, metabolic = node_data[K.LUMPED], node_data[K.PERFUSION], node_data[K.METABOLIC]
    robin_coef, robin_rhs = node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS]
    solidus, liquidus = mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1]
    for i in prange(T.shape[0]):
        out[i] = k.node_rate_at(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat,
                                solidus, liquidus, fixed, robin_coef, robin_rhs)


@njit(parallel=True, cache=True)
def node_stage_loop(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, mat_n, L, out, T_out, Y1, Y2,
                    Y0, L0, Ta, a1, a2, a0, b1, b0):
    """L_i = dH_i/dt, then out_i = a1 Y1_i + a2 Y2_i + a0 Y0_i + b1 L_i + b0 L0_i and T_out_i = T(out_i)."""
    lumped, perfusion, metabolic = node_data[K.LUMPED], node_data[K.PERFUSION], node_data[K.METABOLIC]
    robin_coef, robin_rhs = node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS]
    solidus, liquidus = mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1]
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for i in prange(T.shape[0]):
        L[i] = k.node_rate_at(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus,
                              liquidus, fixed, robin_coef, robin_rhs)
        # L_i is read back from storage (L0 may alias L), as in the unfused apply-then-combine
        k.combine_at(i, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L, b0, L0, node_mat, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def temperature_loop(H, node_mat, mat_f, mat_n, T):
    """T_i = T(H_i)."""
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for i in prange(H.shape[0]):
        T[i] = k.temperature_of(H[i], node_mat[i], h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def combine_loop(out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0):
    """out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0, T_out = T(out) (:func:`cryofield.kernels.combine_at`)."""
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for i in prange(out.shape[0]):
        k.combine_at(i, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def track_loop(T_old, T_new, dt, T_min, thresholds, time_below):
    """Running minimum and time below each threshold (:func:`cryofield.kernels.track_at`)."""
    for i in prange(T_new.shape[0]):
        k.track_at(i, T_old, T_new, dt, T_min, thresholds, time_below)


@njit(parallel=True, cache=True)
def max_abs_difference_loop(a, b):
    """max_i |a_i - b_i|."""
    m = 0.0
    for i in prange(a.shape[0]):
        m = max(m, abs(a[i] - b[i]))
    return m


class CpuBackend(Backend):
    """Numba ``parallel=True`` loops on the host; arrays are plain numpy arrays."""

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
        temperature_loop(H, dp.node_mat, dp.mat_f, dp.mat_n, T)

    def apply_operator(self, dp: DeviceProblem, T, out):
        element_flux_loop(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux)
        node_rate_loop(T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                       dp.arterial_temperature, out)

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        combine_loop(out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n, a1, a2, a0, b1, b0)

    def stage(self, dp: DeviceProblem, T, L, out, T_out, coefs, Y1, Y2, Y0, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        element_flux_loop(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux)
        node_stage_loop(T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                        dp.mat_n, L, out, T_out, Y1, Y2, Y0, L0, dp.arterial_temperature, a1, a2, a0, b1, b0)

    def max_abs_difference(self, a, b):
        return float(max_abs_difference_loop(a, b))

    def track(self, T_old, T_new, dt, T_min, thresholds, time_below):
        track_loop(T_old, T_new, T_new.dtype.type(dt), T_min, thresholds, time_below)
