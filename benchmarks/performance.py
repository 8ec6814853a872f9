"""CPU throughput of the solver step and time to solution on the Neumann case.

Run ``python benchmarks/performance.py [--cells 80] [--repeats 5] [--json out.json]``.

Figures
-------
DOF-steps/s
    nodes x operator applications / wall seconds of the stepping kernels (no host copies inside).
Implied bandwidth
    the bytes one RKL2 stage must move (counted below, each array once) / stage time, as a fraction of
    a parallel copy bandwidth (STREAM-copy style: read + write counted) measured in the same run.
Time to solution
    wall time of the Neumann planar freezing case to reach its front within 1 % of the closed form,
    RKL2 (adaptive) against forward Euler at its stability limit, same mesh.

Byte count of one RKL2 stage (float64, int32 indices; E elements, N nodes)
-------------------------------------------------------------------------
element_flux, per element: connectivity 16, edge coefficients 48, tissue id 4, flux written 32 = 100 B;
    per node: temperature read once 8 B (the gathers hit cache when elements are sorted by node).
node_rate, per element: slot index 4 x 4 = 16, flux read 32 = 48 B; per node: row pointer 8, temperature 8,
    tissue id 4, lumped volume, perfusion, metabolic heat, Robin coefficient and right-hand side 5 x 8,
    fixed flag 1, rate written 8 = 69 B.
combine, per node: five vectors read 40, tissue id 4, enthalpy and temperature written 16 = 60 B.
Total: 148 E + 137 N bytes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

from cryofield.backends import get_backend
from cryofield.case import parse_case
from cryofield.io import read_result
from cryofield.problem import build_problem, load_mesh
from cryofield.runner import run_case
from cryofield.stepper import StepControl, Stepper
from cryofield.verification import neumann_lambda, planar_front_position

BYTES_PER_ELEMENT = 148
BYTES_PER_NODE = 137

BLOCK_CASE = """
name: block
mesh:
  generate: {{kind: slab, size: [40, 40, 40], cells: [{n}, {n}, {n}]}}
  units: mm
tissues: {{tissue: {{library: muscle}}}}
probes: [{{name: cold, surface: xmin}}]
protocol: [{{kind: freeze, duration: 60, temperature: -70}}]
boundaries:
  - {{surface: xmax, type: fixed, temperature: 37}}
  - {{surface: zmax, type: convection}}
"""


@njit(parallel=True, cache=True)
def _parallel_copy(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def copy_bandwidth(n_bytes: int = 1 << 29, repeats: int = 7) -> float:
    """Median parallel copy bandwidth (B/s), read + write counted, arrays far beyond the caches."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    _parallel_copy(src, dst)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _parallel_copy(src, dst)
        times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / statistics.median(times)


def _median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def stage_throughput(cells: int, repeats: int = 5, backend: str = "cpu") -> dict:
    """Time one operator application and one full RKL2 stage on a ``cells``³ block (6 tets per cell)."""
    case = parse_case(BLOCK_CASE.format(n=cells))
    problem = build_problem(case, load_mesh(case))
    be = get_backend(backend)
    state = problem.boundary_state(case.protocol[0])
    stepper = Stepper(be, problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)), StepControl("rkl2", 1e-3, 1.0))
    stepper.set_boundaries(state)
    dp, n, e = stepper.dp, problem.n_nodes, problem.n_elems
    out = be.empty(n, stepper.dtype)

    def operator():
        be.apply_operator(dp, stepper.T, out)
        be.synchronize()

    def stage():
        be.apply_operator(dp, stepper.T, stepper.L)
        be.combine(dp, stepper.Y[1], stepper.T_stage[1], (1.2, -0.3, 0.1, 1e-3, 1e-4), stepper.Y[0], stepper.H,
                   stepper.H, stepper.L, stepper.L0)
        be.synchronize()

    t_op = _median_time(operator, repeats)
    t_stage = _median_time(stage, repeats)
    stage_bytes = BYTES_PER_ELEMENT * e + BYTES_PER_NODE * n
    return {"cells": cells, "nodes": n, "elements": e, "operator_s": t_op, "stage_s": t_stage,
            "dof_steps_per_s": n / t_stage, "stage_bytes": stage_bytes, "stage_bandwidth_Bps": stage_bytes / t_stage}


NEUMANN = Path(__file__).resolve().parents[1] / "cases" / "neumann_planar.yaml"


def neumann_time_to_solution(scheme: str, cells: int = 300, out_dir: Path | None = None) -> dict:
    """Run the Neumann case with ``scheme``; wall time of stepping and the front error at 60 s and 90 s."""
    import tempfile

    text = NEUMANN.read_text().replace("cells: [300, 1, 1]", f"cells: [{cells}, 1, 1]")
    text = text.replace("solver: {max_dt: 2.0}", f"solver: {{max_dt: 2.0, scheme: {scheme}}}")
    case = parse_case(text, source=str(NEUMANN))
    with tempfile.TemporaryDirectory() as tmp:
        report = run_case(case, out_dir or tmp, backend="cpu", progress=False)
        result = read_result(report.paths["h5"])
        mat = case.materials()["tissue"]
        lam = neumann_lambda(mat.conductivity_frozen, mat.conductivity, mat.heat_capacity_frozen,
                             mat.heat_capacity_unfrozen, mat.latent_heat, -88.0, -1.0, 37.0)
        alpha = mat.conductivity_frozen / mat.heat_capacity_frozen
        errors = {}
        for t in (60.0, 90.0):
            k = int(np.argmin(np.abs(result.snapshot_times - t)))
            errors[f"{t:g}"] = planar_front_position(result.points, result.snapshot(k), -1.0) / (2 * lam * np.sqrt(alpha * t)) - 1
    s = report.summary
    return {"scheme": scheme, "cells": cells, "nodes": s["nodes"], "stepping_s": s["timings_s"]["stepping_s"],
            "steps": s["time_step"]["steps"], "operator_applications": s["time_step"]["operator_applications"],
            "front_error": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[81], help="block sizes (cells per side)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--neumann-cells", type=int, nargs="+", default=[300, 600])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    bandwidth = copy_bandwidth()
    rows = [stage_throughput(c, args.repeats) for c in args.cells]
    print(f"copy bandwidth (parallel, read+write): {bandwidth / 1e9:.2f} GB/s\n")
    print("| nodes | elements | operator ms | stage ms | M DOF-steps/s | stage GB/s | of copy bw |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['nodes']} | {r['elements']} | {r['operator_s'] * 1e3:.1f} | {r['stage_s'] * 1e3:.1f} | "
              f"{r['dof_steps_per_s'] / 1e6:.2f} | {r['stage_bandwidth_Bps'] / 1e9:.2f} | "
              f"{r['stage_bandwidth_Bps'] / bandwidth:.0%} |")
    tts = [neumann_time_to_solution(s, c) for c in args.neumann_cells for s in ("rkl2", "euler")]
    print("\n| Neumann mesh cells | scheme | steps | operator applications | stepping s | front error 60 s | 90 s |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in tts:
        e = r["front_error"]
        print(f"| {r['cells']} | {r['scheme']} | {r['steps']} | {r['operator_applications']} | {r['stepping_s']:.3f} |"
              f" {e['60']:+.2%} | {e['90']:+.2%} |")
    for c in args.neumann_cells:
        pair = {r["scheme"]: r for r in tts if r["cells"] == c}
        print(f"\n{c} cells: forward Euler / RKL2 wall time = "
              f"{pair['euler']['stepping_s'] / pair['rkl2']['stepping_s']:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"copy_bandwidth_Bps": bandwidth, "stages": rows, "neumann": tts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
