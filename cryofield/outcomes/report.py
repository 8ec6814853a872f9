"""The short human summary printed at the end of a run."""

from __future__ import annotations

from cryofield.outcomes.summary import ClinicalSummary, FibreSummary, RunSummary


def print_summary(report) -> None:
    """Print where the results are and what the freeze did, region by region."""
    s: RunSummary = report.summary
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
    if s.get("devices"):
        print_devices(s["devices"])
    for note in report.notes:
        print(f"note: {note}")
    for kind, path in report.paths.items():
        print(f"{kind}: {path}")


def print_clinical(c: ClinicalSummary) -> None:
    """Per nerve: minimum temperature, time at the injury level, lesion lengths, injury grades, durable block
    and recovery forecast; skin, vessel-wall safety; off-target frozen and damaged volumes
    (see :mod:`cryofield.outcomes.clinical`)."""
    injury = c["thresholds_C"][0]
    print("clinical (minimum over the run; lengths along the nerve: whole cross-section / any part):")
    for name, n in c["nerves"].items():
        timed = f", {n['max_time_below_injury_s']:.0f} s at <= {injury:g} C" if "max_time_below_injury_s" in n else ""
        target = " (target)" if n.get("target") else ""
        print(f"  nerve {name}{target}: min {n['min_temperature_C']:.1f} C{timed}")
        if n["min_temperature_C"] > c["thresholds"].get("neurapraxia_c", 10.0):
            continue
        lengths = "   ".join(f"<={lvl} C: {v['whole_section_mm']:.1f} / {v['any_part_mm']:.1f} mm"
                               for lvl, v in n["lesion_length"].items())
        print(f"      {lengths}")
        if "grades" in n:
            g = n["grades"]
            axon = g["axonotmesis"]
            print(f"      grades (any part): neurapraxia {g['neurapraxia']['any_part_mm']:.1f} mm, axonotmesis "
                  f"{axon['any_part_mm']:.1f} mm (whole section {axon['whole_section_mm']:.1f}), "
                  f"neurotmesis {g['neurotmesis']['any_part_mm']:.1f} mm")
        block = "yes" if n["durable_block"] else "no"
        line = f"      durable block (>= {c['durable_block_mm']:g} mm whole section at {injury:g} C): {block}"
        recovery = n.get("recovery") or {}
        if recovery.get("weeks"):
            lo, hi = recovery["weeks"]
            slow, fast = recovery["regrowth_mm_per_day"]
            line += (f"; block expected for {lo:.0f}-{hi:.0f} weeks ({recovery['distance_mm']:.0f} mm to the end organ "
                     f"at {slow:g}-{fast:g} mm/day)")
        print(line)
        if "fibres" in n:
            print_fibres(n["fibres"])
    limits = c.get("thresholds", {})
    if "skin" in c:
        print(f"  skin: {c['skin']['reading']}")
    for name, v in c["vessels"].items():
        print(f"  vessel {name}: {v['reading']}")
    frozen = {k: v for k, v in c.get("off_target_frozen_mm3", {}).items() if v > 0.05}
    if "off_target_frozen_mm3" in c:
        listed = ", ".join(f"{k} {v:.1f}" for k, v in frozen.items()) or "none"
        print(f"  off-target frozen volume (mm3): {listed}")
    if "damage" in c:
        d = c["damage"]
        listed = ", ".join(f"{k} {d['damaged_mm3'][k]:.1f} / {d['necrotic_mm3'][k]:.1f}" for k in d["damaged_mm3"]
                           if d["damaged_mm3"][k] > 0.05) or "none"
        print(f"  threshold damage (damaged / necrotic mm3, > {limits.get('damage_s', 50):g} s at "
              f"<= {limits.get('damage_c', 0):g} C, or <= {limits.get('necrosis_c', -20):g} C): {listed}")


def print_fibres(f: FibreSummary) -> None:
    """A nerve's fibre reading: the injured fraction at each level, the verdict at the injury level with the
    grades of the fibres, and the forecast of sensory return."""
    levels = f["injured_fraction_by_level"]
    print(f"      fibres ({f['fibres']}, equal areas) injured at {' / '.join(levels)} C: "
          f"{' / '.join(f'{100 * v:.0f}' for v in levels.values())} %")
    g = f["grades"]
    print(f"      block at {f['injury_c']:g} C: {f['verdict'].upper()}, {100 * f['injured_fraction']:.0f} % of the "
          f"fibres (complete from {100 * f['complete_fraction']:.0f} %); grades: neurapraxia "
          f"{100 * g['neurapraxia']:.0f} %, axonotmesis {100 * g['axonotmesis']:.0f} %, neurotmesis "
          f"{100 * g['neurotmesis']:.0f} %")
    relief = f.get("relief") or {}
    if relief.get("weeks"):
        lo, hi = relief["weeks"]
        slow, fast = relief["regrowth_mm_per_day"]
        print(f"      sensory return expected in {lo:.0f}-{hi:.0f} weeks ({relief['distance_mm']:.0f} mm from the "
              f"lesion to the end of the territory at {slow:g}-{fast:g} mm/day; a forecast of sensation, not of pain)")
    elif relief.get("reason"):
        print(f"      no forecast of sensory return: {relief['reason']}")


def print_devices(devices: dict) -> None:
    """One line per device model: what it is and what it did (the models of :mod:`cryofield.model.boundaries`)."""
    print("devices:")
    for name, d in devices.items():
        kind = d.get("model", "")
        if kind == "controlled":
            held = f"held within {d['settled_error_K']:.2f} K" if "settled_error_K" in d else "no set point"
            left = f", cartridge {100 * d['cartridge_left']:.0f} % left" if "cartridge_left" in d else ""
            what = (f"{d['cryogen']} at {d['cryogen_temperature_C']:g} C, sensor {d['sensor']}, {held} "
                    f"(2nd half of each freeze), mean flow {d.get('mean_flow', 0):.2f}, cooling "
                    f"{d['cooling_delivered_J']:.1f} J, heating {d['heating_delivered_J']:.1f} J{left}")
        elif kind == "cryogen":
            what = (f"{d['cryogen']} at {d['cryogen_temperature_C']:g} C, h {d['heat_transfer_coefficient_W_m2K']:.3g} "
                    f"W/m2/K, cooling {d['cooling_delivered_J']:.1f} J")
        elif kind == "warmer":
            what = (f"on {d['surface']} at {d['temperature_C']:g} C: {d['heat_delivered_J']:.1f} J delivered, "
                    f"peak {d['max_power_W']:.3g} W")
        elif kind == "vessel":
            what = (f"on {d['surface']}, {d['diameter_mm']:.2f} mm, Re {d['reynolds']:.0f}, Nu {d['nusselt']:.1f}, "
                    f"h {d['heat_transfer_coefficient_W_m2K']:.3g} W/m2/K: {d['heat_delivered_J']:.1f} J into the "
                    "tissue")
        else:
            what = ", ".join(f"{k} {v}" for k, v in d.items() if k != "model")
        print(f"  {name:<14} {kind:<10} {what}")
