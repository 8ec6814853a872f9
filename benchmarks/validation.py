"""Validation: predicted ice balls against published experiments (``cryofield bench validation``).

Each experiment is a case under ``cases/validation/`` whose description says where the numbers come from,
what was measured and what had to be assumed (and why). The suite runs each case as published in the
repository (axisymmetric), reads the quantity the paper reports from the run's ice-ball metrics
(:mod:`cryofield.run.observers.iceball`: width at mid active length, length along the probe, per isotherm) and prints
predicted against measured with the difference. Agreement is reported, not tuned: no parameter is fitted.

What the abstracts leave open is run as a range, not chosen: Littrup et al. report averages over phantoms at
about 6, 24 and 39 °C, so every baseline runs, and the probe's surface temperature (not reported) runs at
the assumed -140 °C and at -100 °C. The full mode also runs each case in 3-D (quarter symmetry) for the
wall time and the axisymmetric-against-3-D difference on a validation problem. Quick mode runs the
axisymmetric cases at the published baseline only, on coarser meshes.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from cryofield.config.case import parse_case
from cryofield.run.runner import run_case

from .common import REPO, markdown_table
from .compare import figure

CASES = REPO / "cases" / "validation"
#: Mesh sizes (mm at the probe, far away) of the runs per mode and geometry.
MESHES = {("quick", "axisymmetric"): (0.2, 2.0), ("full", "axisymmetric"): (0.1, 1.5),
          ("full", "quarter"): (0.2, 3.0)}


@dataclass(frozen=True)
class Experiment:
    """One published measurement and the cases that predict it.

    ``quantity`` is an ice-ball metric (``width``, ``length``) at ``level`` (°C) at the end of the run;
    with ``reference`` the comparison is the ratio of this case's quantity to the reference case's.
    """

    id: str
    source: str
    case: str
    quantity: str
    level: float
    measured: float
    unit: str
    reference: str | None = None
    measured_as: str = "value"  # "value", or "at most" for a bound the paper states ("up to")


EXPERIMENTS = [
    Experiment("littrup2009_2.4mm", "Littrup et al., J Vasc Interv Radiol 2009;20:1343", "littrup2009_2.4mm",
               "width", -30.0, 12.0, "mm"),
    Experiment("littrup2009_1.7mm", "Littrup et al. 2009 (84 % of the 2.4 mm probes' diameter)", "littrup2009_1.7mm",
               "width", -30.0, 0.84 * 12.0, "mm"),
    Experiment("said_width_14g_vs_18g", "Said et al. (Ilfeld group), ex-vivo meat, ultrasound",
               "said_cryoneurolysis_14g", "width", 0.0, 1.70, "ratio", reference="said_cryoneurolysis_18g",
               measured_as="at most"),
    Experiment("said_length_14g_vs_18g", "Said et al. (Ilfeld group), ex-vivo meat, ultrasound",
               "said_cryoneurolysis_14g", "length", 0.0, 2.13, "ratio", reference="said_cryoneurolysis_18g",
               measured_as="at most"),
]
#: Baselines (°C) of the phantoms whose average a measurement is, and the probe temperatures (the first the
#: case's own) of a case whose probe temperature is assumed: run besides the case as written.
BASELINES = {"littrup2009_2.4mm": [6.0, 24.0, 39.0], "littrup2009_1.7mm": [6.0, 24.0, 39.0]}
PROBE_TEMPERATURES = {"littrup2009_2.4mm": [-140.0, -100.0], "littrup2009_1.7mm": [-140.0, -100.0]}


def variant(name: str, symmetry: str, mesh: tuple[float, float], baseline: float | None = None,
            probe_c: float | None = None) -> str:
    """The YAML of case ``name`` in ``symmetry`` on ``mesh``, its baseline and its probe's plateau changed."""
    data = yaml.safe_load((CASES / f"{name}.yaml").read_text())
    gen = data["mesh"]["generate"]
    gen["symmetry"], (gen["size_at_probe"], gen["size_far"]) = symmetry, mesh
    if baseline is not None:  # the phantom, its fixed faces and the probe's starting point
        data["initial"]["temperature"] = baseline
        for bc in data["boundaries"]:
            if bc["type"] == "fixed":
                bc["temperature"] = baseline
    for phase in data["protocol"]:
        table = phase.get("temperature", {}).get("table") if isinstance(phase.get("temperature"), dict) else None
        if table is not None:
            if baseline is not None:
                table[0][1] = baseline
            if probe_c is not None:
                for row in table[1:]:
                    row[1] = probe_c
    data["name"] = name
    return yaml.safe_dump(data, sort_keys=False)


def run_one(text: str, out: Path) -> dict:
    """Run a case; its final ice-ball metrics (mm) per isotherm and the wall time."""
    case = parse_case(text, source=case_name(text))
    t0 = time.perf_counter()
    report = run_case(case, out, progress=False)
    wall = time.perf_counter() - t0
    shape = report.summary["iceball_mm"]["probe"]
    return {"wall_s": wall, "nodes": report.summary["nodes"], "shape": shape}


def case_name(text: str) -> str:
    return str(yaml.safe_load(text)["name"])


def predicted(runs: dict, experiment: Experiment, key: tuple) -> float:
    """The experiment's quantity from the runs at ``key`` (symmetry, baseline, probe temperature)."""
    level = f"{experiment.level:g}"
    value = runs[(experiment.case, *key)]["shape"][level][experiment.quantity]
    if experiment.reference is not None:
        value /= runs[(experiment.reference, *key)]["shape"][level][experiment.quantity]
    return value


def run(quick: bool, backend: str) -> dict:
    """Every experiment's cases in each setting; records of predicted against measured."""
    mode = "quick" if quick else "full"
    names = sorted({e.case for e in EXPERIMENTS} | {e.reference for e in EXPERIMENTS if e.reference})
    settings = []  # (name, symmetry, baseline, probe temperature); None: as the case is written
    for name in names:
        settings.append((name, "axisymmetric", None, None))
        if quick:
            continue
        written = yaml.safe_load((CASES / f"{name}.yaml").read_text())["initial"]["temperature"]
        settings += [(name, "axisymmetric", b, None) for b in BASELINES.get(name, []) if b != written]
        settings += [(name, "axisymmetric", None, t) for t in PROBE_TEMPERATURES.get(name, [])[1:]]
        settings.append((name, "quarter", None, None))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, symmetry, baseline, probe_c) in enumerate(settings):
            text = variant(name, symmetry, MESHES[(mode, symmetry)], baseline, probe_c)
            runs[(name, symmetry, baseline, probe_c)] = run_one(text, Path(tmp) / str(k))
            print(f"  {name} {symmetry} baseline {baseline} probe {probe_c}: "
                  f"{runs[(name, symmetry, baseline, probe_c)]['wall_s']:.0f} s", flush=True)
    records = []
    for e in EXPERIMENTS:
        keys = [k[1:] for k in runs if k[0] == e.case and (e.reference is None or (e.reference, *k[1:]) in runs)]
        rows = [{"symmetry": s, "baseline": b, "probe_C": p, "predicted": predicted(runs, e, (s, b, p)),
                 "wall_s": runs[(e.case, s, b, p)]["wall_s"], "nodes": runs[(e.case, s, b, p)]["nodes"]}
                for s, b, p in keys]
        published = next(r for r in rows if r["symmetry"] == "axisymmetric" and r["baseline"] is None
                         and r["probe_C"] is None)
        difference = published["predicted"] / e.measured - 1.0
        records.append({"id": e.id, "source": e.source, "quantity": f"{e.quantity} at {e.level:g} °C",
                        "measured": e.measured, "measured_as": e.measured_as, "unit": e.unit, "rows": rows,
                        "predicted": published["predicted"], "difference": difference,
                        "range": [min(r["predicted"] for r in rows if r["symmetry"] == "axisymmetric"),
                                  max(r["predicted"] for r in rows if r["symmetry"] == "axisymmetric")],
                        "figures": {"abs_difference": figure(abs(difference), "error")}})
    return {"backend": backend, "records": records}


def tables(result: dict) -> str:
    """Predicted against measured per experiment, then every run's prediction and wall time."""
    rows, detail = [], []
    for r in result["records"]:
        lo, hi = r["range"]
        unit = "" if r["unit"] == "ratio" else f" {r['unit']}"
        measured = f"{'≤ ' if r['measured_as'] == 'at most' else ''}{r['measured']:.3g}{unit}"
        if r["measured_as"] == "at most":  # a bound: within it, or by how much beyond
            difference = "within the bound" if r["difference"] <= 0 else f"{r['difference']:+.0%} beyond the bound"
        else:
            difference = f"{r['difference']:+.0%}"
        rows.append([r["id"], r["quantity"], measured, f"{r['predicted']:.3g}{unit}", difference,
                     f"{lo:.3g}–{hi:.3g}{unit}", r["source"]])
        for row in r["rows"]:
            setting = ", ".join(filter(None, [row["symmetry"], None if row["baseline"] is None else
                                              f"baseline {row['baseline']:g} °C", None if row["probe_C"] is None else
                                              f"probe {row['probe_C']:g} °C"]))
            detail.append([r["id"], setting or "as published", row["nodes"], f"{row['predicted']:.3g}{unit}",
                           f"{row['wall_s']:.1f}"])
    return (markdown_table(["experiment", "quantity", "measured", "predicted (case as published)", "difference",
                            "range over the open inputs", "source"], rows)
            + "\n\nEvery run (axisymmetric unless said; `quarter`: the 3-D quarter domain):\n\n"
            + markdown_table(["experiment", "setting", "nodes", "predicted", "wall s"], detail))
