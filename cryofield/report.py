"""The short human summary printed at the end of a run."""

from __future__ import annotations


def print_summary(report) -> None:
    """Print where the results are and what the freeze did, region by region."""
    s = report.summary
    print(f"\n{s['case']}: {s['nodes']} nodes, {s['simulated_time_s']:g} s simulated on {s['backend']} "
          f"({s['device']}; {s['backend_chosen_by']}), {s['time_step']['steps']} steps, "
          f"{s['throughput']['dof_steps_per_s'] / 1e6:.2f} M DOF-steps/s")
    t = s["timings_s"]
    print(f"wall: setup {t['setup_s']:.2f} s, basal {t['basal_s']:.2f} s, compile {t['compile_s']:.2f} s, "
          f"stepping {t['stepping_s']:.2f} s, output {t['output_s']:.2f} s")
    levels = list(s["total_volume_below_mm3"])
    head = "".join(f"{'V<=' + lvl + 'C mm3':>14}" for lvl in levels)
    print(f"{'region':<22}{'min T C':>10}{head}")
    for name, r in s["regions"].items():
        vols = "".join(f"{r['max_volume_below_mm3'][lvl]:>14.1f}" for lvl in levels)
        print(f"{name:<22}{r['min_temperature_C']:>10.1f}{vols}")
    for note in report.notes:
        print(f"note: {note}")
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")
