"""CUDA backend: the CPU backend's kernels in Numba-CUDA, with the whole solution state resident on the GPU.

Work layout
-----------
One thread per element for the element heat flows, one thread per node for everything else; the per-node
sum of element contributions is a gather through the node → slot incidence list, exactly as on the CPU,
so there are no atomics and a run is deterministic and sums in the CPU's order. The scalar material laws
are :mod:`cryofield.pointwise`, compiled here as device functions; every kernel mirrors the arithmetic of
its twin in :mod:`cryofield.backends.cpu`.

Launches and host synchronisation
---------------------------------
A stage of RKL2 is two launches: :func:`element_flux_kernel`, then :func:`node_stage_kernel`, which sums
the flows, adds perfusion, metabolism and Robin terms and does the stage's vector update and T(H) in the
same pass (:meth:`Backend.stage`). A step of ``s`` stages is ``2 s + 2`` launches (the step-size reduction
and the dose tracker) and one device → host transfer: the per-block maxima of the step's temperature
change, which the host-side step control needs. Snapshots and metrics copy the temperature at output
times only.

Precision
---------
float64 by default. With ``solver.precision: float32`` every stored array (state, geometry, tables) is
float32, which cuts the bytes a stage moves by 40 %, while sums inside a thread stay float64 as on the CPU.
Enthalpies reach about 4e8 J/m³, so float32 resolves them to about 1e-5 K per rounding. Measured against
float64 on the CPU backend (same arithmetic; ``python -m benchmarks.gpu --parts accuracy --backend cpu``):
on the Neumann case (1204 nodes, 90 s) the largest nodal difference is 0.30 K, at the moving front, where
the float32 run takes one more adaptive step (0.09 K when both take the same steps); the -1 °C front moves
by 1 µm, against a float64 discretisation error of 33 µm. On a double freeze-thaw of a 30³-cell block
(29 791 nodes) temperatures differ by at most 0.011 K, minimum temperatures by 0.006 K, time below -20 and
-40 °C by 0.02 s, ice and injury volumes by 4e-5 (relative).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64

from .. import pointwise
from .base import Backend, DeviceProblem

#: Threads per block of the element and node kernels.
THREADS = 128
#: Threads per block of the reduction (a power of two: shared-memory tree).
REDUCE_THREADS = 256
#: Most blocks of the reduction; each thread strides over the rest.
REDUCE_BLOCKS = 1024

_device = cuda.jit(device=True)
temperature_of = _device(pointwise.temperature_of)
conductivity_of = _device(pointwise.conductivity_of)
liquid_fraction_of = _device(pointwise.liquid_fraction_of)
below_fraction = _device(pointwise.below_fraction)


@cuda.jit(cache=True)
def element_flux_kernel(T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux):
    """flux[e, a] = -k_e sum_{b != a} K_ab (T_b - T_a): heat flow (W) into local node a; k_e = mean of k(T)."""
    e = cuda.grid(1)
    if e >= tets.shape[0]:
        return
    m = elem_mat[e]
    t0, t1, t2, t3 = T[tets[e, 0]], T[tets[e, 1]], T[tets[e, 2]], T[tets[e, 3]]
    k = 0.25 * (conductivity_of(t0, m, k_T, k_k, k_n) + conductivity_of(t1, m, k_T, k_k, k_n)
                + conductivity_of(t2, m, k_T, k_k, k_n) + conductivity_of(t3, m, k_T, k_k, k_n))
    w01 = k * edge_coef[e, 0] * (t1 - t0)
    w02 = k * edge_coef[e, 1] * (t2 - t0)
    w03 = k * edge_coef[e, 2] * (t3 - t0)
    w12 = k * edge_coef[e, 3] * (t2 - t1)
    w13 = k * edge_coef[e, 4] * (t3 - t1)
    w23 = k * edge_coef[e, 5] * (t3 - t2)
    flux[e, 0] = -(w01 + w02 + w03)
    flux[e, 1] = w01 - w12 - w13
    flux[e, 2] = w02 + w12 - w23
    flux[e, 3] = w03 + w13 + w23


@cuda.jit(device=True)
def heat_rate(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
              fixed, robin_coef, robin_rhs):
    """dH_i/dt = [sum_e flux_e,i + hA_i (T_amb - T_i)] / V_i + f_l(T_i) [P_i (T_a - T_i) + Q_i] (0 if fixed)."""
    if fixed[i]:
        return 0.0
    s = 0.0
    for j in range(node_ptr[i], node_ptr[i + 1]):
        slot = node_slot[j]
        s += flux[slot >> 2, slot & 3]
    m = node_mat[i]
    fl = liquid_fraction_of(T[i], solidus[m], liquidus[m])
    return (s + robin_rhs[i] - robin_coef[i] * T[i]) / lumped[i] + fl * (perfusion[i] * (Ta - T[i]) + metabolic[i])


@cuda.jit(cache=True)
def node_rate_kernel(T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                     fixed, robin_coef, robin_rhs, out):
    """out_i = dH_i/dt (:func:`heat_rate`)."""
    i = cuda.grid(1)
    if i < T.shape[0]:
        out[i] = heat_rate(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus,
                           liquidus, fixed, robin_coef, robin_rhs)


@cuda.jit(cache=True)
def node_stage_kernel(T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                      fixed, robin_coef, robin_rhs, L, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, b0, L0, h_T, h_H, h_n,
                      h_slope):
    """L_i = dH_i/dt; out_i = a1 Y1_i + a2 Y2_i + a0 Y0_i + b1 L_i + b0 L0_i; T_out_i = T(out_i)."""
    i = cuda.grid(1)
    if i >= T.shape[0]:
        return
    L[i] = heat_rate(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                     fixed, robin_coef, robin_rhs)
    # L_i is read back, rounded to the storage precision as the unfused CPU path does; L0 may alias L
    y = a1 * Y1[i] + a2 * Y2[i] + a0 * Y0[i] + b1 * L[i] + b0 * L0[i]
    out[i] = y
    T_out[i] = temperature_of(y, node_mat[i], h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def temperature_kernel(H, node_mat, h_T, h_H, h_n, h_slope, T):
    """T_i = T(H_i)."""
    i = cuda.grid(1)
    if i < H.shape[0]:
        T[i] = temperature_of(H[i], node_mat[i], h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def combine_kernel(out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope):
    """out_i = a1 Y1_i + a2 Y2_i + a0 Y0_i + b1 L1_i + b0 L0_i (an RKL stage); T_out_i = T(out_i)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        y = a1 * Y1[i] + a2 * Y2[i] + a0 * Y0[i] + b1 * L1[i] + b0 * L0[i]
        out[i] = y
        T_out[i] = temperature_of(y, node_mat[i], h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def track_kernel(T_old, T_new, dt, T_min, thresholds, time_below):
    """T_min_i = min(T_min_i, T_new_i); time_below[k, i] += dt * (fraction of the step with T_i <= level k)."""
    i = cuda.grid(1)
    if i >= T_new.shape[0]:
        return
    a, b = T_old[i], T_new[i]
    if b < T_min[i]:
        T_min[i] = b
    for k in range(thresholds.shape[0]):
        time_below[k, i] += dt * below_fraction(a, b, thresholds[k])


@cuda.jit(cache=True)
def max_abs_difference_kernel(a, b, partial):
    """partial[block] = max |a_i - b_i| over the nodes that the block's threads stride over."""
    cache = cuda.shared.array(REDUCE_THREADS, float64)
    tid = cuda.threadIdx.x
    m = 0.0
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        m = max(m, abs(a[i] - b[i]))
    cache[tid] = m
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if tid < step:
            cache[tid] = max(cache[tid], cache[tid + step])
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[cuda.blockIdx.x] = cache[0]


def device_description() -> str:
    """Name and compute capability of the current CUDA device (the simulator has no name)."""
    device = cuda.get_current_device()
    name = getattr(device, "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    major, minor = device.compute_capability
    return f"{name} (compute capability {major}.{minor})"


def _blocks(n: int) -> int:
    return max(1, math.ceil(n / THREADS))


class CudaBackend(Backend):
    """Numba-CUDA kernels on the current GPU; arrays are device arrays (see the module docstring)."""

    name = "cuda"

    def __init__(self) -> None:
        self._partial = cuda.device_array(REDUCE_BLOCKS, np.float64)
        self._partial_host = cuda.pinned_array(REDUCE_BLOCKS, np.float64)

    @property
    def device_name(self) -> str:
        return device_description()

    def to_device(self, array):
        return cuda.to_device(np.ascontiguousarray(array))

    def to_host(self, array):
        return array.copy_to_host()

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=dtype)

    def synchronize(self) -> None:
        cuda.synchronize()

    def temperature(self, dp: DeviceProblem, H, T):
        temperature_kernel[_blocks(dp.n_nodes), THREADS](H, dp.node_mat, dp.h_T, dp.h_H, dp.h_n, dp.h_slope, T)

    def apply_operator(self, dp: DeviceProblem, T, out):
        self._element_flux(dp, T)
        node_rate_kernel[_blocks(dp.n_nodes), THREADS](
            T, dp.flux, dp.node_ptr, dp.node_slot, dp.lumped, dp.perfusion, dp.metabolic, dp.arterial_temperature,
            dp.node_mat, dp.solidus, dp.liquidus, dp.fixed, dp.robin_coef, dp.robin_rhs, out)

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        combine_kernel[_blocks(dp.n_nodes), THREADS](out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, dp.node_mat,
                                                     dp.h_T, dp.h_H, dp.h_n, dp.h_slope)

    def stage(self, dp: DeviceProblem, T, L, out, T_out, coefs, Y1, Y2, Y0, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        self._element_flux(dp, T)
        node_stage_kernel[_blocks(dp.n_nodes), THREADS](
            T, dp.flux, dp.node_ptr, dp.node_slot, dp.lumped, dp.perfusion, dp.metabolic, dp.arterial_temperature,
            dp.node_mat, dp.solidus, dp.liquidus, dp.fixed, dp.robin_coef, dp.robin_rhs, L, out, T_out, a1, Y1, a2,
            Y2, a0, Y0, b1, b0, L0, dp.h_T, dp.h_H, dp.h_n, dp.h_slope)

    def max_abs_difference(self, a, b):
        blocks = min(REDUCE_BLOCKS, max(1, math.ceil(a.shape[0] / REDUCE_THREADS)))
        max_abs_difference_kernel[blocks, REDUCE_THREADS](a, b, self._partial)
        self._partial.copy_to_host(self._partial_host)
        return float(self._partial_host[:blocks].max())

    def track(self, T_old, T_new, dt, T_min, thresholds, time_below):
        track_kernel[_blocks(T_new.shape[0]), THREADS](T_old, T_new, T_new.dtype.type(dt), T_min, thresholds,
                                                       time_below)

    def _element_flux(self, dp: DeviceProblem, T) -> None:
        element_flux_kernel[_blocks(dp.n_elems), THREADS](T, dp.tets, dp.edge_coef, dp.elem_mat, dp.k_T, dp.k_k,
                                                          dp.k_n, dp.flux)
