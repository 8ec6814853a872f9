"""GPU figures of the CUDA backend, measured in one run on whatever NVIDIA GPU is present.

Run from the repository root::

    python -m benchmarks.gpu --json gpu.json                    # every part (host mesh setup takes most time)
    python -m benchmarks.gpu --parts bandwidth throughput       # some parts
    python -m benchmarks.gpu --parts e2e --case CASE.yaml       # any case end to end, e.g. the occipital one
    python -m benchmarks.gpu --parts accuracy --backend cpu     # float32 against float64, no GPU needed

Parts
-----
bandwidth
    Device copy bandwidth, read + write counted, on ``--copy-mib`` arrays (far beyond the L2 cache): a
    device-to-device ``copy_to_device`` and a grid-stride copy kernel; CUDA-event medians. The larger of
    the two is the reference of every "of copy bw" figure.
throughput
    Structured blocks of about ``--nodes`` nodes (default 1 M and 4 M), float64 and float32, after a 2 s
    freeze so that an ice front exists: an operator application and an RKL stage (each run ``--stages``
    times back to back, as a step runs them, and divided), and one whole accepted RKL2 step of
    ``--stages`` stages (the stages, the step-size reduction with its device-to-host copy, the dose
    tracker). DOF-steps/s = nodes x stages / step time. Implied bandwidth = bytes counted below / time, as
    a fraction of the copy bandwidth. Also the device-to-host copy of one temperature field (the cost of a
    snapshot or metrics record, excluded from the stepping figures).
launch
    Launch overhead: back-to-back launches of an empty kernel (host-side cost per launch), one launch plus
    synchronize (latency), and a stage and a whole step on a 10-cell block where the GPU work is
    negligible: their wall times are the launch and synchronisation overhead per stage and per step.
jit
    JIT compilation: a small case run twice in fresh processes sharing an empty ``NUMBA_CACHE_DIR``; the
    first compiles every kernel, the second loads them from the cache (``compile_s`` of the run summary).
e2e
    Wall time of a double freeze-thaw case on the GPU: ``--case``, or a built-in block of about
    ``--e2e-nodes`` nodes with a cold face as the probe (90 s freeze at -70 C, 30 s passive thaw, 90 s
    freeze, 30 s passive thaw, basal initial state), split as the run summary reports it: setup and basal
    state (host), JIT compilation, stepping, output.
accuracy
    float32 against float64 on ``--backend``: the Neumann case (front position) and the double
    freeze-thaw block at ``--accuracy-cells`` (temperatures, minimum temperature, time below -20 and
    -40 C, ice and injury volumes).

Bytes per RKL stage and per step: :func:`cryofield.kernels.stage_bytes` and :func:`cryofield.kernels.step_bytes`
(148 E + 125 N bytes a stage in float64, 92 E + 69 N in float32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import cuda

from cryofield import kernels
from cryofield.backends import get_backend
from cryofield.case import load_case, parse_case
from cryofield.io import read_result
from cryofield.mesh.sources import mesh_of
from cryofield.problem import build_problem
from cryofield.runner import run_case
from cryofield.stepper import StepControl, Stepper, rkl2_max_dt
from cryofield.verification import neumann_lambda, planar_front_position

REPO = Path(__file__).resolve().parents[1]
PARTS = ("bandwidth", "throughput", "launch", "jit", "e2e", "accuracy")
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


def copy_bandwidth(mib: float, repeats: int) -> dict:
    """Device copy bandwidth (B/s), read + write counted: ``copy_to_device`` and a copy kernel."""
    src = cuda.to_device(np.ones(int(mib * 2**20) // 8))
    dst = cuda.device_array_like(src)
    blocks = min(65535 * 32, (src.shape[0] + 255) // 256)
    t_memcpy = gpu_time(lambda: dst.copy_to_device(src), repeats)
    t_kernel = gpu_time(lambda: _copy_kernel[blocks, 256](src, dst), repeats)
    moved = 2 * src.nbytes
    return {"array_MiB": mib, "memcpy_Bps": moved / t_memcpy, "kernel_Bps": moved / t_kernel,
            "reference_Bps": max(moved / t_memcpy, moved / t_kernel)}


def frozen_stepper(cells: int, precision: str, backend: str = "cuda"):
    """A stepper on a ``cells``³ block after a 2 s freeze (so an ice front exists), and its build time."""
    t0 = time.perf_counter()
    case = block_case(cells, precision=precision)
    problem = build_problem(case, mesh_of(case))
    setup = time.perf_counter() - t0
    state = problem.boundary_state(case.protocol[0])
    control = StepControl("rkl2", 0.9 * 2.0 / problem.spectral_radius_bound(state.robin_coef, state.fixed), 2.0)
    stepper = Stepper(get_backend(backend), problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)), control,
                      np.dtype(precision))
    stepper.set_boundaries(state)
    stepper.advance(2.0)
    return stepper, setup


def run_stages(stepper: Stepper, count: int, operator_only: bool = False) -> None:
    """``count`` RKL stages (or operator applications alone) back to back on the stepper's scratch arrays."""
    be, dp = stepper.backend, stepper.dp
    for _ in range(count):
        if operator_only:
            be.apply_operator(dp, stepper.T, stepper.L)
        else:
            be.stage(dp, stepper.T, stepper.L, stepper.Y[1], stepper.T_stage[1], TIMING_COEFS, stepper.H, stepper.H,
                     stepper.H, stepper.L0)


def one_step(stepper: Stepper, dt: float, stages: int) -> None:
    """What :meth:`Stepper.advance` runs per accepted step, leaving the state as it was."""
    be = stepper.backend
    _, T_new = stepper.step_rkl2(dt, stages)
    be.max_abs_difference(stepper.T, T_new)
    be.track(stepper.T, T_new, dt, stepper.T_min, stepper.thresholds, stepper.time_below)


def throughput(cells: int, precision: str, stages: int, repeats: int, copy_Bps: float) -> dict:
    """Operator, stage and whole-step times on a ``cells``³ block, with the implied bandwidth."""
    stepper, setup = frozen_stepper(cells, precision)
    be, n, e = stepper.backend, stepper.problem.n_nodes, stepper.problem.n_elems
    d = np.dtype(precision).itemsize
    dt = rkl2_max_dt(stages, stepper.control.stable_dt)
    # back to back, as in a step: a launch is prepared while the previous kernel runs
    t_op = gpu_time(lambda: run_stages(stepper, stages, operator_only=True), repeats) / stages
    t_stage = gpu_time(lambda: run_stages(stepper, stages), repeats) / stages
    t_step = wall_time(lambda: one_step(stepper, dt, stages), repeats)
    t_snapshot = wall_time(lambda: be.to_host(stepper.T), repeats)
    return {"cells": cells, "nodes": n, "elements": e, "precision": precision, "stages": stages,
            "setup_s": setup, "operator_s": t_op, "stage_s": t_stage, "step_s": t_step,
            "dof_steps_per_s": n * stages / t_step, "stage_bytes": kernels.stage_bytes(n, e, d),
            "step_bytes": kernels.step_bytes(n, e, d, stages, THRESHOLDS),
            "stage_of_copy_bw": kernels.stage_bytes(n, e, d) / t_stage / copy_Bps,
            "step_of_copy_bw": kernels.step_bytes(n, e, d, stages, THRESHOLDS) / t_step / copy_Bps,
            "snapshot_copy_s": t_snapshot}


def launch_overhead(stages: int, repeats: int) -> dict:
    """Per-launch host cost and latency, and the overhead of a stage and of a step on a tiny block."""
    count = 2000
    _empty_kernel[1, 1]()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(count):
        _empty_kernel[1, 1]()
    enqueue = (time.perf_counter() - t0) / count
    cuda.synchronize()
    latency = wall_time(lambda: _empty_kernel[1, 1](), repeats)
    stepper, _ = frozen_stepper(10, "float64")
    dt = rkl2_max_dt(stages, stepper.control.stable_dt)
    return {"empty_launch_s": enqueue, "launch_and_sync_s": latency,
            "stage_s": wall_time(lambda: run_stages(stepper, stages), repeats) / stages,
            "step_s": wall_time(lambda: one_step(stepper, dt, stages), repeats), "stages": stages,
            "launches_per_step": 2 * stages + 2, "tiny_nodes": stepper.problem.n_nodes}


def e2e(cells: int | None = None, case_path: str | None = None, backend: str = "cuda",
        precision: str = "float64") -> dict:
    """Run the double freeze-thaw case (``case_path``, or the built-in block) and return its summary."""
    case = load_case(case_path) if case_path else block_case(cells, DOUBLE_FREEZE_THAW, "basal", precision,
                                                              "double_freeze_thaw")
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = run_case(case, out, backend=backend, progress=False)
        total = time.perf_counter() - t0
    s = report.summary
    return {"case": s["case"], "nodes": s["nodes"], "elements": s["elements"], "device": s["device"],
            "precision": s["precision"], "timings_s": s["timings_s"], "total_s": total,
            "steps": s["time_step"]["steps"], "rejected": s["time_step"]["rejected_steps"],
            "operator_applications": s["time_step"]["operator_applications"],
            "dof_steps_per_s": s["throughput"]["dof_steps_per_s"], "volumes_mm3": s["total_volume_below_mm3"]}


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


def _print_tables(out: dict) -> None:
    if "bandwidth" in out:
        b = out["bandwidth"]
        print(f"copy bandwidth ({b['array_MiB']} MiB, read + write): memcpy {b['memcpy_Bps'] / 1e9:.0f} GB/s, "
              f"kernel {b['kernel_Bps'] / 1e9:.0f} GB/s\n")
    if "throughput" in out:
        print("| nodes | elements | precision | operator ms | stage ms | step ms (s stages) | G DOF-steps/s "
              "| stage of copy bw | step of copy bw | snapshot copy ms | host setup s |")
        print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in out["throughput"]:
            print(f"| {r['nodes']} | {r['elements']} | {r['precision']} | {r['operator_s'] * 1e3:.3f} | "
                  f"{r['stage_s'] * 1e3:.3f} | {r['step_s'] * 1e3:.2f} ({r['stages']}) | "
                  f"{r['dof_steps_per_s'] / 1e9:.2f} | {r['stage_of_copy_bw']:.0%} | {r['step_of_copy_bw']:.0%} | "
                  f"{r['snapshot_copy_s'] * 1e3:.2f} | {r['setup_s']:.1f} |")
        print()
    if "launch" in out:
        r = out["launch"]
        print(f"launch: empty kernel {r['empty_launch_s'] * 1e6:.1f} us per launch back to back, "
              f"{r['launch_and_sync_s'] * 1e6:.1f} us launch + synchronize; on {r['tiny_nodes']} nodes a stage "
              f"{r['stage_s'] * 1e6:.1f} us, a step of {r['stages']} stages ({r['launches_per_step']} launches, "
              f"1 device-to-host copy) {r['step_s'] * 1e6:.0f} us\n")
    if "jit" in out:
        print(f"JIT: cold compile {out['jit']['cold_compile_s']:.2f} s, from cache "
              f"{out['jit']['cached_compile_s']:.2f} s\n")
    if "e2e" in out:
        r, t = out["e2e"], out["e2e"]["timings_s"]
        print(f"{r['case']} on {r['device']}: {r['nodes']} nodes, {r['steps']} steps ({r['rejected']} rejected), "
              f"{r['operator_applications']} operator applications, {r['dof_steps_per_s'] / 1e9:.2f} G DOF-steps/s")
        print(f"wall: stepping {t['stepping_s']:.2f} s + output {t['output_s']:.2f} s = "
              f"{t['stepping_s'] + t['output_s']:.2f} s on the GPU; compile {t['compile_s']:.2f} s; host setup "
              f"{t['setup_s']:.1f} s, basal {t['basal_s']:.1f} s; total {r['total_s']:.1f} s\n")
    if "accuracy" in out:
        a = out["accuracy"]
        print(f"float32 vs float64 on {a['backend']}: Neumann ({a['neumann_nodes']} nodes) max |dT| "
              f"{a['neumann_T_K']:.2e} K ({a['neumann_same_steps_T_K']:.2e} K with the same steps), front "
              f"{a['neumann_front_m'] * 1e6:.2f} um (float64 front error at the end "
              f"{a['neumann_front_error_float64_m'] * 1e6:.0f} um); block ({a['block_nodes']} "
              f"nodes, double freeze-thaw) max |dT| {a['block_T_K']:.2e} K, min-T {a['block_min_T_K']:.2e} K, "
              f"time below {a['block_time_below_s']:.2e} s, volumes "
              + ", ".join(f"{lvl} C {v:.1e}" for lvl, v in a["block_volume_rel"].items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--nodes", type=float, nargs="+", default=[1e6, 4e6], help="throughput mesh sizes")
    parser.add_argument("--precisions", nargs="+", choices=["float64", "float32"], default=["float64", "float32"])
    parser.add_argument("--stages", type=int, default=20, help="RKL2 stages of a timed step")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--copy-mib", type=float, default=1024)
    parser.add_argument("--e2e-nodes", type=float, default=1e6)
    parser.add_argument("--case", help="case file for the e2e part instead of the built-in block")
    parser.add_argument("--accuracy-cells", type=int, default=30)
    parser.add_argument("--backend", choices=["cuda", "cpu"], default="cuda", help="backend of the accuracy part")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)

    out: dict = {}
    if {"bandwidth", "throughput"} & set(args.parts):
        out["bandwidth"] = copy_bandwidth(args.copy_mib, args.repeats)
    if "throughput" in args.parts:
        out["throughput"] = [throughput(cells_for(n), p, args.stages, args.repeats,
                                        out["bandwidth"]["reference_Bps"])
                             for n in args.nodes for p in args.precisions]
    if "launch" in args.parts:
        out["launch"] = launch_overhead(args.stages, args.repeats)
    if "jit" in args.parts:
        out["jit"] = jit_times()
    if "e2e" in args.parts:
        out["e2e"] = e2e(cells_for(args.e2e_nodes), args.case)
    if "accuracy" in args.parts:
        out["accuracy"] = accuracy(args.backend, args.accuracy_cells)
    _print_tables(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
