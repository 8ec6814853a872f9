"""Ensemble throughput: variant-steps per second for B variants of the coarse occipital phantom stepped together.

For each ensemble size B and each layout (variant fastest, node fastest) the suite times accepted RKL2
steps of a fixed stage count on every variant at once (:meth:`cryofield.timestepping.stepper.Ensemble.uniform_step`:
the stage passes, the per-variant change reduction, the commit and the dose trackers, exactly what an
accepted step of a run costs, without the host's step-size decisions), medians of several steps. It
reports variant-steps/s, the speed-up over B = 1, the bytes an accepted step must move
(:func:`cryofield.kernels.bodies.step_bytes`) over the step time as a fraction of the copy bandwidth measured in
the same run, and the point where the ensemble becomes bandwidth bound: the smallest B whose fraction of
copy bandwidth is within 20 % of the largest measured.

The variants start from the demo case's state after a few seconds of freezing (an ice front exists),
each with the same properties: the arithmetic per node does not depend on which values a variant has, so
identical variants cost what different ones do. ``cryofield bench ensemble [--quick] [--backend cuda]``.
"""

from __future__ import annotations

import time

import numpy as np

from cryofield.backends import get_backend
from cryofield.config.case import load_case
from cryofield.kernels import bodies as kernels
from cryofield.run.plan import prepare
from cryofield.timestepping.stepper import Ensemble, Stepper

from .common import REPO, markdown_table
from .compare import figure
from .performance import reference_bandwidth

#: Ensemble sizes, stages per step, timed steps per size (median), copy buffer (MiB) per mode and backend.
SIZES = {"quick": {"B": [1, 8, 64], "stages": 10, "repeats": 3, "copy_MiB": 512, "freeze_s": 2.0},
         "full": {"B": [1, 8, 64, 256], "stages": 10, "repeats": 5, "copy_MiB": 512, "freeze_s": 5.0}}
CASE = REPO / "cases" / "gon_double_freeze.yaml"
#: Dose levels the trackers follow (the demo's: 0, -20, -40 °C).
LEVELS = [0.0, -20.0, -40.0]


def frozen_state(backend: str, freeze_s: float):
    """The demo's plan and its nodal enthalpy after ``freeze_s`` seconds of the first freeze, and its boundaries."""
    plan = prepare(load_case(CASE))
    problem = plan.problem
    phase = plan.timeline.phases[0]
    stepper = Stepper(get_backend(backend), problem, problem.enthalpy(plan.initial_temperature()), plan.control(),
                      plan.dtype)
    state = problem.boundary_state(phase, 0.0)
    stepper.set_boundaries(state)
    stepper.advance(freeze_s)
    return plan, stepper.enthalpy_host(), state


def time_ensemble(plan, H, state, backend: str, variants: int, variant_fastest: bool, stages: int,
                  repeats: int) -> dict:
    """Median wall time of one accepted step of every variant of a ``variants``-member ensemble."""
    problem = plan.problem
    be = get_backend(backend)
    t0 = time.perf_counter()
    ensemble = Ensemble(be, [problem] * variants, [H] * variants, [plan.control()] * variants, plan.dtype,
                        variant_fastest=variant_fastest)
    for lane in ensemble.lanes:
        lane.set_boundaries(state)
    ensemble.track_doses(LEVELS)
    ensemble.warm_up()
    setup_s = time.perf_counter() - t0
    dt = 0.5 * ensemble.lanes[0].control.stable_dt * (stages * stages + stages - 2) / 4  # half the stable super-step
    ensemble.uniform_step(dt, stages)  # first touch of every page and every launch
    be.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ensemble.uniform_step(dt, stages)
        be.synchronize()
        times.append(time.perf_counter() - t0)
    if not np.isfinite(ensemble.lanes[0].temperature_host()).all():
        raise RuntimeError("the timed steps went unstable")
    step_s = float(np.median(times))
    d = plan.dtype.itemsize
    return {"variants": variants, "layout": "variant fastest" if variant_fastest and variants > 1 else
            ("node fastest" if variants > 1 else "single"), "stages": stages, "step_s": step_s,
            "step_s_all": times, "setup_s": setup_s,
            "variant_steps_per_s": variants / step_s,
            "dof_steps_per_s": variants * problem.n_nodes * stages / step_s,
            "step_bytes": kernels.step_bytes(problem.n_nodes, problem.n_elems, d, stages, len(LEVELS), variants)}


#: The protocol study: a nerve slab frozen from one face, variants over the freeze's length and temperature.
SLAB = """
name: slab{b}
mesh: {{generate: {{kind: slab, size: [20, 4, 4], cells: [{cells}, 4, 4]}}, units: mm}}
tissues: {{tissue: {{library: nerve}}}}
probes: [{{name: cold_face, surface: xmin}}]
protocol: [{{kind: freeze, duration: {duration}, temperature: {temperature}}}, {{kind: passive_thaw, duration: 30}}]
initial: {{type: uniform, temperature: 37}}
boundaries: [{{surface: xmax, type: fixed, temperature: 37}}]
outputs: {{snapshot_interval: 30, metrics_interval: 5}}
"""


def protocol_ensemble(quick: bool, backend: str, out_dir) -> dict:
    """B variants of a small case with real protocols (their own steps, phase switches at different times) as one
    ensemble against the same variants run one by one: wall time, stage utilisation, largest difference."""
    from cryofield.config.case import parse_case
    from cryofield.run.ensemble import run_ensemble
    from cryofield.run.runner import run_case

    from .common import median_times

    durations, temperatures = [30, 60, 90, 120], [-40, -70]
    cells = 40 if quick else 80
    cases = [parse_case(SLAB.format(b=i, cells=cells, duration=d, temperature=t))
             for i, (d, t) in enumerate((d, t) for d in durations for t in temperatures)]
    reports, singles = [], []

    def together():
        reports.append(run_ensemble(cases, [out_dir / f"e{len(reports)}"] * len(cases), backend=backend))

    def one_by_one():
        singles.append([run_case(c, out_dir / f"s{len(singles)}", backend=backend, progress=False) for c in cases])

    t_ens, t_alone = median_times([together, one_by_one], 3)  # interleaved, after one untimed call of each
    report = reports[-1]
    diff = max(abs(r.summary["probes"]["cold_face"]["min_temperature_C"] - s.summary["probes"]["cold_face"][
        "min_temperature_C"]) + abs(r.summary["total_volume_below_mm3"]["-20"] - s.summary["total_volume_below_mm3"][
            "-20"]) for r, s in zip(report.results, singles[-1]))
    steps = [r.summary["time_step"]["steps"] for r in report.results]
    return {"id": "ensemble_protocols", "variants": len(cases), "nodes": report.results[0].summary["nodes"],
            "ensemble_s": t_ens, "one_by_one_s": t_alone, "speedup": t_alone / t_ens,
            "stage_utilisation": report.stage_utilisation, "steps_min": min(steps), "steps_max": max(steps),
            "largest_difference": diff,
            "figures": {"speedup": figure(t_alone / t_ens, "ratio")}}


def run(quick: bool, backend: str = "cpu") -> dict:
    """Every ensemble size in both layouts on ``backend``, with the copy bandwidth of the same run."""
    sizes = SIZES["quick" if quick else "full"]
    copy_Bps = reference_bandwidth(backend, sizes["copy_MiB"], sizes["repeats"])
    plan, H, state = frozen_state(backend, sizes["freeze_s"])
    rows = []
    for b in sizes["B"]:
        for variant_fastest in ((True,) if b == 1 else (True, False)):
            row = time_ensemble(plan, H, state, backend, b, variant_fastest, sizes["stages"], sizes["repeats"])
            row["of_copy_bw"] = row["step_bytes"] / row["step_s"] / copy_Bps
            rows.append(row)
            print(f"  B = {b:4d} {row['layout']:16s} {row['variant_steps_per_s']:9.2f} variant-steps/s, "
                  f"{row['of_copy_bw']:.0%} of copy bandwidth", flush=True)
    single = next(r for r in rows if r["variants"] == 1)
    for r in rows:
        r["speedup_vs_single"] = r["variant_steps_per_s"] / single["variant_steps_per_s"]
    best = {}
    for r in rows:
        if r["variants"] == 1 or r["variant_steps_per_s"] > best.get(r["variants"], {}).get("variant_steps_per_s", 0):
            best[r["variants"]] = r
    peak = max(r["of_copy_bw"] for r in best.values())
    bound = min(b for b, r in best.items() if r["of_copy_bw"] >= 0.8 * peak)
    records = [{"id": f"ensemble_B{b}", "variants": b, "nodes": plan.problem.n_nodes,
                "elements": plan.problem.n_elems, "best_layout": r["layout"], "rows": [x for x in rows
                                                                                      if x["variants"] == b],
                "figures": {"of_copy_bw": figure(r["of_copy_bw"], "ratio"),
                            "speedup_vs_single": figure(r["speedup_vs_single"], "ratio")}}
               for b, r in sorted(best.items())]
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        protocols = protocol_ensemble(quick, backend, Path(tmp))
    return {"copy_bandwidth_Bps": copy_Bps, "backend": backend, "device": get_backend(backend).device_name,
            "bandwidth_bound_from_B": bound, "peak_of_copy_bw": peak, "records": records + [protocols]}


def tables(result: dict) -> str:
    """The ensemble table: per size and layout, step time, variant-steps/s, speed-up, fraction of copy bandwidth."""
    rows = []
    throughput = [r for r in result["records"] if r["id"] != "ensemble_protocols"]
    p = next(r for r in result["records"] if r["id"] == "ensemble_protocols")
    for rec in throughput:
        for r in rec["rows"]:
            best = r["layout"] == rec["best_layout"]
            mark = (lambda s: f"**{s}**") if best and rec["variants"] > 1 else str
            rows.append([rec["variants"], r["layout"], f"{r['step_s'] * 1e3:.1f}",
                         mark(f"{r['variant_steps_per_s']:.2f}"),
                         f"{r['dof_steps_per_s'] / 1e6:.1f}", f"{r['speedup_vs_single']:.2f}x",
                         f"{r['of_copy_bw']:.0%}"])
    nodes = throughput[0]["nodes"]
    head = (f"Coarse occipital phantom, {nodes} nodes, {throughput[0]['rows'][0]['stages']} RKL2 stages per "
            f"step, on {result['backend']} ({result['device']}); copy bandwidth "
            f"{result['copy_bandwidth_Bps'] / 1e9:.2f} GB/s. Bandwidth bound (within 20 % of the peak "
            f"{result['peak_of_copy_bw']:.0%} of copy bandwidth) from B = {result['bandwidth_bound_from_B']}. "
            "Bold: the faster layout.\n")
    tail = (f"\n\n**Real protocols** ({p['variants']} variants of a {p['nodes']}-node nerve slab, freezes of 30-120 s "
            f"at -40 and -70 °C then a thaw; {p['steps_min']}-{p['steps_max']} steps each): one ensemble "
            f"{p['ensemble_s']:.2f} s, one by one {p['one_by_one_s']:.2f} s, **{p['speedup']:.2f}x**; "
            f"{p['stage_utilisation']:.0%} of the passes' stage slots did a variant's own stage; largest difference "
            f"from the single runs {p['largest_difference']:.1e}.")
    return head + "\n" + markdown_table(["B", "layout", "step ms", "variant-steps/s", "M DOF-steps/s", "vs B = 1",
                                         "of copy bw"], rows) + tail
