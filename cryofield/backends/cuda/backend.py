"""CUDA backend: the CPU backend's kernels in Numba-CUDA, with the whole solution state resident on the GPU.

The package's other modules do the parts: :mod:`~cryofield.backends.cuda.kernels` (the kernels and the work
layout), :mod:`~cryofield.backends.cuda.launch` (prepared launches), :mod:`~cryofield.backends.cuda.graphs`
(a CUDA graph per RKL2 step) and :mod:`~cryofield.backends.cuda.exact` (FMA contraction off). This module
holds the state on the device and writes each step's launches.

Launches and host synchronisation
---------------------------------
A stage of RKL2 is two launches for the whole ensemble: ``element_flux``, then ``node_stage``, which sums
the flows, adds perfusion, metabolism and Robin terms and does the stage's vector update and T(H) in the
same pass; a variant takes part in its own stages only (``counts``). A step of ``s`` stages is ``2 s + 3``
launches (the per-variant step-change reduction, the commit of the accepted variants and the dose tracker)
and one device → host transfer: the per-variant, per-block maxima of the step's temperature change, which
the host-side step control needs. With a tolerance, from a phase's third step on, the local error estimate
adds one reduction (``local_error``) and its transfer. Snapshots and metrics copy one variant's temperature
at output times only (``lane_out``).

The stage coefficients and per-variant stage counts live in small device arrays that keep their identity
(:meth:`CudaBackend._upload`), so a step's launches can be prepared once and captured into a graph.
``CudaBackend(prepared=False, graphs=False)`` (or ``CRYOFIELD_CUDA_PREPARED=0``, ``CRYOFIELD_CUDA_GRAPHS=0``)
turns prepared launches and graphs off; ``CudaBackend(exact=True)`` (or ``CRYOFIELD_CUDA_EXACT=1``) turns FMA
contraction off. :meth:`CudaBackend.diagnostics` (in the run summary) says which are on and why not.

Precision
---------
float64 by default. With ``solver.precision: float32`` every stored array (state, geometry, tables) is
float32, which cuts the bytes a stage moves by 40 %, while sums inside a thread stay float64 as on the CPU.
Enthalpies reach about 4e8 J/m³, so float32 resolves them to about 1e-5 K per rounding; how far float32
runs stray from float64 is measured by ``python -m benchmarks.gpu --parts accuracy`` (benchmarks/README.md,
"Single precision").
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import cuda

from cryofield.backends.base import Backend, DeviceProblem
from cryofield.backends.cuda.check import simulator
from cryofield.backends.cuda.exact import exact_kernels, exact_support
from cryofield.backends.cuda.graphs import StepGraphs
from cryofield.backends.cuda.kernels import KERNELS, REDUCE_THREADS
from cryofield.backends.cuda.launch import REDUCE_BLOCKS, THREADS, Launcher, blocks_for
from cryofield.errors import BackendUnavailable

#: Pinned host buffers the stage coefficients are copied from, in turn (all work is waited for on wrap-around).
COEF_RING = 64


def device_description() -> str:
    """Name and compute capability of the current CUDA device (the simulator has no name)."""
    device = cuda.get_current_device()
    name = getattr(device, "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    major, minor = device.compute_capability
    return f"{name} (compute capability {major}.{minor})"


def _switch(value: bool | None, variable: str) -> bool:
    """``value``, or the environment variable ``variable`` ("0" turns off) when None."""
    if value is not None:
        return value
    return os.environ.get(variable, "1") != "0"


class CudaBackend(Backend):
    """Numba-CUDA kernels on the current GPU; arrays are device arrays (see the module docstring).

    Parameters
    ----------
    prepared, graphs
        Prepared launches and step graphs (default: on where supported, unless ``CRYOFIELD_CUDA_PREPARED=0``
        or ``CRYOFIELD_CUDA_GRAPHS=0``).
    exact
        FMA contraction off, so the GPU evaluates the CPU's arithmetic exactly (default: ``CRYOFIELD_CUDA_EXACT=1``).
    """

    name = "cuda"

    def __init__(self, prepared: bool | None = None, graphs: bool | None = None, exact: bool | None = None):
        exact = os.environ.get("CRYOFIELD_CUDA_EXACT") == "1" if exact is None else exact
        if exact:
            ok, why = exact_support()
            if not ok:
                raise BackendUnavailable(f"the exact (FMA off) mode cannot run here: {why}", key="solver.backend")
        self.exact = exact
        self._k = exact_kernels() if exact else KERNELS
        self._launch = Launcher(_switch(prepared, "CRYOFIELD_CUDA_PREPARED"), exact)
        self._graphs = StepGraphs(_switch(graphs, "CRYOFIELD_CUDA_GRAPHS"))
        if self._graphs.enabled and not self._launch.prepared:
            self._graphs.disable(f"graphs need prepared launches, which are off ({self._launch.why})")
        self._partial: dict = {}  # variants -> (device, pinned) per-block maxima of the step change
        self._uploads: dict = {}  # (name, dtype, trailing shape) -> (device array, pinned ring)
        self._lanes: dict = {}  # (size, dtype) -> contiguous scratch of one variant's entries
        self._ring = 0

    @property
    def device_name(self) -> str:
        return device_description()

    def to_device(self, array):
        return cuda.to_device(np.ascontiguousarray(array))

    def to_host(self, array):
        return array.copy_to_host()

    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=dtype)

    def update(self, array, host):
        array.copy_to_device(np.ascontiguousarray(host, dtype=array.dtype))

    def synchronize(self) -> None:
        cuda.synchronize()

    def diagnostics(self) -> dict:
        if simulator():
            exact = "not contracted (the simulator rounds every product)"
        elif self.exact:
            exact = f"off (exact mode: {exact_support()[1]})"
        else:
            exact = "contracted into FMA (NVVM default; CudaBackend(exact=True) turns it off)"
        graphs = self._graphs
        return super().diagnostics() | {
            "prepared_launches": "on: " + self._launch.why if self._launch.prepared else "off: " + self._launch.why,
            "step_graphs": (f"on: {graphs.why}; {graphs.built} built, {graphs.replayed} replays" if graphs.enabled
                            else "off: " + graphs.why),
            "fma": exact,
        }

    def read_lane(self, dp: DeviceProblem, array, b):
        size = array.shape[0] // dp.n_variants
        if dp.n_variants == 1:
            return array.copy_to_host()
        out = self._lane_scratch(size, array.dtype)
        start, stride = (b, dp.n_variants) if dp.variant_fastest else (b * size, 1)
        self._launch(self._k["lane_out"], blocks_for(size), THREADS, (array, out), (start, stride))
        return out.copy_to_host()

    def write_lane(self, dp: DeviceProblem, array, b, host):
        size = array.shape[0] // dp.n_variants
        host = np.ascontiguousarray(host, dtype=array.dtype)
        if dp.n_variants == 1:
            array.copy_to_device(host)
            return
        src = self._lane_scratch(size, array.dtype)
        src.copy_to_device(host)
        start, stride = (b, dp.n_variants) if dp.variant_fastest else (b * size, 1)
        self._launch(self._k["lane_in"], blocks_for(size), THREADS, (src, array), (start, stride))

    def _lane_scratch(self, size: int, dtype):
        key = (size, np.dtype(dtype))
        if key not in self._lanes:
            self._lanes[key] = cuda.device_array(size, dtype)
        return self._lanes[key]

    # -- kernels ------------------------------------------------------------------------------------------------------
    def temperature(self, dp: DeviceProblem, H, T):
        n, _, nb, vf = dp.layout
        self._launch(self._k["temperature"], blocks_for(n * nb), THREADS, (H, dp.node_mat, dp.mat_f, dp.mat_n, T),
                     (n, nb, vf, dp.n_materials))

    def apply_operator(self, dp: DeviceProblem, T, out):
        n, ne, nb, vf = dp.layout
        self._element_flux(dp, T, self._upload("everyone", np.ones(nb, np.int32)), 1)
        self._launch(self._k["node_rate"], blocks_for(n * nb), THREADS,
                     (T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                      dp.arterial, out), (n, ne, nb, vf, dp.n_materials))

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        n, _, nb, vf = dp.layout
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        self._launch(self._k["combine"], blocks_for(n * nb), THREADS,
                     (out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n),
                     (a1, a2, a0, b1, b0, n, nb, vf, dp.n_materials))

    def rkl2_stages(self, dp: DeviceProblem, table, counts, stages):
        coefs = self._upload("coefs", np.asarray(table, stages[0][2].dtype))
        counts = self._upload("counts", np.asarray(counts, np.int32))
        graphs = self._graphs
        if not graphs.enabled:
            self._stages(dp, coefs, counts, stages)
            return
        key = (id(dp), id(coefs), id(counts), *(id(a) for stage in stages for a in stage))
        graph = graphs.get(key)
        if graph is not None:
            graph.launch(self._launch.stream)
            return
        self._stages(dp, coefs, counts, stages)
        if graphs.second_sighting(key):
            self._capture(key, dp, coefs, counts, stages)

    def level_rate(self, dp: DeviceProblem, level, T, L, frozen):
        n, ne, _, _ = dp.layout
        self._launch(self._k["level_flux"], blocks_for(len(level.elems)), THREADS,
                     (T, level.elems, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux), (n, ne))
        self._launch(self._k["level_rate"], blocks_for(len(level.nodes)), THREADS,
                     (T, level.nodes, frozen, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed,
                      dp.mat_f, dp.arterial, L), (level.n_active, n, ne))

    def level_combine(self, dp: DeviceProblem, level, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        self._launch(self._k["level_combine"], blocks_for(len(level.nodes)), THREADS,
                     (level.nodes, out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n),
                     (a1, a2, a0, b1, b0))

    def averaged_rate(self, dp: DeviceProblem, level, v, u, eta, L):
        self._launch(self._k["averaged_rate"], blocks_for(max(level.n_active, 1)), THREADS, (level.nodes, v, u, L),
                     (L.dtype.type(eta), level.n_active))

    def step_change(self, dp: DeviceProblem, T, T_odd, T_even, counts):
        counts = self._upload("counts", np.asarray(counts, np.int32))
        return self._reduce_max(dp, "step_change", (T, T_odd, T_even, counts), ())

    def local_error(self, dp: DeviceProblem, T_older, T_prev, T, T_odd, T_even, counts, weights):
        return self._reduce_max(dp, "local_error", (T_older, T_prev, T, T_odd, T_even,
                                                    self._upload("counts", np.asarray(counts, np.int32)),
                                                    self._upload("weights", np.asarray(weights, np.float64)),
                                                    dp.node_mat, dp.mat_f), (dp.n_materials,))

    def _reduce_max(self, dp: DeviceProblem, name: str, arrays: tuple, scalars: tuple) -> np.ndarray:
        """(B,) per variant max of a block-reduction kernel (its arrays, the per-block maxima, n, nb, vf, its
        scalars): the launch, the one device → host copy, the max over the blocks."""
        n, _, nb, vf = dp.layout
        blocks = max(1, min(REDUCE_BLOCKS // nb, math.ceil(n / REDUCE_THREADS)))
        partial = self._partial.get(nb)
        if partial is None:  # nb * blocks <= max(REDUCE_BLOCKS, nb)
            size = max(REDUCE_BLOCKS, nb)
            partial = self._partial[nb] = cuda.device_array(size, np.float64), cuda.pinned_array(size, np.float64)
        device, host = partial
        self._launch(self._k[name], (blocks, nb), REDUCE_THREADS, (*arrays, device), (n, nb, vf, *scalars))
        if self._launch.prepared:  # synchronous: waits for the step's kernels
            from numba.cuda.cudadrv.driver import driver

            driver.cuMemcpyDtoH(host.ctypes.data, device.device_ctypes_pointer.value, nb * blocks * 8)
        else:
            device.copy_to_host(host)
        return np.max(host[:nb * blocks].reshape(nb, blocks), axis=1)  # NaN propagates

    def commit(self, dp: DeviceProblem, counts, accept, H, T, T_prev, T_older, Y, T_odd, T_even):
        n, _, nb, vf = dp.layout
        self._launch(self._k["commit"], blocks_for(n * nb), THREADS,
                     (self._upload("counts", np.asarray(counts, np.int32)),
                      self._upload("accept", np.asarray(accept, np.uint8)), H, T, T_prev, T_older, *Y, T_odd, T_even),
                     (n, nb, vf))

    def track(self, dp: DeviceProblem, T_old, T_new, dt, T_min, thresholds, time_below):
        n, _, nb, vf = dp.layout
        self._launch(self._k["track"], blocks_for(n * nb), THREADS,
                     (T_old, T_new, T_min, thresholds, time_below, self._upload("dt", np.asarray(dt, T_new.dtype))),
                     (n, nb, vf))

    # -- internals ----------------------------------------------------------------------------------------------------
    def _element_flux(self, dp: DeviceProblem, T, counts, j, target=None) -> None:
        n, ne, nb, vf = dp.layout
        self._launch(self._k["element_flux"], blocks_for(ne * nb), THREADS,
                     (T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux, counts),
                     (j, n, ne, nb, vf, dp.n_materials), target=target)

    def _stages(self, dp: DeviceProblem, coefs, counts, stages, target=None) -> None:
        """The launches of ``stages`` (stage j reads row j of ``coefs``), or their capture into ``target``."""
        n, ne, nb, vf = dp.layout
        node_stage_kernel, blocks = self._k["node_stage"], blocks_for(n * nb)
        for j, (T, L, out, T_out, Y1, Y2, Y0, L0) in enumerate(stages, start=1):
            self._element_flux(dp, T, counts, j, target)
            self._launch(node_stage_kernel, blocks, THREADS,
                         (T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                          dp.mat_n, dp.arterial, coefs, counts, L, out, T_out, Y1, Y2, Y0, L0),
                         (j, n, ne, nb, vf, dp.n_materials), target)

    def _upload(self, name: str, host: np.ndarray):
        """Copy the small host array ``host`` into the device array kept for ``name`` (and its dtype and trailing
        shape); returns that array, whose identity stays the same from call to call (prepared launches, graphs).

        The copy is queued on the default stream from a pinned buffer, so it lands after the kernels
        before it have read the previous contents; a ring of pinned buffers lets the host run ahead. The
        leading axis grows to a power of two as needed (rows of a coefficient table).
        """
        key = (name, host.dtype, host.shape[1:])
        rows = host.shape[0]
        device, ring = self._uploads.get(key, (None, None))
        if device is None or device.shape[0] < rows:
            capacity = max(8, 2 ** math.ceil(math.log2(max(rows, 1))))
            device = cuda.device_array((capacity, *host.shape[1:]), host.dtype)
            ring = [cuda.pinned_array((capacity, *host.shape[1:]), host.dtype) for _ in range(COEF_RING)]
            self._uploads[key] = device, ring
        self._ring = (self._ring + 1) % COEF_RING
        if self._ring == 0:
            cuda.synchronize()  # every pinned buffer is free again
        pinned = ring[self._ring]
        pinned[:rows] = host
        nbytes = host.nbytes
        if self._launch.prepared:  # numba-cuda's driver wrapper raises on error; 0: the default stream
            from numba.cuda.cudadrv.driver import driver

            driver.cuMemcpyHtoDAsync(device.device_ctypes_pointer.value, pinned.ctypes.data, nbytes, 0)
        else:
            device.copy_to_device(pinned)
        return device

    def _capture(self, key, dp: DeviceProblem, coefs, counts, stages) -> None:
        """Capture the launches of ``stages`` into a CUDA graph (the step has just run with plain launches)."""
        arrays = [dp, coefs, counts, *{id(a): a for stage in stages for a in stage}.values()]
        self._graphs.capture(key, lambda builder: self._stages(dp, coefs, counts, stages, target=builder),
                             (stages[-1][2], stages[-1][3]), self._launch.stream, arrays)
