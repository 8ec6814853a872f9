"""GPU figures of the CUDA backend, measured in parts on whatever NVIDIA GPU is present.

Run from the repository root::

    python -m benchmarks.gpu --out results/gpu                              # every part
    python -m benchmarks.gpu --parts bandwidth throughput host --nodes 1e6  # the first GPU call (with the tests)
    python -m benchmarks.gpu --parts throughput e2e --nodes 4e6             # the second
    python -m benchmarks.gpu --parts host                                   # without a GPU: argument preparation
    python -m benchmarks.gpu --parts accuracy --backend cpu                 # float32 against float64, no GPU needed

Each part writes ``OUT/gpu_PART.json`` as soon as it ends (``throughput`` one file per mesh size,
``gpu_throughput_1M.json``, ...), with the machine, the versions and its wall time; a part that fails
writes its traceback there and the next part still runs (the exit code is 1 when any failed). Host
problems are built once per mesh size and shared by both precisions and by later parts of the same run.
Every part is sized to end within 3 minutes on one GPU (most of the 4 M-node throughput part is the
host building the mesh and the problem).

Parts
-----
bandwidth
    Device copy bandwidth, read + write counted, on ``--copy-mib`` arrays (far beyond the L2 cache): a
    device-to-device ``copy_to_device`` and a grid-stride copy kernel; CUDA-event medians. The larger of
    the two is the reference of every "of copy bw" figure.
throughput
    Structured blocks of about ``--nodes`` nodes (default 1 M and 4 M), float64 and float32, after a 2 s
    freeze so that an ice front exists: an operator application, the stages of an RKL2 step (a whole step
    of ``--stages`` stages run back to back, GPU time, divided by the stages) and one whole accepted step
    (the stages, the step-size reduction with its device-to-host copy, the dose tracker; wall time).
    DOF-steps/s = nodes x stages / step time. Implied bandwidth = bytes counted below / time, as a fraction
    of the copy bandwidth (measured in the same run, by the bandwidth part or here). Also the
    device-to-host copy of one temperature field (a snapshot's cost, excluded from the stepping figures).
host
    Host time per RKL stage. Without a GPU (always, and as the only figures when there is none): the
    Python work numba-cuda does per launch, timed on stand-in device arrays (``DeviceNDArray`` objects
    over fake addresses; the driver call itself, a few µs, is not included): typing every argument
    (numba's Python ``typeof``: the dispatcher does this in C, so this is an upper bound), marshalling every
    array (``_Kernel._prepare_args``), the ``cuda.core`` launch config and parameter buffer. Measured for the
    stage's two launches as they were before packing (8 + 30 arguments, 24 arrays), packed but through the
    dispatcher (7 + 19, 17 arrays), and through :class:`cryofield.backends.cuda.launch.Launcher`'s
    prepared launches (the code path of :meth:`CudaBackend._stages`, with ``cuda.core.launch`` replaced by
    building its parameter buffer). On a GPU also the wall time per stage of back-to-back RKL2 steps on a 1331-node
    block, where the GPU work is a few µs per launch, for the dispatcher, prepared launches and prepared
    launches with step graphs; and an empty kernel's launch cost and launch-plus-synchronize latency.
jit
    JIT compilation: a small case run twice in fresh processes sharing an empty ``NUMBA_CACHE_DIR``; the
    first compiles every kernel, the second loads them from the cache (``compile_s`` of the run summary).
e2e
    The demo case (``cases/gon_double_freeze.yaml``, or ``--case``; ``--case block`` for a double
    freeze-thaw block of about ``--e2e-nodes`` nodes) end to end on ``--backend cuda`` and on
    ``--backend cpu`` on the same machine: wall time split as the run summary reports it (setup and basal
    state on the host, JIT compilation, stepping, output), steps, and the largest differences of the
    outcome between the two.
accuracy
    float32 against float64 on ``--backend``: the Neumann case (front position) and the double
    freeze-thaw block at ``--accuracy-cells`` (temperatures, minimum temperature, time below -20 and
    -40 C, ice and injury volumes).

Bytes per RKL stage and per step: :func:`cryofield.kernels.bodies.stage_bytes` and
:func:`cryofield.kernels.bodies.step_bytes`
(148 E + 125 N bytes a stage in float64, 92 E + 69 N in float32).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import numpy as np
from numba import cuda

from cryofield.backends import get_backend
from cryofield.config.case import load_case, parse_case
from cryofield.io import read_result
from cryofield.kernels import bodies as kernels
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.run.runner import run_case
from cryofield.timestepping.control import StepControl
from cryofield.timestepping.rkl2 import rkl2_max_dt, rkl2_stage_table
from cryofield.timestepping.stepper import Stepper

from .common import git_revision, machine, versions

REPO = Path(__file__).resolve().parents[1]
PARTS = ("bandwidth", "throughput", "host", "jit", "e2e", "accuracy")
DEMO_CASE = REPO / "cases" / "gon_double_freeze.yaml"
BLOCK = """
name: {name}
mesh:
  generate: {{kind: slab, size: [40, 40, 40], cells: [{n}, {n}, {n}]}}
  units: mm
tissues: {{tissue: {{library: muscle}}}}
probes: [{{name: cold, surface: xmin}}]
protocol: {protocol}
initial: {{type: {initial}, temperature: 37}}
boundaries:
  - {{surface: xmax, type: fixed, temperature: 37}}
  - {{surface: zmax, type: convection}}
outputs: {{snapshot_interval: 30, metrics_interval: 5}}
solver: {{reorder: false, precision: {precision}}}
"""
FREEZE = "[{kind: freeze, duration: 60, temperature: -70}]"
DOUBLE_FREEZE_THAW = ("[{kind: freeze, duration: 90, temperature: -70}, {kind: passive_thaw, duration: 30}, "
                      "{kind: freeze, duration: 90, temperature: -70}, {kind: passive_thaw, duration: 30}]")
#: Stage coefficients for timing a stage alone (any values; the stage's cost does not depend on them).
TIMING_COEFS = (1.2, -0.3, 0.1, 1e-3, 1e-4)
THRESHOLDS = 2


def block_case(cells: int, protocol: str = FREEZE, initial: str = "uniform", precision: str = "float64",
               name: str = "block"):
    """A ``cells``³ block of muscle, 40 mm wide, whose face x = 0 is the probe; ``initial``: uniform or basal."""
    return parse_case(BLOCK.format(name=name, n=cells, protocol=protocol, initial=initial, precision=precision))


def cells_for(nodes: float) -> int:
    """Cells per side of a block with about ``nodes`` nodes."""
    return max(2, round(nodes ** (1.0 / 3.0)) - 1)


def size_label(nodes: float) -> str:
    """1e6 -> ``1M``, 2.5e5 -> ``250k``."""
    return f"{nodes / 1e6:g}M" if nodes >= 1e6 else f"{nodes / 1e3:g}k" if nodes >= 1e3 else f"{nodes:g}"


# -- shared state of one run: host problems and the copy bandwidth -----------------------------------------------------
class Shared:
    """What parts of one run share: host problems by cell count (also pickled to ``cache_dir`` if given)."""

    def __init__(self, cache_dir: Path | None = None):
        self.cache_dir = cache_dir
        self.problems: dict[int, tuple] = {}
        self.copy_Bps: float | None = None

    def block_problem(self, cells: int):
        """(case, problem, seconds to build it) of the ``cells``³ block, built once."""
        if cells not in self.problems:
            t0 = time.perf_counter()
            path = self.cache_dir / f"block_{cells}.pickle" if self.cache_dir else None
            if path is not None and path.is_file():
                case, problem = pickle.loads(path.read_bytes())
            else:
                case = block_case(cells)
                problem = build_problem(case, mesh_of(case))
                if path is not None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(pickle.dumps((case, problem), protocol=pickle.HIGHEST_PROTOCOL))
            self.problems[cells] = case, problem, time.perf_counter() - t0
        return self.problems[cells]


# -- timing -----------------------------------------------------------------------------------------------------------
def gpu_time(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` between two CUDA events, after one untimed call."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = cuda.event(), cuda.event()
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def wall_time(fn, repeats: int) -> float:
    """Median host wall seconds of ``fn()`` followed by a synchronize, after one untimed call."""
    fn()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


@cuda.jit
def _copy_kernel(src, dst):
    """dst_i = src_i (grid-stride)."""
    for i in range(cuda.grid(1), src.shape[0], cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit
def _empty_kernel():
    """Nothing: measures the cost of a launch."""


# -- parts ------------------------------------------------------------------------------------------------------------
def copy_bandwidth(mib: float, repeats: int) -> dict:
    """Device copy bandwidth (B/s), read + write counted: ``copy_to_device`` and a copy kernel."""
    src = cuda.to_device(np.ones(int(mib * 2**20) // 8))
    dst = cuda.device_array_like(src)
    blocks = min(65535 * 32, (src.shape[0] + 255) // 256)
    t_memcpy = gpu_time(lambda: dst.copy_to_device(src), repeats)
    t_kernel = gpu_time(lambda: _copy_kernel[blocks, 256](src, dst), repeats)
    moved = 2 * src.nbytes
    return {"array_MiB": mib, "memcpy_Bps": moved / t_memcpy, "kernel_Bps": moved / t_kernel,
            "reference_Bps": max(moved / t_memcpy, moved / t_kernel), "device": get_backend("cuda").device_name}


def frozen_stepper(problem, case, precision: str, backend="cuda", **options) -> Stepper:
    """A stepper on ``problem`` after a 2 s freeze (so an ice front exists); ``options`` go to CudaBackend."""
    state = problem.boundary_state(case.protocol[0])
    control = StepControl("rkl2", 0.9 * 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed), 2.0)
    if backend == "cuda" and options:
        from cryofield.backends.cuda.backend import CudaBackend

        be = CudaBackend(**options)
    else:
        be = get_backend(backend)
    stepper = Stepper(be, problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)), control, np.dtype(precision))
    stepper.set_boundaries(state)
    stepper.advance(2.0)
    return stepper


class StepTimer:
    """What an accepted step costs (stages, reduction, commit, dose tracker), repeatable: Ensemble.uniform_step."""

    def __init__(self, stepper: Stepper, stages: int):
        self.ensemble, self.stages = stepper.ensemble, stages
        self.dt = rkl2_max_dt(stages, stepper.control.stable_dt)
        self.ensemble.track_doses([-20.0, -40.0][:THRESHOLDS])

    def stages_only(self) -> None:
        self.ensemble.uniform_step(self.dt, self.stages, accept=False)

    def step(self) -> None:
        self.ensemble.uniform_step(self.dt, self.stages)


def run_operator(stepper: Stepper, count: int) -> None:
    """``count`` operator applications back to back."""
    ens = stepper.ensemble
    for _ in range(count):
        stepper.backend.apply_operator(stepper.dp, ens.T, ens.L)


def throughput(cells: int, precision: str, stages: int, repeats: int, copy_Bps: float, shared: Shared | None = None
               ) -> dict:
    """Operator, stage and whole-step times on a ``cells``³ block, with the implied bandwidth."""
    shared = shared or Shared()
    case, problem, setup = shared.block_problem(cells)
    stepper = frozen_stepper(problem, case, precision)
    be, n, e = stepper.backend, problem.n_nodes, problem.n_elems
    d = np.dtype(precision).itemsize
    timer = StepTimer(stepper, stages)
    # back to back, as in a step: a launch is prepared while the previous kernel runs
    t_op = gpu_time(lambda: run_operator(stepper, stages), repeats) / stages
    t_stage = gpu_time(timer.stages_only, repeats) / stages
    t_step = wall_time(timer.step, repeats)
    t_snapshot = wall_time(stepper.temperature_host, repeats)
    return {"cells": cells, "nodes": n, "elements": e, "precision": precision, "stages": stages,
            "setup_s": setup, "operator_s": t_op, "stage_s": t_stage, "step_s": t_step,
            "dof_steps_per_s": n * stages / t_step, "stage_bytes": kernels.stage_bytes(n, e, d),
            "step_bytes": kernels.step_bytes(n, e, d, stages, THRESHOLDS),
            "stage_of_copy_bw": kernels.stage_bytes(n, e, d) / t_stage / copy_Bps,
            "step_of_copy_bw": kernels.step_bytes(n, e, d, stages, THRESHOLDS) / t_step / copy_Bps,
            "snapshot_copy_s": t_snapshot,
            "diagnostics": {k: v for k, v in be.diagnostics().items() if k != "cuda_pieces"}}


def throughput_part(nodes: float, args, shared: Shared) -> dict:
    """Both precisions on one mesh size (the host problem built once)."""
    if shared.copy_Bps is None:
        shared.copy_Bps = copy_bandwidth(args.copy_mib, args.repeats)["reference_Bps"]
    rows = [throughput(cells_for(nodes), p, args.stages, args.repeats, shared.copy_Bps, shared)
            for p in args.precisions]
    return {"copy_Bps": shared.copy_Bps, "rows": rows}


# -- host time per stage ----------------------------------------------------------------------------------------------
class _FakeMemory:
    """What a ``DeviceNDArray`` needs of its memory to be typed and marshalled: a device address."""

    def __init__(self, address: int):
        self.device_ctypes_pointer = ctypes.c_void_p(address)


def _stand_in(shape, dtype, _next=[0x7F0000000000]):  # noqa: B006 (a counter of fake addresses)
    """A ``DeviceNDArray`` over a fake address: typed and marshalled like a real one, never dereferenced."""
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    strides = tuple(int(np.prod(shape[i + 1:])) * dtype.itemsize for i in range(len(shape)))
    _next[0] += 1 << 32
    return DeviceNDArray(shape, strides, dtype, gpu_data=_FakeMemory(_next[0]))


def _stand_in_problem(n: int, e: int, dtype) -> types.SimpleNamespace:
    """The arrays of a DeviceProblem, packed (as now) and unpacked (as before), as stand-ins."""
    f, i4 = dtype, np.int32
    m, p = 2, 8
    return types.SimpleNamespace(
        n_nodes=n, n_elems=e, tets=_stand_in((e, 4), i4), edge_coef=_stand_in((e, 6), f), elem_mat=_stand_in(e, i4),
        node_mat=_stand_in(n, i4), node_ptr=_stand_in(n + 1, np.int64), node_slot=_stand_in(4 * e, i4),
        node_data=_stand_in((5, n), f), fixed=_stand_in(n, np.uint8), mat_f=_stand_in((6, m, p), f),
        mat_n=_stand_in((2, m), i4), arterial=_stand_in(1, f), flux=_stand_in(4 * e, f), n_variants=1,
        variant_fastest=0, n_materials=m, layout=(n, e, 1, 0), arterial_temperature=37.0,
        # before packing: one array per quantity
        lumped=_stand_in(n, f), perfusion=_stand_in(n, f), metabolic=_stand_in(n, f), robin_coef=_stand_in(n, f),
        robin_rhs=_stand_in(n, f), h_T=_stand_in((m, p), f), h_H=_stand_in((m, p), f), h_n=_stand_in(m, i4),
        h_slope=_stand_in((m, 2), f), k_T=_stand_in((m, p), f), k_k=_stand_in((m, p), f), k_n=_stand_in(m, i4),
        solidus=_stand_in(m, f), liquidus=_stand_in(m, f))


def _dispatcher_launch_work(args: tuple) -> None:
    """The Python work of one launch through numba-cuda's dispatcher, less its C typing fast path and the
    driver call: type every argument, marshal it (``_Kernel._prepare_args``), build the launch config and
    the parameter buffer that ``cuda.core.launch`` hands to the driver."""
    from cuda.core import LaunchConfig
    from cuda.core._kernel_arg_handler import ParamHolder
    from numba.cuda.dispatcher import _Kernel
    from numba.cuda.typing.typeof import Purpose, typeof

    marshal = types.SimpleNamespace(extensions=[])
    argtypes = [typeof(a, Purpose.argument) for a in args]
    flat, retr = [], []
    for ty, value in zip(argtypes, args):
        _Kernel._prepare_args(marshal, ty, value, 0, retr, flat)
    LaunchConfig(grid=(100, 1, 1), block=(128, 1, 1), shmem_size=0, is_cooperative=False)
    ParamHolder(flat)


def _stage_arguments_before(dp, bufs) -> list[tuple]:
    """The two launches of a stage as they were before packing: 8 and 30 arguments (24 arrays)."""
    T, L, out, T_out, Y1, Y2, Y0, L0 = bufs
    c = np.float64(0.5)
    return [(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.k_T, dp.k_k, dp.k_n, dp.flux),
            (T, dp.flux, dp.node_ptr, dp.node_slot, dp.lumped, dp.perfusion, dp.metabolic, dp.arterial_temperature,
             dp.node_mat, dp.solidus, dp.liquidus, dp.fixed, dp.robin_coef, dp.robin_rhs, L, out, T_out, c, Y1, c, Y2,
             c, Y0, c, c, L0, dp.h_T, dp.h_H, dp.h_n, dp.h_slope)]


def _stage_arguments_packed(dp, bufs, coefs, counts) -> list[tuple]:
    """The two launches of a stage now (what CudaBackend._stages passes): 14 and 25 arguments (8 and 19 arrays,
    then the stage number and the ensemble layout)."""
    T, L, out, T_out, Y1, Y2, Y0, L0 = bufs
    scalars = (1, *dp.layout, dp.n_materials)
    return [(T, dp.tets, dp.edge_coef, dp.elem_mat, dp.mat_f, dp.mat_n, dp.flux, counts, *scalars),
            (T, dp.flux, dp.node_ptr, dp.node_slot, dp.node_data, dp.node_mat, dp.fixed, dp.mat_f, dp.mat_n,
             dp.arterial, coefs, counts, L, out, T_out, Y1, Y2, Y0, L0, *scalars)]


def _per_call(fn, count: int, batches: int = 5) -> float:
    """Seconds per call of ``fn``: the best of ``batches`` batches of ``count`` calls (robust to other load)."""
    fn()
    best = np.inf
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        best = min(best, (time.perf_counter() - t0) / count)
    return best


def host_without_gpu(stages: int, count: int = 2000) -> dict:
    """Host time per stage of the launch preparation, measured on stand-in device arrays (no GPU needed)."""
    from cuda.core import LaunchConfig
    from cuda.core._kernel_arg_handler import ParamHolder
    from numba.cuda.dispatcher import _Kernel
    from numba.cuda.typing.typeof import Purpose, typeof

    from cryofield.backends.cuda import launch as cuda_launch
    from cryofield.backends.cuda.backend import CudaBackend
    from cryofield.backends.cuda.kernels import KERNELS

    dp = _stand_in_problem(1000, 5000, np.float64)
    bufs = tuple(_stand_in(1000, np.float64) for _ in range(8))
    coefs, counts = _stand_in((64, 1, 5), np.float64), _stand_in(1, np.int32)
    before, packed = _stage_arguments_before(dp, bufs), _stage_arguments_packed(dp, bufs, coefs, counts)
    t_before = sum(_per_call(lambda a=a: _dispatcher_launch_work(a), count) for a in before)
    t_packed = sum(_per_call(lambda a=a: _dispatcher_launch_work(a), count) for a in packed)

    # prepared launches: the real Launcher and CudaBackend._stages, entries made with numba-cuda's marshalling
    launcher = cuda_launch.Launcher.__new__(cuda_launch.Launcher)
    launcher.prepared, launcher.exact, launcher._entries = True, False, {}
    launcher._stream = None
    launcher._core_launch = lambda stream, config, kernel, *args: ParamHolder(args)  # all but the driver call
    marshal = types.SimpleNamespace(extensions=[])
    for kernel, args, n_arrays in ((KERNELS["element_flux"], packed[0], 8), (KERNELS["node_stage"], packed[1], 19)):
        flat, retr, convert = [], [], []
        for value in args[:n_arrays]:
            _Kernel._prepare_args(marshal, typeof(value, Purpose.argument), value, 0, retr, flat)
        for value in args[n_arrays:]:
            one: list = []
            _Kernel._prepare_args(marshal, typeof(value, Purpose.argument), value, 0, retr, one)
            convert.append(type(one[0]))
        config = LaunchConfig(grid=(40, 1, 1), block=(128, 1, 1), shmem_size=0, is_cooperative=False)
        blocks = cuda_launch.blocks_for(dp.n_elems if n_arrays == 8 else dp.n_nodes)
        launcher._entries[(id(kernel), blocks, cuda_launch.THREADS, *map(id, args[:n_arrays]))] = cuda_launch._Prepared(
            flat, tuple(convert), None, config)
    backend = types.SimpleNamespace(_k=KERNELS, _launch=launcher)
    backend._element_flux = lambda dp_, T, counts_, j, target=None: CudaBackend._element_flux(backend, dp_, T,
                                                                                              counts_, j, target)
    plan = [bufs] * stages
    t_prepared = _per_call(lambda: CudaBackend._stages(backend, dp, coefs, counts, plan), count // stages) / stages
    misses = len(launcher._entries) - 2
    table = _per_call(lambda: rkl2_stage_table(stages, 0.5), count)
    return {"stages": stages, "before_s": t_before, "packed_dispatcher_s": t_packed, "prepared_s": t_prepared,
            "graph_per_stage_s": table / stages, "stage_table_s": table, "unexpected_entries": misses,
            "method": "Python work per stage on stand-in device arrays; the driver calls (a launch, or per step "
                      "one coefficient copy and one graph launch) are not included"}


def host_on_gpu(stages: int, repeats: int, steps: int = 50, cells: int = 10) -> dict:
    """Wall time per stage of back-to-back RKL2 steps on a 1331-node block, for each launch path."""
    count = 2000
    _empty_kernel[1, 1]()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(count):
        _empty_kernel[1, 1]()
    enqueue = (time.perf_counter() - t0) / count
    cuda.synchronize()
    latency = wall_time(lambda: _empty_kernel[1, 1](), repeats)
    case = block_case(cells)
    problem = build_problem(case, mesh_of(case))
    out = {"empty_launch_s": enqueue, "launch_and_sync_s": latency, "tiny_nodes": problem.n_nodes, "stages": stages}
    for label, options in (("dispatcher", {"prepared": False, "graphs": False}),
                           ("prepared", {"prepared": True, "graphs": False}),
                           ("prepared_graphs", {"prepared": True, "graphs": True})):
        stepper = frozen_stepper(problem, case, "float64", **options)
        timer = StepTimer(stepper, stages)

        def many(timer=timer):
            for _ in range(steps):
                timer.stages_only()

        out[f"{label}_stage_s"] = wall_time(many, repeats) / (steps * stages)
        out[f"{label}_step_s"] = wall_time(timer.step, repeats)
        out[f"{label}_diagnostics"] = {k: v for k, v in stepper.backend.diagnostics().items() if k != "cuda_pieces"}
    return out


def host_part(args) -> dict:
    from cryofield.backends import cuda_status
    from cryofield.backends.cuda import check as cuda_check

    if cuda_check.simulator():
        return {"without_gpu": "not measured under the CUDA simulator (it replaces numba-cuda's launch machinery)",
                "on_gpu": "not measured under the CUDA simulator"}
    record = {"without_gpu": host_without_gpu(args.stages)}
    ok, why = cuda_status()
    if ok:
        record["on_gpu"] = host_on_gpu(args.stages, args.repeats)
    else:
        record["on_gpu"] = f"not measured: {why}"
    return record


# -- jit, e2e, accuracy -----------------------------------------------------------------------------------------------
def _summary_record(report, total: float) -> dict:
    s = report.summary
    return {"case": s["case"], "backend": s["backend"], "nodes": s["nodes"], "elements": s["elements"],
            "device": s["device"], "precision": s["precision"], "timings_s": s["timings_s"], "total_s": total,
            "steps": s["time_step"]["steps"], "rejected": s["time_step"]["rejected_steps"],
            "operator_applications": s["time_step"]["operator_applications"],
            "dof_steps_per_s": s["throughput"]["dof_steps_per_s"], "volumes_mm3": s["total_volume_below_mm3"],
            "regions_min_C": {r: v["min_temperature_C"] for r, v in s["regions"].items()},
            "diagnostics": {k: v for k, v in s.get("backend_diagnostics", {}).items() if k != "cuda_pieces"}}


def e2e(cells: int | None = None, case_path: str | None = None, backend: str = "cuda",
        precision: str = "float64") -> dict:
    """Run a case (``case_path``, or the built-in double freeze-thaw block) and return its summary figures."""
    case = load_case(case_path) if case_path else block_case(cells, DOUBLE_FREEZE_THAW, "basal", precision,
                                                              "double_freeze_thaw")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = run_case(case, out, backend=backend, progress=False)
        return _summary_record(report, time.perf_counter() - t0)


def e2e_part(args) -> dict:
    """The demo case (or ``--case``) on cuda and on cpu, on this machine."""
    block = args.case == "block"
    path = None if block else str(args.case or DEMO_CASE)
    cells = cells_for(args.e2e_nodes) if block else None
    runs = {b: e2e(cells, path, b) for b in ("cuda", "cpu")}
    gpu, cpu = runs["cuda"], runs["cpu"]
    return {"cuda": gpu, "cpu": cpu, "speedup_total": cpu["total_s"] / gpu["total_s"],
            "speedup_stepping": cpu["timings_s"]["stepping_s"] / gpu["timings_s"]["stepping_s"],
            "max_volume_difference_rel": max(abs(gpu["volumes_mm3"][k] / v - 1)
                                             for k, v in cpu["volumes_mm3"].items() if v > 0),
            "max_region_min_difference_K": max(abs(gpu["regions_min_C"][r] - v)
                                               for r, v in cpu["regions_min_C"].items())}


def jit_times(cells: int = 8) -> dict:
    """``compile_s`` of a small case in two fresh processes sharing an empty cache: cold JIT, then cached."""
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        code = f"import json; from benchmarks.gpu import e2e; print(json.dumps(e2e({cells})))"
        for _ in range(2):
            proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                                  check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1])["timings_s"]["compile_s"])
    return {"cold_compile_s": runs[0], "cached_compile_s": runs[1]}


def _run(case, backend: str) -> dict:
    """Points, snapshot temperatures (S, N), final fields and summary of ``case`` run on ``backend``."""
    with tempfile.TemporaryDirectory() as out:
        report = run_case(case, out, backend=backend, progress=False)
        result = read_result(report.paths["h5"])
        snapshots = np.stack([result.snapshot(k) for k in range(len(result.snapshot_times))])
        return {"points": result.points, "T": snapshots, "fields": result.fields, "summary": report.summary}


def _with_precision(case, precision: str):
    return case.model_copy(update={"solver": case.solver.model_copy(update={"precision": precision})})


def _fixed_step_difference(case, backend: str) -> float:
    """Largest |T32 - T64| after the case's first phase when both take the same steps: round-off alone (K)."""
    problem = build_problem(case, mesh_of(case))
    state = problem.boundary_state(case.protocol[0])
    dt_fe = 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed)
    temps = []
    for dtype in (np.float64, np.float32):
        # max_change = inf: the step doubles from the stable one up to max_dt, never rejected, whatever the state
        control = StepControl("rkl2", case.solver.safety * dt_fe, case.solver.max_dt, max_change=np.inf)
        stepper = Stepper(get_backend(backend), problem,
                          problem.enthalpy(np.full(problem.n_nodes, case.initial.temperature)), control, dtype)
        stepper.set_boundaries(state)
        stepper.advance(case.protocol[0].duration)
        temps.append(stepper.temperature_host())
    return float(np.abs(temps[0] - temps[1]).max())


def accuracy(backend: str, cells: int) -> dict:
    """float32 against float64 on ``backend``: the Neumann case and the double freeze-thaw block."""
    from cryofield.fem.closed_forms import neumann_lambda, planar_front_position

    neumann = load_case(REPO / "cases" / "neumann_planar.yaml")
    block = block_case(cells, DOUBLE_FREEZE_THAW, "basal")
    n64, n32, b64, b32 = (_run(_with_precision(case, p), backend) for case in (neumann, block)
                          for p in ("float64", "float32"))
    fronts = [np.array([planar_front_position(r["points"], T, -1.0) for T in r["T"][1:]]) for r in (n64, n32)]
    mat = neumann.materials()["tissue"]
    lam = neumann_lambda(mat.conductivity_frozen, mat.conductivity, mat.heat_capacity_frozen,
                         mat.heat_capacity_unfrozen, mat.latent_heat, -88.0, -1.0, 37.0)
    exact = 2 * lam * np.sqrt(mat.conductivity_frozen / mat.heat_capacity_frozen * neumann.duration)
    volumes = b64["summary"]["total_volume_below_mm3"]
    return {
        "backend": backend, "neumann_nodes": len(n64["points"]), "block_nodes": len(b64["points"]),
        "neumann_T_K": float(np.abs(n64["T"] - n32["T"]).max()),
        "neumann_same_steps_T_K": _fixed_step_difference(neumann, backend),
        "neumann_front_m": float(np.abs(fronts[0] - fronts[1]).max()),
        "neumann_front_error_float64_m": abs(float(fronts[0][-1]) - exact),
        "block_T_K": float(np.abs(b64["T"] - b32["T"]).max()),
        "block_min_T_K": float(np.abs(b64["fields"]["min_temperature"] - b32["fields"]["min_temperature"]).max()),
        "block_time_below_s": max(float(np.abs(b64["fields"][k] - b32["fields"][k]).max())
                                  for k in b64["fields"] if k.startswith("time_below")),
        "block_volume_rel": {lvl: abs(b32["summary"]["total_volume_below_mm3"][lvl] / v - 1)
                             for lvl, v in volumes.items() if v > 0},
    }


# -- printing ---------------------------------------------------------------------------------------------------------
def _print(part: str, r: dict) -> None:
    if part == "bandwidth":
        print(f"copy bandwidth ({r['array_MiB']} MiB, read + write) on {r['device']}: memcpy "
              f"{r['memcpy_Bps'] / 1e9:.0f} GB/s, kernel {r['kernel_Bps'] / 1e9:.0f} GB/s")
    elif part.startswith("throughput"):
        print("| nodes | elements | precision | operator ms | stage ms | step ms (s stages) | G DOF-steps/s "
              "| stage of copy bw | step of copy bw | snapshot copy ms | host setup s |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in r["rows"]:
            print(f"| {x['nodes']} | {x['elements']} | {x['precision']} | {x['operator_s'] * 1e3:.3f} | "
                  f"{x['stage_s'] * 1e3:.3f} | {x['step_s'] * 1e3:.2f} ({x['stages']}) | "
                  f"{x['dof_steps_per_s'] / 1e9:.2f} | {x['stage_of_copy_bw']:.0%} | {x['step_of_copy_bw']:.0%} | "
                  f"{x['snapshot_copy_s'] * 1e3:.2f} | {x['setup_s']:.1f} |")
    elif part == "host":
        w = r["without_gpu"]
        if isinstance(w, str):
            print(f"host time per stage: {w}")
            return
        print(f"host time per stage, launch preparation without the driver calls ({w['stages']}-stage steps): "
              f"before packing {w['before_s'] * 1e6:.1f} us, packed through the dispatcher "
              f"{w['packed_dispatcher_s'] * 1e6:.1f} us, prepared {w['prepared_s'] * 1e6:.1f} us, with step graphs "
              f"{w['graph_per_stage_s'] * 1e6:.2f} us (+ 2 driver calls per step)")
        g = r["on_gpu"]
        if isinstance(g, dict):
            print(f"on the GPU ({g['tiny_nodes']} nodes, {g['stages']}-stage steps back to back), wall per stage: "
                  f"dispatcher {g['dispatcher_stage_s'] * 1e6:.1f} us, prepared {g['prepared_stage_s'] * 1e6:.1f} us, "
                  f"prepared + graphs {g['prepared_graphs_stage_s'] * 1e6:.1f} us; empty kernel "
                  f"{g['empty_launch_s'] * 1e6:.1f} us per launch, {g['launch_and_sync_s'] * 1e6:.1f} us with sync")
        else:
            print(f"on the GPU: {g}")
    elif part == "jit":
        print(f"JIT: cold compile {r['cold_compile_s']:.2f} s, from cache {r['cached_compile_s']:.2f} s")
    elif part == "e2e":
        for b in ("cuda", "cpu"):
            x, t = r[b], r[b]["timings_s"]
            print(f"{x['case']} on {b} ({x['device']}): {x['nodes']} nodes, {x['steps']} steps ({x['rejected']} "
                  f"rejected), total {x['total_s']:.1f} s = setup {t['setup_s']:.1f} + basal {t['basal_s']:.1f} + "
                  f"compile {t['compile_s']:.1f} + stepping {t['stepping_s']:.2f} + output {t['output_s']:.2f}")
        print(f"cuda vs cpu: {r['speedup_total']:.2f}x total, {r['speedup_stepping']:.2f}x stepping; volumes differ "
              f"by {r['max_volume_difference_rel']:.1e} (relative), region minima by "
              f"{r['max_region_min_difference_K']:.1e} K")
    elif part == "accuracy":
        a = r
        print(f"float32 vs float64 on {a['backend']}: Neumann ({a['neumann_nodes']} nodes) max |dT| "
              f"{a['neumann_T_K']:.2e} K ({a['neumann_same_steps_T_K']:.2e} K with the same steps), front "
              f"{a['neumann_front_m'] * 1e6:.2f} um (float64 front error at the end "
              f"{a['neumann_front_error_float64_m'] * 1e6:.0f} um); block ({a['block_nodes']} "
              f"nodes, double freeze-thaw) max |dT| {a['block_T_K']:.2e} K, min-T {a['block_min_T_K']:.2e} K, "
              f"time below {a['block_time_below_s']:.2e} s, volumes "
              + ", ".join(f"{lvl} C {v:.1e}" for lvl, v in a["block_volume_rel"].items()))
    print(flush=True)


def run_part(name: str, fn, out_dir: Path, command: str) -> bool:
    """Run one part, write ``out_dir/gpu_NAME.json`` at once (the figures, or the traceback), print its table."""
    t0 = time.perf_counter()
    record = {"part": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}
    try:
        result, ok = fn(), True
        record["result"] = result
    except Exception:  # recorded and reported; the next part still runs
        result, ok = None, False
        record["error"] = traceback.format_exc()
    record["wall_s"] = time.perf_counter() - t0
    from cryofield.backends import cuda_status

    record |= {"machine": machine(), "gpu": cuda_status()[1], "versions": versions(), "git": git_revision()}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu_{name}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    print(f"== {name}: {'done' if ok else 'FAILED'} in {record['wall_s']:.1f} s -> {path}", flush=True)
    if ok:
        _print(name, result)
    else:
        print(record["error"], file=sys.stderr, flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--nodes", type=float, nargs="+", default=[1e6, 4e6], help="throughput mesh sizes")
    parser.add_argument("--precisions", nargs="+", choices=["float64", "float32"], default=["float64", "float32"])
    parser.add_argument("--stages", type=int, default=20, help="RKL2 stages of a timed step")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--copy-mib", type=float, default=1024)
    parser.add_argument("--e2e-nodes", type=float, default=1e6, help="nodes of the block of --case block")
    parser.add_argument("--case", help="case file of the e2e part (default: the demo case), or 'block'")
    parser.add_argument("--accuracy-cells", type=int, default=30)
    parser.add_argument("--backend", choices=["cuda", "cpu"], default="cuda", help="backend of the accuracy part")
    parser.add_argument("--out", type=Path, default=Path("results/gpu"), help="directory of the gpu_PART.json files")
    parser.add_argument("--problem-cache", type=Path, help="keep built host problems here (pickles) for later runs")
    args = parser.parse_args(argv)

    command = " ".join(["python -m benchmarks.gpu", *(argv if argv is not None else sys.argv[1:])])
    shared = Shared(args.problem_cache)
    ok = True
    for part in args.parts:
        if part == "bandwidth":
            def bandwidth():
                result = copy_bandwidth(args.copy_mib, args.repeats)
                shared.copy_Bps = result["reference_Bps"]
                return result

            ok &= run_part("bandwidth", bandwidth, args.out, command)
        elif part == "throughput":
            for nodes in args.nodes:
                ok &= run_part(f"throughput_{size_label(nodes)}", lambda n=nodes: throughput_part(n, args, shared),
                               args.out, command)
        elif part == "host":
            ok &= run_part("host", lambda: host_part(args), args.out, command)
        elif part == "jit":
            ok &= run_part("jit", jit_times, args.out, command)
        elif part == "e2e":
            ok &= run_part("e2e", lambda: e2e_part(args), args.out, command)
        elif part == "accuracy":
            ok &= run_part("accuracy", lambda: accuracy(args.backend, args.accuracy_cells), args.out, command)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
