"""Performance suite: throughput against the memory limit over a size series, and time to solution.

Run ``cryofield bench performance [--quick] [--backend cpu|cuda]``.

Figures
-------
DOF-steps/s
    nodes x operator applications / wall seconds of the stepping kernels (no host copies inside); here one
    RKL stage (an operator application and the fused vector update) on a structured block.
Implied bandwidth fraction
    the bytes one RKL stage must move (counted below, each array once) / stage time, as a fraction of a
    copy bandwidth (STREAM-copy style: read + write counted) measured in the same run. On the cuda
    backend both come from :mod:`benchmarks.gpu` (device copy bandwidth, the fused stage's byte count).
Time to solution
    wall time from the case file to the complete results (mesh, assembly, basal state, stepping, output)
    of a double freeze-thaw case at its default steps, with its clinical outputs compared with a reference
    run on a finer mesh with smaller steps; and the Neumann case, RKL2 (adaptive) against forward Euler
    at its stability limit on the same mesh (one thread), with both front errors.

The byte count of one stage is :func:`cryofield.kernels.bodies.stage_bytes` (148 E + 125 N bytes in float64).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit, prange

from cryofield.backends import get_backend
from cryofield.config.case import Case, load_case, parse_case
from cryofield.fem.closed_forms import planar_front_position
from cryofield.io import read_result
from cryofield.kernels import bodies as kernels
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem
from cryofield.run.runner import RunReport, run_case
from cryofield.timestepping.control import StepControl
from cryofield.timestepping.stepper import Stepper

from .cases import probe_block_case
from .common import REPO, markdown_table, median_times, numba_threads
from .compare import figure
from .verification import NEUMANN_CASE, fill_case, neumann_front_exact

NAME = "performance"


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

#: Block sizes (cells per side; (n + 1)³ nodes, 6 n³ tetrahedra) of the throughput series.
SIZES = {
    "quick": {"cpu": [30, 50, 70], "cuda": [40, 80], "neumann": [300], "repeats": 5, "copy_MiB": 512},
    "full": {"cpu": [25, 50, 75, 100], "cuda": [50, 100, 160], "neumann": [300, 600], "repeats": 7,
             "copy_MiB": 512},
}


@njit(parallel=True, cache=True)
def _parallel_copy(src, dst):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def copy_bandwidth(n_bytes: int = 1 << 29, repeats: int = 7) -> float:
    """Median parallel copy bandwidth (B/s), read + write counted, arrays far beyond the caches."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    return 2 * src.nbytes / median_times([lambda: _parallel_copy(src, dst)], repeats)[0]


def reference_bandwidth(backend: str, mib: int, repeats: int) -> float:
    """The copy bandwidth (B/s) the stage bandwidth is compared with: host memory, or the GPU's."""
    if backend == "cuda":
        from . import gpu

        return gpu.copy_bandwidth(mib, repeats)["reference_Bps"]
    return copy_bandwidth(mib << 20, repeats)


def stage_throughput(cells: int, repeats: int = 5, backend: str = "cpu") -> dict:
    """Time one operator application and one full RKL2 stage on a ``cells``³ block (6 tets per cell)."""
    case = parse_case(BLOCK_CASE.format(n=cells))
    problem = build_problem(case, mesh_of(case))
    be = get_backend(backend)
    stepper = Stepper(be, problem, problem.enthalpy(np.full(problem.n_nodes, 37.0)), StepControl("rkl2", 1e-3, 1.0))
    stepper.set_boundaries(problem.boundary_state(case.protocol[0]))
    dp, n, e = stepper.dp, problem.n_nodes, problem.n_elems
    out = be.empty(n, stepper.dtype)

    def operator():
        be.apply_operator(dp, stepper.ensemble.T, out)
        be.synchronize()

    ens = stepper.ensemble

    def stage():
        be.stage(dp, ens.T, ens.L, ens.Y[1], ens.T_even, (1.2, -0.3, 0.1, 1e-3, 1e-4), ens.Y[0], ens.H, ens.H, ens.L0)
        be.synchronize()

    t_op, t_stage = median_times([operator, stage], repeats)
    stage_bytes = kernels.stage_bytes(n, e, 8)
    return {"cells": cells, "nodes": n, "elements": e, "operator_s": t_op, "stage_s": t_stage,
            "dof_steps_per_s": n / t_stage, "stage_bytes": stage_bytes, "stage_bandwidth_Bps": stage_bytes / t_stage}


def throughput_row(cells: int, backend: str, repeats: int, copy_Bps: float) -> dict:
    """A size-series record: stage throughput and its fraction of the copy bandwidth, on ``backend``."""
    if backend == "cuda":
        from . import gpu

        g = gpu.throughput(cells, "float64", 20, repeats, copy_Bps)
        row = {k: g[k] for k in ("cells", "nodes", "elements", "operator_s", "stage_s", "stage_bytes")}
        row.update(dof_steps_per_s=g["nodes"] / g["stage_s"], stage_bandwidth_Bps=g["stage_bytes"] / g["stage_s"])
    else:
        row = stage_throughput(cells, repeats, backend)
    fraction = row["stage_bandwidth_Bps"] / copy_Bps
    return {"id": f"throughput_{row['nodes']}", **row, "bandwidth_fraction": fraction,
            "figures": {"fraction of copy bandwidth": figure(fraction, "ratio")}}


def neumann_time_to_solution(scheme: str, cells: int = 300, out_dir: Path | None = None) -> dict:
    """Run the Neumann case with ``scheme``; wall time of stepping and the front error at 60 s and 90 s."""
    case = fill_case(NEUMANN_CASE, n=cells)
    case.solver.scheme = scheme
    case.outputs.snapshot_interval = 30.0
    with tempfile.TemporaryDirectory() as tmp:
        report = run_case(case, out_dir or tmp, backend="cpu", progress=False)
        result = read_result(report.paths["h5"])
        errors = {}
        for t, exact in zip((60.0, 90.0), neumann_front_exact(case, [60.0, 90.0])):
            k = int(np.argmin(np.abs(result.snapshot_times - t)))
            errors[f"{t:g}"] = planar_front_position(result.points, result.snapshot(k), -1.0) / exact - 1
    s = report.summary
    return {"scheme": scheme, "cells": cells, "nodes": s["nodes"], "stepping_s": s["timings_s"]["stepping_s"],
            "steps": s["time_step"]["steps"], "operator_applications": s["time_step"]["operator_applications"],
            "front_error": errors}


def neumann_schemes(cells: int) -> dict:
    """RKL2 against forward Euler on the same Neumann mesh: the same-run speed-up at (about) equal error.

    One thread: the slab has a few thousand nodes, where thread start-up, not memory, sets the pace.
    """
    with numba_threads(1):
        rkl2, euler = neumann_time_to_solution("rkl2", cells), neumann_time_to_solution("euler", cells)
    speedup = euler["stepping_s"] / rkl2["stepping_s"]
    return {"id": f"neumann_schemes_{cells}", "cells": cells, "rkl2": rkl2, "euler": euler, "speedup": speedup,
            "figures": {"forward Euler / RKL2 stepping time": figure(speedup, "ratio"),
                        "RKL2 operator applications": figure(rkl2["operator_applications"], "work"),
                        "RKL2 front error 90 s": figure(abs(rkl2["front_error"]["90"]), "error")}}


# -- time to solution of a double freeze-thaw case -----------------------------------------------------------

#: Quick: the probe block's meshes (tip and far element sizes, mm) and protocol (freeze, thaw s).
BLOCK_TTS = {"test": (0.3, 2.0), "reference": (0.2, 1.5), "protocol": (30.0, 15.0)}
#: Full: the occipital double freeze-thaw case, its coarse preset against the medium one.
OCCIPITAL_CASE = REPO / "cases" / "gon_double_freeze.yaml"
#: Steps (max_dt s, max_change K) of the references.
REFERENCE_STEPS = (0.5, 2.5)


def clinical_outputs(report: RunReport, region: str) -> dict:
    """What a clinician reads from a run: the ice ball and injury volumes, and ``region``'s minimum temperature."""
    s = report.summary
    return {"ice volume (-1 °C) mm³": s["total_volume_below_mm3"]["-1"],
            "volume below -20 °C mm³": s["total_volume_below_mm3"]["-20"],
            f"{region} minimum °C": s["regions"][region]["min_temperature_C"]}


def timed_run(case: Case, out_dir: Path, backend: str) -> tuple[float, RunReport]:
    """Wall time of :func:`run_case` from the validated case to complete results, and its report."""
    t0 = time.perf_counter()
    report = run_case(case, out_dir, backend=backend, progress=False)
    return time.perf_counter() - t0, report


def double_freeze_cases(quick: bool, directory: Path) -> tuple[str, str, Case, Case]:
    """(title, nerve region, test case, reference case) of the time-to-solution study.

    Full: the occipital case (``cases/gon_double_freeze.yaml``) at its coarse preset and default steps; the
    reference on the medium preset with :data:`REFERENCE_STEPS`. Quick: the probe 3 mm from a nerve in a
    fat/muscle block, likewise against a finer block mesh.
    """
    if not quick:
        test, reference = load_case(OCCIPITAL_CASE), load_case(OCCIPITAL_CASE)
        reference.mesh.phantom.preset = "medium"
        reference.solver.max_dt, reference.solver.max_change = REFERENCE_STEPS
        title = (f"{test.name} (occipital phantom, 90/30/90 s freeze-thaw-freeze at -70 °C), coarse preset, "
                 f"default steps; reference: medium preset, max_dt {REFERENCE_STEPS[0]:g} s, max_change "
                 f"{REFERENCE_STEPS[1]:g} K")
        return title, "gon", test, reference
    p = BLOCK_TTS
    test = probe_block_case(directory, *p["test"], *p["protocol"])
    reference = probe_block_case(directory, *p["reference"], *p["protocol"], *REFERENCE_STEPS)
    freeze, thaw = p["protocol"]
    title = (f"18G probe 3 mm from a nerve in fat/muscle, {freeze:g}/{thaw:g}/{freeze:g} s freeze-thaw-freeze at "
             f"-70 °C; mesh {p['test'][0]:g}-{p['test'][1]:g} mm, default steps; reference: mesh "
             f"{p['reference'][0]:g}-{p['reference'][1]:g} mm, max_dt {REFERENCE_STEPS[0]:g} s, max_change "
             f"{REFERENCE_STEPS[1]:g} K")
    return title, "nerve", test, reference


def case_time_to_solution(quick: bool, backend: str) -> dict:
    """Time to solution of the double freeze-thaw case, and its clinical outputs against the reference."""
    with tempfile.TemporaryDirectory() as tmp:
        title, region, test, reference = double_freeze_cases(quick, Path(tmp))
        wall, report = timed_run(test, Path(tmp) / "test", backend)
        ref_wall, ref_report = timed_run(reference, Path(tmp) / "reference", backend)
    ours, ref = clinical_outputs(report, region), clinical_outputs(ref_report, region)
    errors = {k: (ours[k] - ref[k]) / ref[k] if "mm³" in k else ours[k] - ref[k] for k in ours}
    s = report.summary
    figures = {f"{k} {'relative error' if 'mm³' in k else 'error K'}": figure(abs(v), "error")
               for k, v in errors.items()}
    figures["operator applications"] = figure(s["time_step"]["operator_applications"], "work")
    return {"id": "double_freeze_time_to_solution", "title": title, "nodes": s["nodes"],
            "reference_nodes": ref_report.summary["nodes"], "wall_s": wall, "reference_wall_s": ref_wall,
            "timings_s": s["timings_s"], "steps": s["time_step"]["steps"],
            "operator_applications": s["time_step"]["operator_applications"], "outputs": ours,
            "reference_outputs": ref, "errors": errors, "figures": figures}


def run(quick: bool, backend: str = "cpu") -> dict:
    """The size series on ``backend``, the Neumann schemes (cpu) and the double freeze-thaw time to solution."""
    sizes = SIZES["quick" if quick else "full"]
    copy_Bps = reference_bandwidth(backend, sizes["copy_MiB"], sizes["repeats"])
    records = [throughput_row(c, backend, sizes["repeats"], copy_Bps) for c in sizes[backend]]
    records += [neumann_schemes(c) for c in sizes["neumann"]]
    records.append(case_time_to_solution(quick, backend))
    return {"copy_bandwidth_Bps": copy_Bps, "records": records}


def tables(result: dict) -> str:
    """Markdown tables: the size series, RKL2 against forward Euler, the time to solution."""
    bw = result["copy_bandwidth_Bps"]
    rows, schemes, tts = [], [], []
    for r in result["records"]:
        if r["id"].startswith("throughput"):
            rows.append([r["nodes"], r["elements"], f"{r['operator_s'] * 1e3:.2f}", f"{r['stage_s'] * 1e3:.2f}",
                         f"{r['dof_steps_per_s'] / 1e6:.1f}", f"{r['stage_bandwidth_Bps'] / 1e9:.2f}",
                         f"{r['bandwidth_fraction']:.0%}"])
        elif r["id"].startswith("neumann_schemes"):
            for k in ("rkl2", "euler"):
                e = r[k]
                schemes.append([r["cells"], k, e["steps"], e["operator_applications"], f"{e['stepping_s']:.3f}",
                                f"{e['front_error']['60']:+.2%}", f"{e['front_error']['90']:+.2%}"])
            schemes.append([r["cells"], "**Euler / RKL2 time**", "", "", f"**{r['speedup']:.1f}x**", "", ""])
        else:
            tts.append(r)
    parts = [f"Copy bandwidth (read + write): {bw / 1e9:.2f} GB/s\n",
             markdown_table(["nodes", "elements", "operator ms", "stage ms", "M DOF-steps/s", "stage GB/s",
                             "of copy bw"], rows), "",
             markdown_table(["Neumann cells", "scheme", "steps", "operator applications", "stepping s",
                             "front error 60 s", "90 s"], schemes)]
    for r in tts:
        t = r["timings_s"]
        summary = (f"\n**Time to solution**: {r['title']}. {r['nodes']} nodes (reference {r['reference_nodes']}): "
                   f"{r['wall_s']:.1f} s from case to results (setup {t['setup_s']:.1f}, basal {t['basal_s']:.1f}, "
                   f"stepping {t['stepping_s']:.1f}, output {t['output_s']:.1f}; reference "
                   f"{r['reference_wall_s']:.0f} s), {r['steps']} steps, {r['operator_applications']} operator "
                   f"applications.\n")
        parts += [summary,
                  markdown_table(["output", "this run", "reference", "error"],
                                 [[k, f"{v:.4g}", f"{r['reference_outputs'][k]:.4g}",
                                   f"{r['errors'][k]:+.2%}" if "mm³" in k else f"{r['errors'][k]:+.2f} K"]
                                  for k, v in r["outputs"].items()])]
    return "\n".join(parts)
