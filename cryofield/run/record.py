"""What a run records besides its observers' own output: the result's attributes, its setup (the case, the
mesh, the roles, the protocol), the timings and the devices' series, and the JSON summary assembled from
the run's own entries and its observers' (:meth:`cryofield.run.driver.Observer.summary`).

:func:`dose_levels` says which levels the dose tracker follows: the case's and those the clinical reading needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cryofield.config.case import Case, case_to_yaml
from cryofield.io.results import ResultWriter
from cryofield.model.curves import varies
from cryofield.version import __version__

if TYPE_CHECKING:
    from cryofield.backends import Backend
    from cryofield.problem.assemble import Problem
    from cryofield.run.checkpoint import Checkpointing, Saved
    from cryofield.run.driver import Observer, RunState
    from cryofield.run.plan import Plan
    from cryofield.timestepping.stepper import Stepper


def result_attributes(case: Case, backend: Backend) -> dict:
    """Root attributes of the result: what ran, where and how."""
    return {"cryofield_version": __version__, "case_name": case.name, "backend": backend.name,
            "device": backend.device_name, "precision": case.solver.precision, "scheme": case.solver.scheme,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_setup(writer: ResultWriter, plan: Plan) -> None:
    """The case (validated and as written), the mesh, the roles and the protocol table."""
    case, problem, mesh = plan.case, plan.problem, plan.problem.mesh
    writer.write_text("case", case_to_yaml(case))
    writer.write_text("case_source", Path(case.source).read_text() if Path(case.source).is_file() else "")
    surfaces = {s: mesh.surface_facets(s) for s in mesh.surfaces}
    writer.write_mesh(mesh.points, mesh.tets, problem.elem_mat, problem.region_names, surfaces,
                      {p.name: p.nodes for p in problem.probes}, problem.original_index, mesh.metadata)
    writer.write_roles(plan.roles, plan.clinical_inputs())
    table = plan.timeline.phases
    writer.write_arrays("protocol", {
        "kind": np.array([p.kind for p in table], dtype="S16"), "start": np.array([p.start for p in table]),
        "end": np.array([p.end for p in table]),
        "probe_temperature": np.array([np.nan if p.set_point(p.start) is None else p.set_point(p.start)
                                       for p in table], float),
        "power": np.array([np.nan if p.heater_power(p.start) is None else p.heater_power(p.start) for p in table],
                          float)},
        {"curves": json.dumps({str(p.index): {k: v.model_dump() for k, v in (("temperature", p.probe_temperature),
                                                                               ("power", p.power)) if varies(v)}
                               for p in table if p.varies})})


def write_timings(writer: ResultWriter, run: RunState, timings: dict) -> None:
    """``/timings``: the seconds of each stage of the run and the stepper's counters."""
    stats = run.stepper.stats
    writer.write_arrays("timings", {}, {k: float(v) for k, v in timings.items()}
                        | {"steps": stats.steps, "operator_applications": stats.operator_applications,
                           "equivalent_applications": stats.equivalent_applications})


def write_devices(writer: ResultWriter, problem: Problem) -> None:
    """``/devices/NAME``: the series each device model recorded after every step (:func:`device_models`)."""
    for name, model in device_models(problem).items():
        writer.write_arrays(f"devices/{name}", model.records(), {
            "model": model.kind, "surface": model.surface.name, "summary": json.dumps(model.summary())})


def device_models(problem: Problem) -> dict:
    """The boundary models that keep time series (controllers, heaters, vessels), by the name of their probe
    (or surface), as the result's ``/devices`` and the summary's ``devices`` name them."""
    out = {}
    for model in problem.boundaries.devices():
        name, k = model.context.name, 2
        while name in out:
            name, k = f"{model.context.name}_{k}", k + 1
        out[name] = model
    return out


def summarize(plan: Plan, backend: Backend, run: RunState, observers: Sequence[Observer], timings: dict) -> dict:
    """The run's JSON summary: what ran and how fast, each observer's entries (:func:`merge`d in their order),
    the mesh notes and the devices' summaries."""
    summary = run_entries(plan, backend, run, timings)
    for observer in observers:
        merge(summary, observer.summary(run) or {})
    summary["mesh_notes"] = list(plan.problem.mesh.notes)
    devices = {name: model.summary() for name, model in device_models(plan.problem).items()}
    if devices:
        summary["devices"] = devices
    return summary


def run_entries(plan: Plan, backend: Backend, run: RunState, timings: dict) -> dict:
    """The summary's entries about the run itself: the case, where it ran, the mesh, the steps, the timings."""
    case, problem, stats = plan.case, plan.problem, run.stepper.stats
    return {
        "case": case.name, "cryofield_version": __version__, "backend": backend.name,
        "device": backend.device_name, "backend_chosen_by": backend.chosen_by, "precision": case.solver.precision,
        "backend_diagnostics": backend.diagnostics(),
        "scheme": case.solver.scheme, "nodes": problem.n_nodes, "elements": problem.n_elems,
        "axisymmetric": problem.axisymmetric,
        "simulated_time_s": case.duration,
        "time_step": {"forward_euler_limit_s": plan.dt_fe, "max_dt_s": case.solver.max_dt,
                      "max_change_K": case.solver.max_change, "tolerance_K": case.solver.tolerance,
                      "steps": stats.steps,
                      "rejected_steps": stats.rejected, "operator_applications": stats.operator_applications,
                      "full_mesh_equivalent_applications": stats.equivalent_applications},
        "timings_s": {k: round(float(v), 4) for k, v in timings.items()},
        "throughput": {"dof_steps_per_s": problem.n_nodes * stats.equivalent_applications
                       / max(timings["stepping_s"], 1e-12)},
    }


def checkpoint_entry(saving: Checkpointing | None, saved: Saved | None) -> dict:
    """The summary's ``checkpoints``: what the run saved, and where it resumed from."""
    report = {"enabled": False, "why": "a member of an ensemble"} if saving is None else saving.report()
    return report | {"resumed_from_t_s": None if saved is None else float(saved.stepper["t"])}


def ensemble_entry(stepper: Stepper) -> dict:
    """The summary's ``ensemble``: how many variants the run's stepper advanced together, and its lane."""
    return {"variants": stepper.ensemble.size, "variant": stepper.variant,
            "layout": "variant fastest" if stepper.dp.variant_fastest else "node fastest"}


def merge(summary: dict, entries: dict, path: str = "") -> dict:
    """Merge ``entries`` into ``summary`` in place, dicts key by key; a value set twice is an error.

    Examples
    --------
    >>> merge({"regions": {"nerve": {"min_temperature_C": -30.0}}},
    ...       {"regions": {"nerve": {"max_volume_below_mm3": {"0": 12.5}}}, "probes": {}})
    {'regions': {'nerve': {'min_temperature_C': -30.0, 'max_volume_below_mm3': {'0': 12.5}}}, 'probes': {}}
    >>> merge({"probes": {}}, {"probes": 1})
    Traceback (most recent call last):
    ...
    ValueError: the summary entry probes is written twice
    """
    for key, value in entries.items():
        where = f"{path}{key}"
        if key not in summary:
            summary[key] = merge({}, value, f"{where}.") if isinstance(value, dict) else value
        elif isinstance(value, dict) and isinstance(summary[key], dict):
            merge(summary[key], value, f"{where}.")
        else:
            raise ValueError(f"the summary entry {where} is written twice")
    return summary


def dose_levels(plan: Plan) -> list[float]:
    """The levels the dose tracker follows: the case's ``outputs.dose_thresholds``, then the injury and the
    threshold-damage levels when they are not among them (the clinical reading needs both)."""
    limits = plan.roles.thresholds
    levels = list(plan.case.outputs.dose_thresholds)
    return levels + [c for c in dict.fromkeys([limits.injury_c, limits.damage_c]) if c not in levels]
