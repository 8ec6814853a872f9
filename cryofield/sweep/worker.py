"""What runs on a worker: one variant, start to finish, and its row of the results table.

:func:`run_variant` validates the variant's case again (on the worker), runs it with
:func:`~cryofield.run.runner.run_case` into its own directory without a progress bar or pictures, reads the
clinical outcome off the run's summary (:func:`outcomes`) and writes the row to ``row.json`` atomically,
last. A variant that fails by its own input (:class:`~cryofield.errors.InputError`: a probe that cannot be
placed, unstable solver settings) or by any other error of the run gives a row with ``status: failed`` and
the message; only running out of memory is raised, so that the scheduler retries it elsewhere.

Columns of a row (besides the axes, which the client adds): ``status`` (``ok``, ``failed``), ``error`` and
``error_key``, ``attempts`` (how many times a worker started the variant), ``wall_s`` (the whole variant on
the worker; for an ensemble, the whole ensemble's), ``ensemble`` (how many variants stepped together),
``setup_s``, ``compile_s``, ``solver_s`` (time stepping), ``steps``, ``nodes``, ``backend``,
``device``, ``worker``, ``started_at``, ``finished_at``; and the outcomes:

* per nerve ``N``: ``nerve.N.min_temperature_C``, ``nerve.N.lesion_whole_LEVEL_mm`` and
  ``nerve.N.lesion_any_LEVEL_mm`` at each lesion level (``m20C`` is −20 °C; whole cross-section and any
  part, :mod:`cryofield.outcomes.clinical`), ``nerve.N.durable_block``;
* ``skin.min_temperature_C``, ``skin.froze``, ``skin.melanocyte_damage``; per vessel ``V``:
  ``vessel.V.min_temperature_C``, ``vessel.V.froze``, ``vessel.V.thrombosis_risk``;
* ``volume_below_LEVEL_mm3``: the largest volume at or below each isotherm;
* aggregates over the target nerve (``target_nerve`` of the sweep, else every nerve): ``durable_block``
  (any), ``lesion_whole_mm`` and ``lesion_any_mm`` (longest, at the injury level), ``nerve_min_temperature_C``
  (coldest); ``skin_froze``, ``skin_melanocyte_damage``, ``artery_froze``, ``artery_thrombosis_risk``
  (any vessel) and ``artery_min_temperature_C``; ``durable_block_mm``, the threshold.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryofield.outcomes.summary import RunSummary

ROW_FILE = "row.json"
ATTEMPTS_FILE = ".attempts"


def run_variant(task: dict[str, Any]) -> dict[str, Any]:
    """Run one variant (``task`` from :func:`cryofield.sweep.execute.run_sweep`) and return its row.

    ``task`` keys: ``index``, ``key``, ``dir`` (its output directory), ``case_yaml``, ``source`` and
    ``base_dir`` (for :func:`~cryofield.config.case.parse_case`), ``backend``, ``threads`` (solver threads, or
    None to leave them), ``target_nerve``, ``run`` (which run of the sweep command this is).
    """
    from cryofield.config.case import parse_case
    from cryofield.run.runner import run_case

    t0, row = time.perf_counter(), _start(task)
    try:
        case = parse_case(task["case_yaml"], source=task["source"], base_dir=task["base_dir"])
        outcome = run_case(case, Path(task["dir"]), backend=task.get("backend"), progress=False)
    except MemoryError:
        raise  # the scheduler retries it (on another worker)
    except Exception as exc:  # a variant's failure must not stop the sweep
        outcome = exc
    return _finish(task, row | {"ensemble": 1}, outcome, t0)


def run_variants(job: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run the variants of ``job`` (tasks as :func:`run_variant` takes) as one ensemble
    (:func:`cryofield.run.ensemble.run_ensemble`); their rows. A variant that does not share the first one's
    mesh after all runs on its own; one of bad input gets its failed row, as alone."""
    from cryofield.config.case import parse_case
    from cryofield.errors import InputError
    from cryofield.run.ensemble import run_ensemble

    if len(job) == 1:
        return [run_variant(job[0])]
    t0, rows, cases, members = time.perf_counter(), {}, [], []
    _set_threads(job[0].get("threads"))
    for task in job:
        rows[task["key"]] = _start(task)
        try:
            cases.append(parse_case(task["case_yaml"], source=task["source"], base_dir=task["base_dir"]))
            members.append(task)
        except InputError as exc:
            rows[task["key"]] = _finish(task, rows[task["key"]], exc, t0)
    report = run_ensemble(cases, [Path(t["dir"]) for t in members], backend=job[0].get("backend"))
    alone = []
    for task, outcome, size in zip(members, report.results, report.ensemble_of):
        if isinstance(outcome, InputError) and outcome.key == "mesh":
            alone.append(task)
            continue
        if isinstance(outcome, MemoryError):
            raise outcome
        extra = {"ensemble": size} | ({"ensemble_note": "; ".join(report.notes)} if report.notes else {})
        rows[task["key"]] = _finish(task, rows[task["key"]] | extra, outcome, t0)
    for task in alone:
        rows[task["key"]] = run_variant(task)
    return [rows[task["key"]] for task in job]


def _start(task: dict[str, Any]) -> dict[str, Any]:
    """The first columns of a variant's row; counts the attempt and sets the solver threads."""
    out = Path(task["dir"])
    out.mkdir(parents=True, exist_ok=True)
    _set_threads(task.get("threads"))
    return {"key": task["key"], "run": task.get("run"), "attempts": _count_attempt(out),
            "worker": f"{socket.gethostname()}:{os.getpid()}", "started_at": _now()}


def _finish(task: dict[str, Any], row: dict[str, Any], outcome: Any, t0: float) -> dict[str, Any]:
    """The row of a finished variant (``outcome``: its run's report, or the exception it failed with), written
    to its directory."""
    from cryofield.errors import InputError

    if isinstance(outcome, InputError):
        row |= {"status": "failed", "error": outcome.message, "error_key": outcome.key}
    elif isinstance(outcome, BaseException):
        row |= {"status": "failed", "error": f"{type(outcome).__name__}: {outcome}", "error_key": None}
    else:
        try:
            row |= {"status": "ok", "error": None, "error_key": None} | outcomes(outcome.summary,
                                                                                 task.get("target_nerve"))
        except InputError as exc:
            row |= {"status": "failed", "error": exc.message, "error_key": exc.key}
    row["wall_s"] = round(time.perf_counter() - t0, 4)
    row["finished_at"] = _now()
    write_row(Path(task["dir"]), row)
    return row


def outcomes(summary: RunSummary, target_nerve: str | None = None) -> dict[str, Any]:
    """The row's columns read off a run's JSON summary (see the module doc).

    Raises
    ------
    InputError
        When ``target_nerve`` is not one of the run's nerves.
    """
    from cryofield.errors import InputError
    from cryofield.model.roles import threshold_label

    t = summary["timings_s"]
    row: dict[str, Any] = {
        "backend": summary["backend"], "device": summary["device"], "nodes": summary["nodes"],
        "steps": summary["time_step"]["steps"], "setup_s": t.get("setup_s"), "compile_s": t.get("compile_s"),
        "solver_s": t.get("stepping_s")}
    for level, volume in summary["total_volume_below_mm3"].items():
        row[f"volume_below_{threshold_label(float(level))}_mm3"] = volume
    clinical = summary.get("clinical")
    if not clinical:
        return row
    nerves = clinical["nerves"]
    if target_nerve is not None and target_nerve not in nerves:
        raise InputError(f"target_nerve '{target_nerve}' is not a nerve of this case (its nerves: "
                         f"{', '.join(nerves) or 'none'})", key="target_nerve")
    injury = f"{clinical['thresholds_C'][0]:g}"
    for name, n in nerves.items():
        row[f"nerve.{name}.min_temperature_C"] = n["min_temperature_C"]
        for level, lengths in n["lesion_length"].items():
            label = threshold_label(float(level))
            row[f"nerve.{name}.lesion_whole_{label}_mm"] = lengths["whole_section_mm"]
            row[f"nerve.{name}.lesion_any_{label}_mm"] = lengths["any_part_mm"]
        row[f"nerve.{name}.durable_block"] = bool(n["durable_block"])
        row |= fibre_columns(name, n.get("fibres"))
    chosen = [nerves[target_nerve]] if target_nerve else [n for n in nerves.values() if n.get("target", True)]
    chosen = chosen or list(nerves.values())
    read = [n["fibres"] for n in chosen if n.get("fibres")]
    if read:  # the fibre reading of the target nerve(s): the headline of a sweep
        row |= {"complete_block": any(f["verdict"] == "complete" for f in read),
                "partial_block": any(f["verdict"] != "none" for f in read),
                "injured_fraction": max(f["injured_fraction"] for f in read)}
    row |= {"durable_block": any(n["durable_block"] for n in chosen),
            "lesion_whole_mm": max(n["lesion_length"][injury]["whole_section_mm"] for n in chosen),
            "lesion_any_mm": max(n["lesion_length"][injury]["any_part_mm"] for n in chosen),
            "nerve_min_temperature_C": min(n["min_temperature_C"] for n in chosen),
            "durable_block_mm": clinical["durable_block_mm"]}
    if "skin" in clinical:
        skin = clinical["skin"]
        row |= {"skin.min_temperature_C": skin["min_temperature_C"], "skin.froze": bool(skin["froze"]),
                "skin.melanocyte_damage": bool(skin["melanocyte_damage"]),
                "skin_froze": bool(skin["froze"]), "skin_melanocyte_damage": bool(skin["melanocyte_damage"])}
    vessels = clinical.get("vessels", {})
    for name, v in vessels.items():
        row |= {f"vessel.{name}.min_temperature_C": v["min_temperature_C"], f"vessel.{name}.froze": bool(v["froze"]),
                f"vessel.{name}.thrombosis_risk": bool(v["thrombosis_risk"])}
    if vessels:
        row |= {"artery_froze": any(v["froze"] for v in vessels.values()),
                "artery_thrombosis_risk": any(v["thrombosis_risk"] for v in vessels.values()),
                "artery_min_temperature_C": min(v["min_temperature_C"] for v in vessels.values())}
    return row


def read_row(directory: Path) -> dict[str, Any] | None:
    """The row a variant's directory holds, or None (not run, or not finished)."""
    try:
        return json.loads((Path(directory) / ROW_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_row(directory: Path, row: dict[str, Any]) -> None:
    """Write ``row.json`` under a temporary name and rename it into place."""
    path = Path(directory) / ROW_FILE
    tmp = path.with_name(f".{ROW_FILE}.{os.getpid()}.partial")
    tmp.write_text(json.dumps(row, indent=1, default=str))
    os.replace(tmp, path)


def _count_attempt(directory: Path) -> int:
    """Record one more start of this variant; returns how many there have been (this one included)."""
    with open(directory / ATTEMPTS_FILE, "a+") as f:
        f.write(f"{_now()} {socket.gethostname()}:{os.getpid()}\n")
        f.flush()
        f.seek(0)
        return sum(1 for line in f if line.strip())


def _set_threads(threads: int | None) -> None:
    if threads:
        import numba

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def fibre_columns(nerve: str, fibres: dict | None) -> dict[str, Any]:
    """A nerve's fibre-reading columns: its injured fraction at the injury level and at each level read, and
    its verdict (none when the run read no fibres)."""
    from cryofield.model.roles import threshold_label

    if not fibres:
        return {}
    out: dict[str, Any] = {f"nerve.{nerve}.injured_fraction": fibres["injured_fraction"],
                           f"nerve.{nerve}.verdict": fibres["verdict"]}
    for level, fraction in fibres["injured_fraction_by_level"].items():
        out[f"nerve.{nerve}.injured_fraction_{threshold_label(float(level))}"] = fraction
    return out
