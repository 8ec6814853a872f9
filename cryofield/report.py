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
    if "clinical" in s:
        print_clinical(s["clinical"])
    for note in report.notes:
        print(f"note: {note}")
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")


def print_clinical(c: dict) -> None:
    """Nerve minimum temperature and lesion lengths, skin and vessel safety (see :mod:`cryofield.clinical`)."""
    print("clinical (minimum over the run; lesion length along the nerve: whole cross-section / any part):")
    for name, n in c["nerves"].items():
        lengths = "   ".join(f"<={lvl} C: {v['whole_section_mm']:.1f} / {v['any_part_mm']:.1f} mm"
                               for lvl, v in n["lesion_length"].items())
        block = "yes" if n["durable_block"] else "no"
        print(f"  nerve {name:<8} min {n['min_temperature_C']:7.1f} C   {lengths}   "
              f"durable block (>= {c['durable_block_mm']:g} mm at {c['thresholds_C'][0]:g} C): {block}")
    if "skin" in c:
        print(f"  skin           min {c['skin']['min_temperature_C']:7.1f} C   "
              f"{'FROZE' if c['skin']['froze'] else 'did not freeze'}")
    for name, v in c["vessels"].items():
        state = "FROZE" if v["froze"] else "did not freeze"
        risk = ", thrombosis risk" if v["thrombosis_risk"] else ""
        print(f"  vessel {name:<7} min {v['min_temperature_C']:7.1f} C   {state}{risk}")
