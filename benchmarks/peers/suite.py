"""Peer suite: cryofield side by side with a scikit-fem + SciPy implementation of the same physics.

The peer (:mod:`benchmarks.peers.skfem_enthalpy`) is checked first: its Neumann front and its steady
Pennes sphere against the closed forms, next to cryofield's on the same meshes. Then both solve the
same cases on the same meshes over a series of accuracy settings (cryofield: ``max_dt`` and
``max_change``; the peer: its backward-Euler step), each error measured against the same reference:

* Neumann planar freezing: the RMS over 10-90 s of the relative front error, against the closed form;
* a needle cryoprobe in a fat/muscle block, double freeze-thaw: the largest, over the end of each phase,
  volume-weighted RMS temperature difference (K) from a reference run of cryofield on the same mesh with
  ``max_dt`` 0.1 s and ``max_change`` 0.5 K (both solvers converge to the same semi-discrete solution,
  which the peer's trend confirms).

Wall time runs from the case to the temperatures at the output times: mesh reading, assembly, the basal
state and the stepping (Numba kernels are compiled beforehand). Both run on one core (one Numba thread,
one BLAS thread: a spinning BLAS thread on a busy machine slows every vector operation of SciPy's CG
many times), which keeps the ratio fair and steady on a shared machine. The ratio quoted is, for each
cryofield setting, the fastest peer run whose error is equal or smaller, divided by cryofield's time;
when no peer run is that accurate, the ratio for the peer's most accurate run is a lower bound. The
peer's linear solver is the fastest of its three in a short pilot run on each case.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cryofield.config.case import Case
from cryofield.fem.geometry import lumped_volumes
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem

from ..cases import probe_block_case
from ..common import input_order, markdown_table, numba_threads, temperatures_at, timed, with_steps
from ..compare import figure
from ..verification import (
    FRONT_TIMES,
    NEUMANN_CASE,
    fill_case,
    front_errors,
    neumann_front_exact,
    rms_error,
    sphere_case,
    sphere_exact,
    steady_error,
)
from .skfem_enthalpy import LINEAR_SOLVERS, EnthalpyPeer

NAME = "peers"

#: cryofield settings (max_dt s, max_change K) and peer steps (s) of each side-by-side series.
SIZES = {
    "quick": {"neumann_cells": 300, "sphere_h": 0.8, "block": (0.3, 2.0), "protocol": (30.0, 15.0),
              "cryofield": [(2.0, 10.0), (1.0, 5.0), (0.5, 2.5)], "peer_neumann": [2.0, 1.0, 0.5, 0.25],
              "peer_block": [2.0, 1.0, 0.5], "repeats": 1},
    "full": {"neumann_cells": 600, "sphere_h": 0.55, "block": (0.15, 1.2), "protocol": (90.0, 30.0),
             "cryofield": [(2.0, 10.0), (1.0, 5.0), (0.5, 2.5), (0.25, 1.0)],
             "peer_neumann": [2.0, 1.0, 0.5, 0.25, 0.125, 0.0625], "peer_block": [2.0, 1.0, 0.5, 0.25, 0.125],
             "repeats": 3},
}
REFERENCE_SETTING = (0.1, 0.5)
#: Simulated seconds of the pilot run that picks the peer's linear solver.
PILOT_SECONDS = 10.0


@dataclass
class Trial:
    """One solver run: its setting, wall time (s), error against the reference and work counters."""

    solver: str
    setting: str
    seconds: float
    error: float
    work: dict = field(default_factory=dict)


def cryofield_trial(case: Case, setting: tuple[float, float], times: list[float],
                    score: Callable[[list[np.ndarray]], float], repeats: int) -> Trial:
    """Run cryofield with ``setting`` = (max_dt, max_change) and score its temperatures at ``times``."""
    seconds, (problem, temps, stats) = timed(lambda: temperatures_at(with_steps(case, *setting), times), repeats)
    return Trial("cryofield", f"max_dt {setting[0]:g} s, max_change {setting[1]:g} K", seconds,
                 score(input_order(problem, temps)),
                 {"steps": stats.steps, "operator_applications": stats.operator_applications})


def peer_trial(case: Case, dt: float, times: list[float], score: Callable[[list[np.ndarray]], float],
               repeats: int, linear_solver: str) -> Trial:
    """Run the peer with backward-Euler steps of ``dt`` s and score its temperatures at ``times``."""
    def run():
        peer = EnthalpyPeer(case, linear_solver=linear_solver)
        return peer, peer.run(dt, times)

    seconds, (peer, temps) = timed(run, repeats)
    return Trial("peer", f"dt {dt:g} s, {linear_solver}", seconds, score(temps), asdict(peer.stats))


def peer_series(case: Case, steps: list[float], times: list[float], score: Callable[[list[np.ndarray]], float],
                repeats: int) -> tuple[list[Trial], dict[str, float]]:
    """The peer over ``steps``, with the linear solver that was fastest in a pilot run of each.

    The pilot runs the first :data:`PILOT_SECONDS` of simulated time with the first step. Returns the
    trials and the pilot's wall time of each linear solver.
    """
    def pilot(solver: str) -> float:
        peer = EnthalpyPeer(case, linear_solver=solver)
        t0 = time.perf_counter()
        peer.run(steps[0], [min(PILOT_SECONDS, times[0])])
        return time.perf_counter() - t0

    seconds = {solver: pilot(solver) for solver in LINEAR_SOLVERS}
    best = min(seconds, key=seconds.get)
    return [peer_trial(case, dt, times, score, repeats, best) for dt in steps], seconds


def equal_accuracy(ours: list[Trial], peers: list[Trial]) -> list[dict]:
    """For each cryofield trial: the fastest peer trial at equal or better accuracy and the time ratio."""
    rows = []
    for c in ours:
        good = [p for p in peers if p.error <= c.error]
        best = min(good, key=lambda p: p.seconds) if good else min(peers, key=lambda p: p.error)
        rows.append({"cryofield": c.setting, "cryofield_error": c.error, "cryofield_s": c.seconds,
                     "peer": best.setting, "peer_error": best.error, "peer_s": best.seconds,
                     "ratio": best.seconds / c.seconds, "lower_bound": not good})
    return rows


def side_by_side(record_id: str, title: str, norm: str, reference: str, nodes: int, ours: list[Trial],
                 peers: tuple[list[Trial], dict[str, float]]) -> dict:
    """A side-by-side record; its figure is the ratio at cryofield's default setting (the first trial)."""
    rows = equal_accuracy(ours, peers[0])
    return {"id": record_id, "title": title, "norm": norm, "reference": reference, "nodes": nodes,
            "trials": [asdict(t) for t in ours + peers[0]], "linear_solver_pilot_s": peers[1], "equal_accuracy": rows,
            "figures": {"peer/cryofield time at equal accuracy, default steps": figure(rows[0]["ratio"], "ratio")}}


# -- correctness of the peer ------------------------------------------------------------------------------

def check_neumann(cells: int) -> dict:
    """Front errors of the peer (steps of 0.125 s) and of cryofield (default steps) on the same slab."""
    case = fill_case(NEUMANN_CASE, n=cells)
    exact = neumann_front_exact(case, FRONT_TIMES)
    peer = EnthalpyPeer(case)
    problem, ours, _ = temperatures_at(case, FRONT_TIMES)
    errors = {"peer, dt 0.125 s": front_errors(peer.mesh.points, peer.run(0.125, FRONT_TIMES), exact),
              "cryofield, default steps": front_errors(problem.mesh.points, ours, exact)}
    return {"id": "peer_check_neumann", "title": f"Neumann front against the closed form, {cells} cells",
            "nodes": peer.n, "errors": errors,
            "figures": {f"peer {k}": figure(abs(v), "error") for k, v in errors["peer, dt 0.125 s"].items()}}


def check_sphere(size: float) -> dict:
    """Steady Pennes sphere: the peer's steady solve and cryofield's on the same mesh, RMS error (K)."""
    case = sphere_case(size)
    peer = EnthalpyPeer(case)
    T = peer.solve(peer.boundaries(None), np.full(peer.n, 37.0), None)
    errors = {"peer": {"L2": rms_error(peer.mesh.points, peer.mesh.tets, T, sphere_exact)},
              "cryofield": {"L2": steady_error(build_problem(case, mesh_of(case)), sphere_exact)}}
    return {"id": "peer_check_sphere", "title": f"Steady Pennes sphere against the closed form, h = {size} mm",
            "nodes": peer.n, "errors": errors, "figures": {"peer L2": figure(errors["peer"]["L2"], "error")}}


# -- side by side -------------------------------------------------------------------------------------------

def neumann_side_by_side(sizes: dict) -> dict:
    """Neumann freezing on the same slab: front RMS error against the closed form, against wall time."""
    case = fill_case(NEUMANN_CASE, n=sizes["neumann_cells"])
    exact = neumann_front_exact(case, FRONT_TIMES)
    points = mesh_of(case).points

    def score(temps: list[np.ndarray]) -> float:
        return front_errors(points, temps, exact)["front RMS 10-90 s"]

    ours = [cryofield_trial(case, s, FRONT_TIMES, score, sizes["repeats"]) for s in sizes["cryofield"]]
    peers = peer_series(case, sizes["peer_neumann"], FRONT_TIMES, score, sizes["repeats"])
    return side_by_side("neumann_side_by_side", f"Neumann planar freezing, {sizes['neumann_cells']} cells",
                        "RMS over 10-90 s of the relative front error", "closed form (docs/physics.md §7)",
                        len(points), ours, peers)


def block_side_by_side(sizes: dict) -> dict:
    """The needle probe in a fat/muscle block, double freeze-thaw, same mesh: RMS error against the reference."""
    freeze, thaw = sizes["protocol"]
    times = [freeze, freeze + thaw, 2 * freeze + thaw]
    with tempfile.TemporaryDirectory() as tmp:
        case = probe_block_case(Path(tmp), *sizes["block"], freeze, thaw)
        mesh = mesh_of(case)
        volume = lumped_volumes(mesh.points, mesh.tets, mesh.n_nodes)
        problem, reference, _ = temperatures_at(with_steps(case, *REFERENCE_SETTING), times)
        reference = input_order(problem, reference)

        def score(temps: list[np.ndarray]) -> float:
            return max(float(np.sqrt(np.sum(volume * (T - R) ** 2) / volume.sum())) for T, R in zip(temps, reference))

        ours = [cryofield_trial(case, s, times, score, sizes["repeats"]) for s in sizes["cryofield"]]
        peers = peer_series(case, sizes["peer_block"], times, score, sizes["repeats"])
    tip, far = sizes["block"]
    return side_by_side("block_side_by_side", f"18G probe 3 mm from a nerve in fat/muscle, {freeze:g}/{thaw:g}/"
                        f"{freeze:g} s freeze-thaw-freeze, mesh {tip:g}-{far:g} mm",
                        "largest volume-weighted RMS temperature error (K) at the end of each phase",
                        f"cryofield on the same mesh, max_dt {REFERENCE_SETTING[0]:g} s, "
                        f"max_change {REFERENCE_SETTING[1]:g} K", mesh.n_nodes, ours, peers)


def run(quick: bool, backend: str = "cpu") -> dict:
    """Check the peer, then run it side by side with cryofield (one core each; ``backend`` must be cpu)."""
    if backend != "cpu":
        raise ValueError("the peer comparison runs on the cpu backend (one core each)")
    sizes = SIZES["quick" if quick else "full"]
    with numba_threads(1), threadpool_limits(1):
        temperatures_at(fill_case(NEUMANN_CASE, n=10), [1.0])  # compile (or load) the kernels before timing
        return {"records": [check_neumann(sizes["neumann_cells"]), check_sphere(sizes["sphere_h"]),
                            neumann_side_by_side(sizes), block_side_by_side(sizes)]}


def tables(result: dict) -> str:
    """The peer checks, every trial of each side-by-side case, and the ratios at equal accuracy."""
    parts = ["### Peer checks (errors against the closed forms, same meshes)\n"]
    rows = []
    for r in (r for r in result["records"] if "errors" in r):
        for solver, errors in r["errors"].items():
            rows.append([r["title"], r["nodes"], solver, ", ".join(f"{k} {v:+.3e}" for k, v in errors.items())])
    parts.append(markdown_table(["check", "nodes", "solver", "errors"], rows))
    for r in (r for r in result["records"] if "trials" in r):
        trials = [[t["solver"], t["setting"], f"{t['error']:.3e}", f"{t['seconds']:.2f}",
                   ", ".join(f"{k} {v}" for k, v in t["work"].items())] for t in r["trials"]]
        ratios = [[e["cryofield"], f"{e['cryofield_error']:.3e}", f"{e['cryofield_s']:.2f}", e["peer"],
                   f"{e['peer_error']:.3e}", f"{e['peer_s']:.2f}",
                   f"{'>' if e['lower_bound'] else ''}{e['ratio']:.1f}x"] for e in r["equal_accuracy"]]
        pilot = ", ".join(f"{k} {v:.2f} s" for k, v in r["linear_solver_pilot_s"].items())
        parts += [f"\n### {r['title']} ({r['nodes']} nodes)\n",
                  f"Error: {r['norm']}; reference: {r['reference']}. Peer linear solver pilot: {pilot}.\n",
                  markdown_table(["solver", "setting", "error", "wall s", "work"], trials), "",
                  markdown_table(["cryofield setting", "error", "s", "peer at equal or better accuracy", "error", "s",
                                  "peer / cryofield time"], ratios)]
    return "\n".join(parts)
