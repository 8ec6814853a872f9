"""CUDA backend: the CPU backend's kernels in Numba-CUDA, with the whole solution state resident on the GPU.

Work layout
-----------
One thread per element for the element heat flows, one thread per node for everything else; the per-node
sum of element contributions is a gather through the node → slot incidence list, exactly as on the CPU,
so there are no atomics and a run is deterministic and sums in the CPU's order. The arithmetic of every
kernel is the shared body in :mod:`cryofield.kernels` (and the laws of :mod:`cryofield.pointwise`),
compiled here as device functions; this module only writes the launches.

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

from .. import kernels
from .base import Backend, DeviceProblem

#: Threads per block of the element and node kernels.
THREADS = 128
#: Threads per block of the reduction (a power of two: shared-memory tree).
REDUCE_THREADS = 256
#: Most blocks of the reduction; each thread strides over the rest.
REDUCE_BLOCKS = 1024

k = kernels.render(cuda.jit(device=True), f"{__name__}.bodies")


@cuda.jit(cache=True)
def element_flux_kernel(T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux):
    """flux[e] for one element per thread (:func:`cryofield.kernels.element_flux_at`)."""
    e = cuda.grid(1)
    if e < tets.shape[0]:
        k.element_flux_at(e, T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux)


@cuda.jit(cache=True)
def node_rate_kernel(T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                     fixed, robin_coef, robin_rhs, out):
    """out_i = dH_i/dt (:func:`cryofield.kernels.node_rate_at`)."""
    i = cuda.grid(1)
    if i < T.shape[0]:
        out[i] = k.node_rate_at(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat,
                                solidus, liquidus, fixed, robin_coef, robin_rhs)


@cuda.jit(cache=True)
def node_stage_kernel(T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                      fixed, robin_coef, robin_rhs, L, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, b0, L0, h_T, h_H, h_n,
                      h_slope):
    """L_i = dH_i/dt; out_i = a1 Y1_i + a2 Y2_i + a0 Y0_i + b1 L_i + b0 L0_i; T_out_i = T(out_i)."""
    i = cuda.grid(1)
    if i >= T.shape[0]:
        return
    L[i] = k.node_rate_at(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus,
                          liquidus, fixed, robin_coef, robin_rhs)
    # L_i is read back, rounded to the storage precision as the unfused path does; L0 may alias L
    k.combine_at(i, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L, b0, L0, node_mat, h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def temperature_kernel(H, node_mat, h_T, h_H, h_n, h_slope, T):
    """T_i = T(H_i)."""
    i = cuda.grid(1)
    if i < H.shape[0]:
        T[i] = k.temperature_of(H[i], node_mat[i], h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def combine_kernel(out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope):
    """One RKL stage's vector update and T(H) (:func:`cryofield.kernels.combine_at`)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        k.combine_at(i, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope)


@cuda.jit(cache=True)
def track_kernel(T_old, T_new, dt, T_min, thresholds, time_below):
    """Running minimum and time below each threshold (:func:`cryofield.kernels.track_at`)."""
    i = cuda.grid(1)
    if i < T_new.shape[0]:
        k.track_at(i, T_old, T_new, dt, T_min, thresholds, time_below)


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
