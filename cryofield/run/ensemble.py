"""Many variants of one mesh run as one ensemble: one pass per kernel per stage for all of them.

:func:`run_ensemble` takes validated cases that share a mesh (a sweep's variants that differ in tissue
properties, perfusion, probe settings, protocol or initial state), prepares each as ``cryofield run``
would, and runs them as the lanes of one :class:`~cryofield.timestepping.stepper.Ensemble`. Each variant's run is the
single run's own code (:func:`cryofield.run.runner.run_segments`, a generator of the segments its stepper
must cross); :func:`drive_ensemble` advances all of them together, one ensemble step at a time, and
hands each variant back to its own driver when it reaches the end of a segment (outputs, a phase change,
a boundary model's update). A variant's results equal those of the same case run alone, bit for bit
(:class:`~cryofield.timestepping.stepper.Ensemble`); each publishes its own result set.

Timing: the variants share wall time, so each one's ``stepping_s`` is the wall time its ensemble spent
while that variant had steps to take; the ensemble's throughput is in :class:`EnsembleReport`.

Phases at different times: every variant follows its own protocol and steps; one whose protocol has
ended (or whose step failed) waits, costing nothing but its place in the arrays, until all are done.
Ensembles do not write checkpoints: a sweep resumes by variant (a killed ensemble's variants run again).

Memory: :func:`split_for_memory` cuts a group into ensembles that fit the device (or host) memory, with a
message saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cryofield.backends import Backend, get_backend
from cryofield.config.case import Case
from cryofield.errors import InputError
from cryofield.io.resultset import Staging, publish
from cryofield.run.output import check_output, check_output_dir, reserve_output
from cryofield.run.plan import Plan, prepare
from cryofield.run.runner import RunReport, run_segments
from cryofield.timestepping.schemes import SCHEMES
from cryofield.timestepping.stepper import Ensemble

#: Per-variant arrays of an ensemble, in floats per node: state, previous temperature, three stage values,
#: two stage temperatures, two rates, five per-node rows, the flows (4 per element, about 5.5 elements per
#: node), the dose trackers (about 4 levels and the minimum), and one fixed flag byte.
FLOATS_PER_NODE = 2 + 1 + 3 + 2 + 2 + 5 + 4 * 5.5 + 5


def ensemble_bytes(n_nodes: int, variants: int, itemsize: int) -> int:
    """Device (or host) bytes the stepping arrays of ``variants`` variants of ``n_nodes`` nodes need, at least.

    Examples
    --------
    >>> ensemble_bytes(54_000, 64, 8) / 2**30  # doctest: +ELLIPSIS
    1.08...
    """
    return int(variants * n_nodes * (FLOATS_PER_NODE * itemsize + 1))


def split_for_memory(variants: int, n_nodes: int, itemsize: int, available: float | None,
                     fraction: float = 0.8) -> tuple[list[int], str | None]:
    """Ensemble sizes that cover ``variants`` with each fitting ``fraction`` of ``available`` bytes, and a message
    when the group had to be split (None when it fits whole, or when the memory is unknown).

    Examples
    --------
    >>> split_for_memory(10, 1000, 8, None)
    ([10], None)
    >>> sizes, why = split_for_memory(256, 1_000_000, 8, 8e9)
    >>> sizes[:2], sum(sizes), why.split(":")[0]
    ([18, 17], 256, '256 variants of 1000000 nodes need about 86.3 GB')
    """
    need = ensemble_bytes(n_nodes, variants, itemsize)
    if available is None or need <= fraction * available:
        return [variants], None
    fit = max(1, int(fraction * available // ensemble_bytes(n_nodes, 1, itemsize)))
    count = math.ceil(variants / fit)
    sizes = [variants // count + (1 if k < variants % count else 0) for k in range(count)]
    return sizes, (f"{variants} variants of {n_nodes} nodes need about {need / 1e9:.1f} GB: split into {count} "
                   f"ensembles of at most {max(sizes)} to fit {fraction:.0%} of the {available / 1e9:.1f} GB available")


def available_bytes(backend: Backend) -> float | None:
    """Free memory where ``backend`` keeps its arrays (the GPU's, or the host's), or None if unknown."""
    if backend.name == "cuda":
        try:
            from numba import cuda

            free, _ = cuda.current_context().get_memory_info()
            return float(free)
        except Exception:
            return None
    from cryofield.config import resources

    return resources.available_memory()


def mesh_key(plan: Plan) -> str:
    """A digest of what an ensemble's variants must share: the mesh, its numbering and tissues, the precision."""
    p = plan.problem
    h = hashlib.sha256()
    for a in (p.mesh.points, p.mesh.tets, p.elem_mat, p.node_mat):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(repr((p.region_names, plan.case.solver.precision)).encode())
    return h.hexdigest()


def drive_ensemble(ensemble: Ensemble, runs: list[Generator[tuple[float, Callable], None, Any]]) -> list[Any]:
    """Advance the runs of the ensemble's variants together (``runs[b]`` drives ``ensemble.lanes[b]``, as
    :func:`cryofield.run.driver.drive_segments` yields); returns each run's value, or the exception it ended with.

    A variant whose step fails (a blow-up, an error after its step) has the exception thrown into its
    run, so that the run cleans up and reports it as it would alone; the others go on.
    """
    results: list[Any] = [None] * len(runs)
    targets: dict[int, tuple[float, Callable]] = {}

    def resume(b: int, error: BaseException | None = None) -> None:
        targets.pop(b, None)
        try:
            target = runs[b].throw(error) if error is not None else runs[b].send(None)
            while ensemble.lanes[b]._reached(target[0]):  # an empty segment: nothing to step
                target = runs[b].send(None)
            targets[b] = target
        except StopIteration as done:
            results[b] = done.value
        except Exception as exc:
            results[b] = exc

    for b in range(len(runs)):
        resume(b)
    while targets:
        reached, failed = ensemble.step(targets)
        for b, exc in failed.items():
            resume(b, exc)
        for b in reached:
            resume(b)
    return results


@dataclass
class EnsembleReport:
    """What :func:`run_ensemble` did: per variant its :class:`~cryofield.run.runner.RunReport` or the exception
    it failed with; the ensemble sizes, the stepping wall time and the variant-steps per second."""

    results: list[RunReport | BaseException]
    sizes: list[int]
    stepping_s: float
    variant_steps: int
    operator_applications: int
    notes: list[str] = field(default_factory=list)
    #: Per variant, the size of the ensemble it ran in (0: it did not run).
    ensemble_of: list[int] = field(default_factory=list)

    #: Stage slots the passes offered (passes times ensemble size), used or not.
    slots: int = 0

    @property
    def variant_steps_per_s(self) -> float:
        return self.variant_steps / max(self.stepping_s, 1e-12)

    @property
    def stage_utilisation(self) -> float:
        """The fraction of the passes' (variant, stage) slots that did a variant's own stage: per-variant step
        control runs as many stages as the neediest variant asks for, the others wait out the rest."""
        return self.operator_applications / max(self.slots, 1)


def run_ensemble(cases: list[Case], out_dirs: list[str | Path], backend: str | None = None,
                 variant_fastest: bool = True, force: bool = False, max_size: int | None = None) -> EnsembleReport:
    """Run ``cases`` (that share a mesh) as ensembles, each publishing its result set in ``out_dirs[i]``.

    A case that is bad input, or does not share the first case's mesh, fails on its own with its
    :class:`~cryofield.errors.InputError` (in ``results``); so does a variant whose run fails. ``max_size``
    caps the ensemble size; a group that would not fit the memory is split further (``notes`` says so).
    """
    results: list[Any] = [None] * len(cases)
    plans: dict[int, Plan] = {}
    for i, case in enumerate(cases):
        try:
            check_output_dir(Path(out_dirs[i]))
            check_output(Path(out_dirs[i]), case.name)
            plans[i] = prepare(case, force)
        except InputError as exc:
            results[i] = exc
    be = get_backend(backend or (cases[0].solver.backend if cases else "auto"))
    keys = {i: mesh_key(p) for i, p in plans.items()}
    first = next(iter(keys.values()), None)
    for i, key in keys.items():
        scheme = plans[i].case.solver.scheme
        if not SCHEMES[scheme].in_ensembles:
            results[i] = InputError(f"solver.scheme {scheme} runs a case alone, not in an ensemble: use scheme rkl2 "
                                    "for ensemble runs, or run the case on its own", source=cases[i].source,
                                    key="solver.scheme")
        elif key != first:
            results[i] = InputError("this variant does not share the ensemble's mesh (another mesh, numbering, "
                                    "tissues or precision): run it on its own", source=cases[i].source, key="mesh")
    members = [i for i in plans if results[i] is None]
    report = EnsembleReport(results, [], 0.0, 0, 0, ensemble_of=[0] * len(cases))
    if not members:
        return report
    n, itemsize = plans[members[0]].problem.n_nodes, plans[members[0]].dtype.itemsize
    sizes = [len(members)] if not max_size else [max_size] * (len(members) // max_size) + (
        [len(members) % max_size] if len(members) % max_size else [])
    chunks, start = [], 0
    for size in sizes:
        fitted, why = split_for_memory(size, n, itemsize, available_bytes(be))
        if why:
            report.notes.append(why)
        for part in fitted:
            chunks.append(members[start:start + part])
            start += part
    for chunk in chunks:
        _run_chunk([plans[i] for i in chunk], [Path(out_dirs[i]) for i in chunk], be, variant_fastest, report, chunk)
    return report


def _run_chunk(plans: list[Plan], out_dirs: list[Path], backend: Backend, variant_fastest: bool,
               report: EnsembleReport, indices: list[int]) -> None:
    """One ensemble: lock every variant's output name, step them together, publish each set that finished."""
    with contextlib.ExitStack() as stack:
        for plan, out in zip(plans, out_dirs):
            stack.enter_context(reserve_output(out, plan.case.name))
        t0 = time.perf_counter()
        T0s = [plan.initial_temperature() for plan in plans]
        ensemble = Ensemble(backend, [p.problem for p in plans], [p.problem.enthalpy(T) for p, T in zip(plans, T0s)],
                            [p.control() for p in plans], plans[0].dtype, variant_fastest=variant_fastest)
        basal_s = (time.perf_counter() - t0) / len(plans)
        stagings = [Staging(out, plan.case.name) for plan, out in zip(plans, out_dirs)]
        runs = [run_segments(plan, lane, staging, False, False, None, None, basal_s)
                for plan, lane, staging in zip(plans, ensemble.lanes, stagings)]
        t0 = time.perf_counter()
        try:
            outcomes = drive_ensemble(ensemble, runs)
        except BaseException:
            for staging in stagings:
                staging.discard()
            raise
        report.stepping_s += time.perf_counter() - t0
        report.sizes.append(len(plans))
        report.slots += ensemble.passes * len(plans)
        for i, plan, out, staging, outcome, lane in zip(indices, plans, out_dirs, stagings, outcomes, ensemble.lanes):
            report.ensemble_of[i] = len(plans)
            report.variant_steps += lane.stats.steps
            report.operator_applications += lane.stats.operator_applications
            if isinstance(outcome, BaseException):
                staging.discard()
                report.results[i] = outcome
                continue
            try:
                publish(staging, [p.name for p in outcome.paths.values()], extra={"case": plan.case.name})
            except BaseException as exc:
                staging.discard()
                report.results[i] = exc
                continue
            outcome.paths = {k: out / p.name for k, p in outcome.paths.items()}
            outcome.paths["manifest"] = out / f"{plan.case.name}.manifest.json"
            report.results[i] = outcome
