"""CUDA backend: the CPU backend's kernels in Numba-CUDA, with the whole solution state resident on the GPU.

Work layout
-----------
One thread per (element, variant) for the element heat flows, one thread per (node, variant) for
everything else, in the order of the ensemble's layout (:func:`cryofield.kernels.split`: with the variants
fastest, the threads of a warp read one element's geometry and consecutive variants' values); a single run
is an ensemble of one. The per-node sum of element contributions is a gather through the node → slot
incidence list, exactly as on the CPU, so there are no atomics and a run is deterministic and sums in the
CPU's order. The arithmetic of every kernel is the shared body in :mod:`cryofield.kernels` (and the laws of
:mod:`cryofield.pointwise`), compiled here as device functions; this module only writes the launches.

Launches and host synchronisation
---------------------------------
A stage of RKL2 is two launches for the whole ensemble: :func:`element_flux`, then :func:`node_stage`,
which sums the flows, adds perfusion, metabolism and Robin terms and does the stage's vector update and
T(H) in the same pass; a variant takes part in its own stages only (``counts``). A step of ``s`` stages is
``2 s + 3`` launches (the per-variant step-change reduction, the commit of the accepted variants and the
dose tracker) and one device → host transfer: the per-variant, per-block maxima of the step's temperature
change, which the host-side step control needs. With a tolerance, from a phase's third step on, the local
error estimate adds one reduction (:func:`local_error`) and its transfer. Snapshots and metrics copy one
variant's temperature at output times only (:func:`lane_out`).

Host time per launch
--------------------
On meshes below a few hundred thousand nodes a stage takes less GPU time than numba-cuda's host-side
launch (typing every argument, then marshalling every array argument into the driver's parameter list:
about 5 µs per array). Three things keep the host off the critical path:

* packed arguments (:class:`~cryofield.backends.base.DeviceProblem`): the stage kernels take 8 and 19
  arrays, and the stage coefficients and per-variant stage counts live in small device tables (one
  host → device copy each per step from pinned memory), so a kernel's arguments do not change from step
  to step;
* prepared launches (:class:`Launcher`): the first launch of a kernel with a given set of arrays goes
  through numba-cuda's dispatcher, which compiles and marshals; the marshalled argument list (made by
  numba-cuda's own ``_Kernel._prepare_args``) is kept, and later launches with the same arrays pass it
  straight to ``cuda.core.launch``. Entries are keyed by the arrays' identities and dropped when an array
  is freed (``weakref.finalize``), so a stale device address is never launched;
* a CUDA graph per RKL2 step (:class:`StepGraphs`): the second time a step with the same stage count and
  buffers comes round, its ``2 s`` launches are captured once (numba-cuda launches into a
  ``cuda.core`` ``GraphBuilder``) and replayed with one ``cuGraphLaunch``. The first graph a backend builds
  is checked against the plain launches of the same step (bit for bit) before it is used.

``CudaBackend(prepared=False, graphs=False)`` (or ``CRYOFIELD_CUDA_PREPARED=0``, ``CRYOFIELD_CUDA_GRAPHS=0``)
turns them off; :meth:`CudaBackend.diagnostics` (in the run summary) says which are on and why not.
``python -m benchmarks.gpu --parts host`` measures the host time per stage each way.

FMA and the exact mode
----------------------
Real GPUs contract ``a * b + c`` into one fused multiply-add (NVVM's default, ``-fma=1``); the CPU and the
CUDA simulator round the product first. In float64 that changes results by round-off, about 1e-13 K on
the 48-node parity case, up to about 1e-7 K over a long run on a 30 k-node mesh when both backends take
the same steps; a step-size decision that flips on the difference changes results by far more. numba-cuda
has no switch for it (``cuda.jit(fastmath=True)`` turns FMA *on*, with other unsafe options), so
``CudaBackend(exact=True)`` (or ``CRYOFIELD_CUDA_EXACT=1``) compiles its own copies of the kernels (not
cached, without LTO) with ``fma=False`` added to the options numba-cuda hands to NVVM
(``numba.cuda.cudadrv.nvvm.compile_ir``, checked to exist): the PTX then has ``mul.rn`` and ``add.rn``,
which ptxas does not fuse, and the GPU evaluates exactly the CPU's arithmetic. It is for parity checks;
it is slower.

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

import contextlib
import ctypes
import math
import os
import weakref

import numpy as np
from numba import cuda, float64

from .. import kernels
from .. import kernels as K  # layout constants of the packed arrays (Numba freezes them at compile time)
from .base import Backend, DeviceProblem
from .cuda_check import simulator

#: Threads per block of the element and node kernels.
THREADS = 128
#: Threads per block of the reduction (a power of two: shared-memory tree).
REDUCE_THREADS = 256
#: Most blocks of the reduction; each thread strides over the rest.
REDUCE_BLOCKS = 1024
#: Most prepared launches and step graphs kept (first in, first out).
MAX_PREPARED, MAX_GRAPHS = 1024, 64
#: Pinned host buffers the stage coefficients are copied from, in turn (all work is waited for on wrap-around).
COEF_RING = 64

k = kernels.render(cuda.jit(device=True), f"{__name__}.bodies")


# -- kernels: scalar arguments last (see Launcher); one thread per work item (i, b) of the n * nb in the layout's
# order (kernels.split), whose address is the item's index itself ---------------------------------------------------
def element_flux(T, tets, edge_coef, elem_mat, mat_f, mat_n, flux, counts, j, n, ne, nb, vf, n_mat):
    """flux[e, b] for the variants taking part in stage j (:func:`cryofield.kernels.element_flux_at`)."""
    t = cuda.grid(1)
    if t < ne * nb:
        e, b = k.split(t, ne, nb, vf)
        if counts[b] >= j:
            k.element_flux_at(e, b, T, tets, edge_coef, elem_mat, n_mat, mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N],
                              flux, n, ne, nb, vf)


def node_rate(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, arterial, out, n, ne, nb, vf, n_mat):
    """out = dH/dt (:func:`cryofield.kernels.node_rate_at`), every variant."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        out[t] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                                node_data[K.METABOLIC], arterial, node_mat, n_mat, mat_f[K.PHASE, :, 0],
                                mat_f[K.PHASE, :, 1], fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, nb,
                                vf)


def node_stage(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, mat_n, arterial, coefs, counts, L, out,
               T_out, Y1, Y2, Y0, L0, j, n, ne, nb, vf, n_mat):
    """L = dH/dt; out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L + b0 L0; T_out = T(out), for the variants taking part in
    stage j, with variant b's coefficients ``coefs[j, b]`` (a device table)."""
    t = cuda.grid(1)
    if t >= n * nb:
        return
    i, b = k.split(t, n, nb, vf)
    if counts[b] < j:
        return
    L[t] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                          node_data[K.METABOLIC], arterial, node_mat, n_mat, mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1],
                          fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, nb, vf)
    # L_t is read back, rounded to the storage precision as the unfused path does; L0 may alias L
    k.combine_at(t, node_mat[i] + b * n_mat, out, T_out, coefs[j, b, K.A1], Y1, coefs[j, b, K.A2], Y2,
                 coefs[j, b, K.A0], Y0, coefs[j, b, K.B1], L, coefs[j, b, K.B0], L0, mat_f[K.H_T], mat_f[K.H_H],
                 mat_n[K.H_N], mat_f[K.H_SLOPE])


def temperature(H, node_mat, mat_f, mat_n, T, n, nb, vf, n_mat):
    """T = T(H), every variant."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        T[t] = k.temperature_of(H[t], node_mat[i] + b * n_mat, mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N],
                                mat_f[K.H_SLOPE])


def combine(out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0, n, nb, vf, n_mat):
    """A stage's vector update and T(H), one set of coefficients for all (:func:`cryofield.kernels.combine_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        k.combine_at(t, node_mat[i] + b * n_mat, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, mat_f[K.H_T],
                     mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE])


def track(T_old, T_new, T_min, thresholds, time_below, dt, n, nb, vf):
    """Running minimum and time below each level of the variants with dt[b] > 0 (:func:`cryofield.kernels.track_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        if dt[b] > 0:
            k.track_at(t, T_old, T_new, dt[b], T_min, thresholds, time_below)


def commit(counts, accept, H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even, n, nb, vf):
    """The accepted variants' step results become their state (:func:`cryofield.kernels.commit_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        if accept[b]:
            k.commit_at(t, counts[b], H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even)


def step_change(T, T_odd, T_even, counts, partial, n, nb, vf):
    """partial[b * blocks + block] = max |T_s - T| of variant b = blockIdx.y over the nodes the block's threads
    stride over."""
    cache = cuda.shared.array(REDUCE_THREADS, float64)
    tid, b = cuda.threadIdx.x, cuda.blockIdx.y
    s = counts[b]
    m = 0.0
    if s > 0:
        for i in range(cuda.blockIdx.x * REDUCE_THREADS + tid, n, cuda.gridDim.x * REDUCE_THREADS):
            m = k.nan_max(m, k.change_at(k.at(i, b, n, nb, vf), s, T, T_odd, T_even))
    block_max(cache, tid, m, partial, b)


def local_error(T_older, T_prev, T, T_odd, T_even, counts, weights, node_mat, mat_f, partial, n, nb, vf, n_mat):
    """partial[b * blocks + block] = the largest local error estimate (:func:`cryofield.kernels.local_error_at`)
    of variant b = blockIdx.y over the nodes the block's threads stride over."""
    cache = cuda.shared.array(REDUCE_THREADS, float64)
    tid, b = cuda.threadIdx.x, cuda.blockIdx.y
    s = counts[b]
    m = 0.0
    if s > 0:
        for i in range(cuda.blockIdx.x * REDUCE_THREADS + tid, n, cuda.gridDim.x * REDUCE_THREADS):
            m = k.nan_max(m, k.local_error_at(k.at(i, b, n, nb, vf), node_mat[i] + b * n_mat, s, weights[b], T_older,
                                              T_prev, T, T_odd, T_even, mat_f[K.PHASE]))
    block_max(cache, tid, m, partial, b)


@cuda.jit(device=True)
def block_max(cache, tid, m, partial, b):
    """partial[b * blocks + block] = the NaN-propagating max of the block's threads' values ``m`` (a tree in
    shared memory)."""
    cache[tid] = m
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if tid < step:
            cache[tid] = k.nan_max(cache[tid], cache[tid + step])
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[b * cuda.gridDim.x + cuda.blockIdx.x] = cache[0]


# Multirate levels (a single run): the same bodies over a level's element and node lists.
def level_flux(T, elems, tets, edge_coef, elem_mat, mat_f, mat_n, flux, n, ne):
    """flux of the level's elements (:func:`cryofield.kernels.element_flux_at`)."""
    q = cuda.grid(1)
    if q < elems.shape[0]:
        k.element_flux_at(elems[q], 0, T, tets, edge_coef, elem_mat, 0, mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N], flux,
                          n, ne, 1, 0)


def level_rate(T, nodes, frozen, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, arterial, L, n_active,
               n, ne):
    """L = dH/dt on the level's active nodes, L = frozen on its halo."""
    q = cuda.grid(1)
    if q >= nodes.shape[0]:
        return
    i = nodes[q]
    if q < n_active:
        L[i] = k.node_rate_at(i, 0, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                              node_data[K.METABOLIC], arterial, node_mat, 0, mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1],
                              fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, 1, 0)
    else:
        L[i] = frozen[i]


def level_combine(nodes, out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0):
    """:func:`cryofield.kernels.combine_at` on the level's nodes and halo."""
    q = cuda.grid(1)
    if q < nodes.shape[0]:
        i = nodes[q]
        k.combine_at(i, node_mat[i], out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, mat_f[K.H_T], mat_f[K.H_H],
                     mat_n[K.H_N], mat_f[K.H_SLOPE])


def averaged_rate(nodes, v, u, L, eta, n_active):
    """L = (v - u) / eta on the level's active nodes (:func:`cryofield.kernels.averaged_rate_at`)."""
    q = cuda.grid(1)
    if q < n_active:
        k.averaged_rate_at(nodes[q], v, u, eta, L)


def lane_out(src, dst, start, stride):
    """dst[i] = src[start + i * stride]: one variant's entries into a contiguous array."""
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[start + i * stride]


def lane_in(src, dst, start, stride):
    """dst[start + i * stride] = src[i]: a contiguous array into one variant's entries."""
    i = cuda.grid(1)
    if i < src.shape[0]:
        dst[start + i * stride] = src[i]


#: The kernels' Python functions, by name.
KERNEL_FUNCTIONS = {f.__name__: f for f in (element_flux, node_rate, node_stage, temperature, combine, track, commit,
                                            step_change, local_error, level_flux, level_rate, level_combine,
                                            averaged_rate, lane_out, lane_in)}
#: The kernels as the backend launches them (disk-cached, FMA contraction as NVVM does by default).
KERNELS = {name: cuda.jit(cache=True)(f) for name, f in KERNEL_FUNCTIONS.items()}
_exact_kernels: dict | None = None


def exact_kernels() -> dict:
    """Separate, uncached copies of the kernels for the exact mode (compiled under :func:`no_fma`, without LTO)."""
    global _exact_kernels
    if _exact_kernels is None:
        options = {} if simulator() else {"lto": False}  # LTO would leave the final code generation to nvJitLink
        _exact_kernels = {name: cuda.jit(cache=False, **options)(f) for name, f in KERNEL_FUNCTIONS.items()}
    return _exact_kernels


def exact_support() -> tuple[bool, str]:
    """Whether this numba-cuda lets the exact mode turn FMA contraction off, and how (or why not)."""
    if simulator():
        return True, "the simulator never contracts a * b + c"
    try:
        from numba.cuda import codegen
        from numba.cuda.cudadrv import nvvm
    except Exception as exc:
        return False, f"numba-cuda's NVVM interface is not where it was ({exc})"
    if getattr(codegen, "nvvm", None) is not nvvm or not callable(getattr(nvvm, "compile_ir", None)):
        return False, "this numba-cuda does not compile through numba.cuda.cudadrv.nvvm.compile_ir"
    return True, "NVVM option -fma=0 (mul.rn and add.rn in the PTX)"


@contextlib.contextmanager
def no_fma():
    """While active, NVVM compiles with ``-fma=0`` unless a kernel asks otherwise (fastmath)."""
    if simulator():
        yield
        return
    from numba.cuda.cudadrv import nvvm

    original = nvvm.compile_ir

    def compile_ir(llvmir, **options):
        options.setdefault("fma", False)
        return original(llvmir, **options)

    nvvm.compile_ir = compile_ir
    try:
        yield
    finally:
        nvvm.compile_ir = original


def device_description() -> str:
    """Name and compute capability of the current CUDA device (the simulator has no name)."""
    device = cuda.get_current_device()
    name = getattr(device, "name", "CUDA simulator")
    name = name.decode() if isinstance(name, bytes) else str(name)
    major, minor = device.compute_capability
    return f"{name} (compute capability {major}.{minor})"


def _blocks(n: int) -> int:
    return max(1, math.ceil(n / THREADS))


def _switch(value: bool | None, variable: str) -> bool:
    """``value``, or the environment variable ``variable`` ("0" turns off) when None."""
    if value is not None:
        return value
    return os.environ.get(variable, "1") != "0"


# -- prepared launches ------------------------------------------------------------------------------------------------
def prepared_support() -> tuple[bool, str]:
    """Whether launches can skip numba-cuda's dispatcher after the first one (the internals they use exist)."""
    if simulator():
        return False, "the CUDA simulator launches through numba-cuda's dispatcher"
    try:
        from cuda.core import LaunchConfig, launch  # noqa: F401
        from numba.cuda.dispatcher import _Kernel
    except Exception as exc:
        return False, f"numba-cuda's launch internals are not where they were ({exc}); every launch is dispatched"
    if not all(hasattr(_Kernel, attr) for attr in ("_prepare_args", "launch")):
        return False, "this numba-cuda's kernels have no _prepare_args; every launch is dispatched"
    return True, "each kernel's arguments are marshalled once per set of arrays (numba-cuda's _prepare_args)"


class _Prepared:
    """One kernel with one set of arrays: the marshalled argument list, the cuda.core kernel and its config."""

    __slots__ = ("flat", "convert", "kernel", "config")

    def __init__(self, flat: list, convert: tuple, kernel, config):
        self.flat, self.convert, self.kernel, self.config = flat, convert, kernel, config


class Launcher:
    """Launches ``kernel[blocks, threads](*arrays, *scalars)``, preparing the arguments once per set of arrays.

    ``arrays`` are backend arrays that keep their device address while they live; ``scalars`` (the
    kernels' trailing arguments) are converted on every call. See the module docstring.
    """

    def __init__(self, prepared: bool = True, exact: bool = False):
        supported, why = prepared_support()
        self.prepared, self.why = (supported, why) if prepared else (False, "turned off")
        self.exact = exact
        self._entries: dict = {}
        if self.prepared:
            from cuda.core import LaunchConfig, Stream, launch
            from numba.cuda._compat import CUDA_CORE_GE_1_0

            self._core_launch, self._stream = launch, Stream.from_handle(0)  # numba-cuda's default stream
            self._config_class, self._cooperative = LaunchConfig, ("is_cooperative" if CUDA_CORE_GE_1_0
                                                                   else "cooperative_launch")

    def __call__(self, kernel, blocks: int | tuple, threads: int, arrays: tuple, scalars: tuple = (),
                 target=None) -> None:
        """Launch on the default stream, or into ``target`` (a ``cuda.core`` GraphBuilder being captured)."""
        if self.prepared:
            entry = self._entries.get((id(kernel), blocks, threads, *map(id, arrays)))
            if entry is not None:
                try:
                    self._core_launch(target or self._stream, entry.config, entry.kernel, *entry.flat,
                                      *[convert(x) for convert, x in zip(entry.convert, scalars)])
                    return
                except Exception as exc:
                    if target is not None:
                        raise
                    self.prepared, self.why = False, f"a prepared launch failed ({type(exc).__name__}: {exc})"
                    self._entries.clear()
        if target is not None:
            raise RuntimeError("a launch that is not prepared cannot be captured into a graph")
        with no_fma() if self.exact else contextlib.nullcontext():
            kernel[blocks, threads](*arrays, *scalars)
        if self.prepared:
            self._prepare(kernel, blocks, threads, arrays, scalars)

    def _config(self, blocks: int | tuple, threads: int):
        grid = (*blocks, 1, 1)[:3] if isinstance(blocks, tuple) else (blocks, 1, 1)
        return self._config_class(grid=grid, block=(threads, 1, 1), shmem_size=0,
                                  **{self._cooperative: False})

    def _prepare(self, kernel, blocks: int, threads: int, arrays: tuple, scalars: tuple) -> None:
        try:
            entry = _prepare(kernel, arrays, scalars, self._config(blocks, threads))
        except Exception as exc:  # an internal changed: stay on the dispatcher, say why
            self.prepared, self.why = False, f"preparing a launch failed ({type(exc).__name__}: {exc})"
            return
        if entry is None:
            return
        key = (id(kernel), blocks, threads, *map(id, arrays))
        if len(self._entries) >= MAX_PREPARED:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = entry
        for array in arrays:  # a freed array's id may be reused: drop the entry first
            weakref.finalize(array, self._entries.pop, key, None)

    def launches(self) -> int:
        """Prepared launches held."""
        return len(self._entries)


def _prepare(kernel, arrays: tuple, scalars: tuple, config) -> _Prepared | None:
    """The prepared launch of ``kernel`` on ``arrays`` (its overload already compiled), or None when this
    kernel cannot be launched that way (debug, cooperative, extensions, host arrays)."""
    argtypes = tuple(kernel.typeof_pyval(a) for a in (*arrays, *scalars))
    overload = kernel.overloads.get(argtypes)
    if overload is None or overload.debug or overload.cooperative or overload.extensions \
            or getattr(overload, "launch_config_sensitive", False) or getattr(kernel, "_launch_config_sensitive",
                                                                              False):
        return None
    flat, retr, convert = [], [], []
    types = overload.argument_types
    for ty, value in zip(types[:len(arrays)], arrays):
        overload._prepare_args(ty, value, 0, retr, flat)
    for ty, value in zip(types[len(arrays):], scalars):
        one: list = []
        overload._prepare_args(ty, value, 0, retr, one)
        if len(one) != 1 or not isinstance(one[0], ctypes._SimpleCData):
            return None
        convert.append(type(one[0]))
    if retr:  # something would be copied back after the launch: not a device array
        return None
    return _Prepared(flat, tuple(convert), overload._codelibrary.get_cufunc().kernel, config)


# -- step graphs ------------------------------------------------------------------------------------------------------
def graph_support() -> tuple[bool, str]:
    """Whether numba-cuda can capture launches into a CUDA graph here (cuda.core's GraphBuilder)."""
    if simulator():
        return False, "the CUDA simulator has no graphs"
    ok, why = prepared_support()
    if not ok:
        return False, f"graphs need prepared launches: {why}"
    try:
        from cuda.core import Device

        if not hasattr(Device, "create_graph_builder"):
            raise AttributeError("cuda.core.Device has no create_graph_builder")
    except Exception as exc:
        return False, f"cuda.core has no graph builder ({exc})"
    return True, "one CUDA graph per RKL2 step (stage count and buffers), replayed with one launch"


class StepGraphs:
    """CUDA graphs of whole RKL2 steps, keyed by the problem, the coefficient table and every stage's buffers.

    A step's launches are captured the second time the same key comes round; a key's graph is dropped
    when one of its arrays is freed. The first graph is checked against plain launches before use.
    """

    def __init__(self, enabled: bool = True):
        supported, why = graph_support()
        self.enabled, self.why = (supported, why) if enabled else (False, "turned off")
        self.checked = False
        self._graphs: dict = {}
        self._seen: dict = {}
        self.built = self.replayed = 0

    def get(self, key):
        graph = self._graphs.get(key)
        if graph is not None:
            self.replayed += 1
        return graph

    def second_sighting(self, key) -> bool:
        """Count ``key``; True the second time it is seen (time to capture its graph)."""
        if len(self._seen) > 8 * MAX_GRAPHS:
            self._seen.clear()
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key] == 2

    def add(self, key, graph, arrays) -> None:
        if len(self._graphs) >= MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = graph
        self.built += 1
        for array in arrays:
            weakref.finalize(array, self._graphs.pop, key, None)

    def disable(self, why: str) -> None:
        self.enabled, self.why = False, why
        self._graphs.clear()


# -- the backend ------------------------------------------------------------------------------------------------------
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
                from ..errors import BackendUnavailable

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
        self._launch(self._k["lane_out"], _blocks(size), THREADS, (array, out), (start, stride))
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
        self._launch(self._k["lane_in"], _blocks(size), THREADS, (src, array), (start, stride))

    def _lane_scratch(self, size: int, dtype):
        key = (size, np.dtype(dtype))
        if key not in self._lanes:
            self._lanes[key] = cuda.device_array(size, dtype)
        return self._lanes[key]

    # -- kernels ------------------------------------------------------------------------------------------------------
    def temperature(self, dp: DeviceProblem, H, T):
        n, _, nb, vf = dp.layout
        self._launch(self._k["temperature"], _blocks(n * nb), THREADS, (H, dp.node_mat, dp.mat_f, dp.mat_n, T),
                     (n, nb, vf, dp.n_materials))

    def apply_operator(self, dp: DeviceProblem, T, out):
        n, ne, nb, vf = dp.layout
        self._element_flux(dp, T, self._upload("everyone", np.ones(nb, np.int32)), 1)
        self._launch(self._k["node_rate"], _blocks(n * nb), THREADS,
                     (T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f,
                      dp.arterial, out), (n, ne, nb, vf, dp.n_materials))

    def combine(self, dp: DeviceProblem, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        n, _, nb, vf = dp.layout
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        self._launch(self._k["combine"], _blocks(n * nb), THREADS,
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
            graph.launch(self._launch._stream)
            return
        self._stages(dp, coefs, counts, stages)
        if graphs.second_sighting(key):
            self._capture(key, dp, coefs, counts, stages)

    def level_rate(self, dp: DeviceProblem, level, T, L, frozen):
        n, ne, _, _ = dp.layout
        self._launch(self._k["level_flux"], _blocks(len(level.elems)), THREADS,
                     (T, level.elems, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux), (n, ne))
        self._launch(self._k["level_rate"], _blocks(len(level.nodes)), THREADS,
                     (T, level.nodes, frozen, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed,
                      dp.mat_f, dp.arterial, L), (level.n_active, n, ne))

    def level_combine(self, dp: DeviceProblem, level, out, T_out, coefs, Y1, Y2, Y0, L1, L0):
        a1, a2, a0, b1, b0 = (out.dtype.type(c) for c in coefs)
        self._launch(self._k["level_combine"], _blocks(len(level.nodes)), THREADS,
                     (level.nodes, out, T_out, Y1, Y2, Y0, L1, L0, dp.node_mat, dp.mat_f, dp.mat_n),
                     (a1, a2, a0, b1, b0))

    def averaged_rate(self, dp: DeviceProblem, level, v, u, eta, L):
        self._launch(self._k["averaged_rate"], _blocks(max(level.n_active, 1)), THREADS, (level.nodes, v, u, L),
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
        self._launch(self._k["commit"], _blocks(n * nb), THREADS,
                     (self._upload("counts", np.asarray(counts, np.int32)),
                      self._upload("accept", np.asarray(accept, np.uint8)), H, T, T_prev, T_older, *Y, T_odd, T_even),
                     (n, nb, vf))

    def track(self, dp: DeviceProblem, T_old, T_new, dt, T_min, thresholds, time_below):
        n, _, nb, vf = dp.layout
        self._launch(self._k["track"], _blocks(n * nb), THREADS,
                     (T_old, T_new, T_min, thresholds, time_below, self._upload("dt", np.asarray(dt, T_new.dtype))),
                     (n, nb, vf))

    # -- internals ----------------------------------------------------------------------------------------------------
    def _element_flux(self, dp: DeviceProblem, T, counts, j, target=None) -> None:
        n, ne, nb, vf = dp.layout
        self._launch(self._k["element_flux"], _blocks(ne * nb), THREADS,
                     (T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux, counts),
                     (j, n, ne, nb, vf, dp.n_materials), target=target)

    def _stages(self, dp: DeviceProblem, coefs, counts, stages, target=None) -> None:
        """The launches of ``stages`` (stage j reads row j of ``coefs``), or their capture into ``target``."""
        n, ne, nb, vf = dp.layout
        node_stage_kernel, blocks = self._k["node_stage"], _blocks(n * nb)
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
        graphs = self._graphs
        try:
            from cuda.core import Device

            device = Device(cuda.get_current_device().id)
            device.set_current()
            builder = device.create_graph_builder()
            builder.begin_building()
            try:
                self._stages(dp, coefs, counts, stages, target=builder)
            finally:
                builder.end_building()
            graph = builder.complete()
            if not graphs.checked:
                out, T_out = stages[-1][2], stages[-1][3]
                expected = out.copy_to_host(), T_out.copy_to_host()
                graph.launch(self._launch._stream)
                got = out.copy_to_host(), T_out.copy_to_host()
                if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
                    graphs.disable("a captured step gave other numbers than its plain launches")
                    return
                graphs.checked = True
        except Exception as exc:
            graphs.disable(f"capturing a step failed ({type(exc).__name__}: {exc})")
            return
        graphs.add(key, graph, [dp, coefs, counts, *{id(a): a for stage in stages for a in stage}.values()])
