"""CPU backend: Numba-parallel loops over elements and nodes around the shared kernel bodies.

The arithmetic is :mod:`cryofield.kernels.bodies`, rendered here with ``numba.njit``; this module only writes
the ``prange`` loops. No atomics: every node gathers its elements' flows in a fixed order, so runs are
deterministic.
"""

from __future__ import annotations

import os
import platform

import numba
import numpy as np
from numba import njit, prange

from cryofield.backends.base import Backend, DeviceProblem
from cryofield.kernels import bodies as K  # layout constants of the packed arrays (Numba freezes them at compile time)
from cryofield.kernels import bodies as kernels

k = kernels.render(njit(cache=True, inline="always"), f"{__name__}.bodies")


# Every loop is one parallel loop over the nodes (or elements) with the variants inside, whatever the layout
# (kernels.at gives the addresses): no division per item, the element's geometry read once for all its variants.
@njit(parallel=True, cache=True)
def element_flux_loop(T, tets, edge_coef, elem_mat, mat_f, mat_n, flux, counts, j, n, ne, nb, vf, n_mat):
    """flux[e, b] for every element of every variant in stage j (:func:`cryofield.kernels.bodies.element_flux_at`)."""
    k_T, k_k, k_n = mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N]
    if nb == 1:  # a single run: the layout's constants passed as literals fold its addresses to a plain array's
        if counts[0] >= j:
            for e in prange(ne):
                k.element_flux_at(e, 0, T, tets, edge_coef, elem_mat, 0, k_T, k_k, k_n, flux, n, ne, 1, 0)
        return
    for e in prange(ne):
        for b in range(nb):
            if counts[b] >= j:
                k.element_flux_at(e, b, T, tets, edge_coef, elem_mat, n_mat, k_T, k_k, k_n, flux, n, ne, nb, vf)


@njit(parallel=True, cache=True)
def node_rate_loop(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, arterial, out, n, ne, nb, vf,
                   n_mat):
    """out = dH/dt for every node of every variant (:func:`cryofield.kernels.bodies.node_rate_at`)."""
    lumped, perfusion, metabolic = node_data[K.LUMPED], node_data[K.PERFUSION], node_data[K.METABOLIC]
    robin_coef, robin_rhs = node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS]
    solidus, liquidus = mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1]
    for i in prange(n):
        for b in range(nb):
            out[k.at(i, b, n, nb, vf)] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, lumped, perfusion,
                                                        metabolic, arterial, node_mat, n_mat, solidus, liquidus, fixed,
                                                        robin_coef, robin_rhs, n, ne, nb, vf)


@njit(parallel=True, cache=True)
def node_stage_loop(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, mat_n, arterial, L, out, T_out,
                    Y1, Y2, Y0, L0, table, counts, j, n, ne, nb, vf, n_mat):
    """L = dH/dt, then out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L + b0 L0 and T_out = T(out), with variant b's
    coefficients ``table[j, b]``, for the variants taking part in stage j."""
    lumped, perfusion, metabolic = node_data[K.LUMPED], node_data[K.PERFUSION], node_data[K.METABOLIC]
    robin_coef, robin_rhs = node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS]
    solidus, liquidus = mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1]
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    if nb == 1:  # a single run, as in element_flux_loop
        if counts[0] >= j:
            a1, a2, a0, b1, b0 = table[j, 0, K.A1], table[j, 0, K.A2], table[j, 0, K.A0], table[j, 0, K.B1], table[
                j, 0, K.B0]
            for i in prange(n):
                L[i] = k.node_rate_at(i, 0, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, arterial,
                                      node_mat, 0, solidus, liquidus, fixed, robin_coef, robin_rhs, n, ne, 1, 0)
                k.combine_at(i, node_mat[i], out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L, b0, L0, h_T, h_H, h_n, h_slope)
        return
    for i in prange(n):
        for b in range(nb):
            if counts[b] < j:
                continue
            t = k.at(i, b, n, nb, vf)
            L[t] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, arterial, node_mat,
                                  n_mat, solidus, liquidus, fixed, robin_coef, robin_rhs, n, ne, nb, vf)
            # L_t is read back from storage (L0 may alias L), as in the unfused apply-then-combine
            k.combine_at(t, node_mat[i] + b * n_mat, out, T_out, table[j, b, K.A1], Y1, table[j, b, K.A2], Y2,
                         table[j, b, K.A0], Y0, table[j, b, K.B1], L, table[j, b, K.B0], L0, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def temperature_loop(H, node_mat, mat_f, mat_n, T, n, nb, vf, n_mat):
    """T = T(H), every variant."""
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for i in prange(n):
        for b in range(nb):
            t = k.at(i, b, n, nb, vf)
            T[t] = k.temperature_of(H[t], node_mat[i] + b * n_mat, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def combine_loop(out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0, n, nb, vf, n_mat):
    """out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0, T_out = T(out) (:func:`cryofield.kernels.bodies.combine_at`)."""
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for i in prange(n):
        for b in range(nb):
            k.combine_at(k.at(i, b, n, nb, vf), node_mat[i] + b * n_mat, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0,
                         L0, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def step_change_loop(T, T_odd, T_even, counts, n, nb, vf, chunks):
    """(B,) per variant max |T_s - T| (:func:`cryofield.kernels.bodies.change_at`), NaN-propagating."""
    part = np.zeros((chunks, nb))
    for c in prange(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            for b in range(nb):
                s = counts[b]
                if s > 0:
                    part[c, b] = k.nan_max(part[c, b], k.change_at(k.at(i, b, n, nb, vf), s, T, T_odd, T_even))
    return chunk_max(part)


@njit(parallel=True, cache=True)
def local_error_loop(T_older, T_prev, T, T_odd, T_even, counts, weights, node_mat, mat_f, n, nb, vf, n_mat, chunks):
    """(B,) per variant max of the local error estimate (:func:`cryofield.kernels.bodies.local_error_at`),
    NaN-propagating; 0 for a variant with no stages."""
    phase = mat_f[K.PHASE]
    part = np.zeros((chunks, nb))
    for c in prange(chunks):
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            for b in range(nb):
                s = counts[b]
                if s > 0:
                    e = k.local_error_at(k.at(i, b, n, nb, vf), node_mat[i] + b * n_mat, s, weights[b], T_older,
                                         T_prev, T, T_odd, T_even, phase)
                    part[c, b] = k.nan_max(part[c, b], e)
    return chunk_max(part)


@njit(cache=True)
def chunk_max(part):
    """(B,) NaN-propagating max over the rows of a (chunks, B) array of per-chunk maxima."""
    out = np.zeros(part.shape[1])
    for c in range(part.shape[0]):
        for b in range(part.shape[1]):
            out[b] = k.nan_max(out[b], part[c, b])
    return out


@njit(parallel=True, cache=True)
def commit_loop(counts, accept, H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even, n, nb, vf):
    """The accepted variants' step results become their state (:func:`cryofield.kernels.bodies.commit_at`)."""
    for i in prange(n):
        for b in range(nb):
            if accept[b]:
                k.commit_at(k.at(i, b, n, nb, vf), counts[b], H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even)


@njit(parallel=True, cache=True)
def track_loop(T_old, T_new, dt, T_min, thresholds, time_below, n, nb, vf):
    """Running minimum and time below each level, variants with dt[b] > 0
    (:func:`cryofield.kernels.bodies.track_at`)."""
    for i in prange(n):
        for b in range(nb):
            if dt[b] > 0:
                k.track_at(k.at(i, b, n, nb, vf), T_old, T_new, dt[b], T_min, thresholds, time_below)


# Multirate levels (a single run): the same bodies over a level's element and node lists.
@njit(parallel=True, cache=True)
def level_rate_loop(T, elems, nodes, n_active, frozen, tets, edge_coef, elem_mat, flux, node_ptr, node_slot,
                    node_data, node_mat, fixed, mat_f, mat_n, arterial, L, n, ne):
    """flux of the level's elements, then L = dH/dt on its active nodes and L = frozen on its halo."""
    k_T, k_k, k_n = mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N]
    for q in prange(elems.shape[0]):
        k.element_flux_at(elems[q], 0, T, tets, edge_coef, elem_mat, 0, k_T, k_k, k_n, flux, n, ne, 1, 0)
    lumped, perfusion, metabolic = node_data[K.LUMPED], node_data[K.PERFUSION], node_data[K.METABOLIC]
    robin_coef, robin_rhs = node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS]
    solidus, liquidus = mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1]
    for q in prange(nodes.shape[0]):
        i = nodes[q]
        if q < n_active:
            L[i] = k.node_rate_at(i, 0, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, arterial, node_mat,
                                  0, solidus, liquidus, fixed, robin_coef, robin_rhs, n, ne, 1, 0)
        else:
            L[i] = frozen[i]


@njit(parallel=True, cache=True)
def level_combine_loop(nodes, out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0):
    """:func:`cryofield.kernels.bodies.combine_at` on the level's nodes and halo."""
    h_T, h_H, h_n, h_slope = mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE]
    for q in prange(nodes.shape[0]):
        i = nodes[q]
        k.combine_at(i, node_mat[i], out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, h_T, h_H, h_n, h_slope)


@njit(parallel=True, cache=True)
def averaged_rate_loop(nodes, n_active, v, u, eta, L):
    """L = (v - u) / eta on the level's active nodes (:func:`cryofield.kernels.bodies.averaged_rate_at`)."""
    for q in prange(n_active):
        k.averaged_rate_at(nodes[q], v, u, eta, L)


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
        n, _, nb, vf = dp.layout
        temperature_loop(H, dp.node_mat, dp.mat_f, dp.mat_n, T, n, nb, vf, dp.n_materials)

    def apply_operator(self, dp: DeviceProblem, T, out):
        n, ne, nb, vf = dp.layout
        element_flux_loop(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux, _everyone(nb), 1, n, ne,
                          nb, vf, dp.n_materials)
        node_rate_loop(T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                       dp.arterial, out, n, ne, nb, vf, dp.n_materials)

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        n, _, nb, vf = dp.layout
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        combine_loop(out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n, a1, a2, a0, b1, b0, n, nb, vf,
                     dp.n_materials)

    def rkl2_stages(self, dp: DeviceProblem, table, counts, stages):
        n, ne, nb, vf = dp.layout
        table = np.ascontiguousarray(table, dtype=stages[0][2].dtype)
        counts = np.ascontiguousarray(counts, dtype=np.int32)
        for j, (T, L, out, T_out, Y1, Y2, Y0, L0) in enumerate(stages, start=1):
            element_flux_loop(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux, counts, j, n, ne,
                              nb, vf, dp.n_materials)
            node_stage_loop(T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                            dp.mat_n, dp.arterial, L, out, T_out, Y1, Y2, Y0, L0, table, counts, j, n, ne, nb, vf,
                            dp.n_materials)

    def level_rate(self, dp: DeviceProblem, level, T, L, frozen):
        n, ne, _, _ = dp.layout
        level_rate_loop(T, level.elems, level.nodes, level.n_active, frozen, dp.tets, dp.edge_coef, dp.elem_mat,
                        dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f, dp.mat_n,
                        dp.arterial, L, n, ne)

    def level_combine(self, dp: DeviceProblem, level, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        level_combine_loop(level.nodes, out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n, a1, a2, a0,
                           b1, b0)

    def averaged_rate(self, dp: DeviceProblem, level, v, u, eta, L):
        averaged_rate_loop(level.nodes, level.n_active, v, u, L.dtype.type(eta), L)

    def step_change(self, dp: DeviceProblem, T, T_odd, T_even, counts):
        n, _, nb, vf = dp.layout
        chunks = max(1, min(n, 4 * numba.get_num_threads()))
        return step_change_loop(T, T_odd, T_even, np.ascontiguousarray(counts, np.int32), n, nb, vf, chunks)

    def local_error(self, dp: DeviceProblem, T_older, T_prev, T, T_odd, T_even, counts, weights):
        n, _, nb, vf = dp.layout
        chunks = max(1, min(n, 4 * numba.get_num_threads()))
        return local_error_loop(T_older, T_prev, T, T_odd, T_even, np.ascontiguousarray(counts, np.int32),
                                np.ascontiguousarray(weights, np.float64), dp.node_mat, dp.mat_f, n, nb, vf,
                                dp.n_materials, chunks)

    def commit(self, dp: DeviceProblem, counts, accept, H, T, T_prev, T_older, Y, T_odd, T_even):
        n, _, nb, vf = dp.layout
        commit_loop(np.ascontiguousarray(counts, np.int32), np.ascontiguousarray(accept, np.uint8), H, T, T_prev,
                    T_older, *Y, T_odd, T_even, n, nb, vf)

    def track(self, dp: DeviceProblem, T_old, T_new, dt, T_min, thresholds, time_below):
        n, _, nb, vf = dp.layout
        track_loop(T_old, T_new, np.ascontiguousarray(dt, T_new.dtype), T_min, thresholds, time_below, n, nb, vf)


def _everyone(nb: int) -> np.ndarray:
    """Stage counts that let every variant take part in stage 1 (an operator application on its own)."""
    return np.ones(nb, np.int32)
