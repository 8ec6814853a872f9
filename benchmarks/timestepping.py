"""Time-stepping suite: work and time to solution on a graded spherical probe mesh (``cryofield bench timestepping``).

A spherical cryoprobe (radius 1 mm) at -88 °C freezes muscle for 90 s. The octant mesh is graded
from 0.1 mm at the probe to 1 mm at 20 mm (quick: 0.2 to 2 mm), the shape of every probe mesh: a few
tiny elements at the probe set the explicit limit of the whole mesh. The answer is compared with a
converged 1-D radial enthalpy reference (:func:`benchmarks.radial.radial_reference`), which solves the
same equation (the tissue's own H(T), k(T), perfusion and metabolic heat, the same boundary values)
on a fine uniform radial grid.

Figures
-------
Isotherm-radius error
    the largest, over the isotherms -1, -20 and -40 °C at 30, 60 and 90 s, relative difference between
    the mesh's equivalent radius (the octant volume at or below the level, exact for the P1 field,
    as the radius of the sphere that holds it) and the reference's radius.
Full-mesh-equivalent operator applications
    operator applications weighted by the fraction of the mesh each one covers (every application of
    today's single-rate scheme covers the whole mesh, so the two counts agree).
Wall time
    the stepping from the initial state to 90 s with the output times hit (compiled kernels; one core,
    like the peer), and the peer's (:mod:`benchmarks.peers.skfem_enthalpy`, backward Euler) on the same
    mesh at equal or smaller isotherm error, as a ratio in the same run.

The reference's own error is the difference between its two finest grids (second order: the finer
grid's error is about a third of it), printed with the table; it is far below the mesh's error.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
from threadpoolctl import threadpool_limits

from cryofield.config.case import Case, load_case
from cryofield.mesh.sources import mesh_of

from .common import REPO, input_order, markdown_table, numba_threads, temperatures_at, timed, with_steps
from .compare import figure
from .peers.suite import Trial, equal_accuracy, peer_series
from .radial import (
    LEVELS,
    SPHERE,
    TIMES,
    equivalent_radii,
    graded_sphere_case,
    isotherm_error,
    level_volumes,
    limit_spread,
    radial_reference,
)

NAME = "timestepping"

#: Settings (scheme, max_dt s, max_change K, tolerance K or None). The first is the default with the old
#: scheme (rkl2), the second the new scheme at the same steps; at 10 s / 30 K the local error control governs.
OLD, NEW = ("rkl2", 2.0, 10.0, None), ("multirate", 2.0, 10.0, None)
SIZES = {
    "quick": {"mesh": (0.2, 2.0), "reference_cells": [238, 475], "repeats": 1,
              "cryofield": [OLD, NEW, ("multirate", 10.0, 30.0, 16.0), ("rkl2", 10.0, 30.0, 16.0)],
              "peer": [1.0, 0.5],
              "demo": {"freeze_s": 10.0, "repeats": 1, "settings": [OLD, NEW, ("multirate", 10.0, 30.0, 16.0)],
                       "reference": ("rkl2", 0.5, 2.5, None)}},
    "full": {"mesh": (0.1, 1.0), "reference_cells": [475, 950], "repeats": 3,
             "cryofield": [OLD, NEW, ("rkl2", 5.0, 30.0, None), ("multirate", 5.0, 30.0, None),
                           ("rkl2", 2.0, 10.0, 3.0), ("rkl2", 10.0, 30.0, 16.0), ("multirate", 10.0, 30.0, 4.0),
                           ("multirate", 10.0, 30.0, 16.0)],
             "peer": [1.0, 0.5, 0.25, 0.125],
             "demo": {"freeze_s": 90.0, "repeats": 1,
                      "settings": [OLD, NEW, ("multirate", 4.0, 20.0, None), ("rkl2", 10.0, 30.0, 16.0),
                                   ("multirate", 10.0, 30.0, 4.0), ("multirate", 10.0, 30.0, 16.0)],
                      "reference": ("rkl2", 0.5, 2.5, None)}},
}
#: The demo case (the coarse occipital phantom, three 27G needles) and the isotherms its study compares.
DEMO_CASE, DEMO_LEVELS = REPO / "cases" / "gon_double_freeze.yaml", [0.0, -20.0, -40.0]


# -- trials ------------------------------------------------------------------------------------------------

def with_scheme(case: Case, scheme: str, max_dt: float, max_change: float, tolerance: float | None) -> Case:
    """``case`` with the time-stepping scheme and the step controls of a trial."""
    case = with_steps(case, max_dt, max_change)
    return case.model_copy(update={"solver": case.solver.model_copy(update={"scheme": scheme,
                                                                              "tolerance": tolerance})})


def setting_label(setting: tuple) -> str:
    scheme, max_dt, max_change, tolerance = setting
    control = "no error control" if tolerance is None else f"tolerance {tolerance:g} K"
    return f"{scheme}, max_dt {max_dt:g} s, max_change {max_change:g} K, {control}"


def cryofield_trial(case: Case, setting: tuple, score, repeats: int, times: list[float] = TIMES) -> Trial:
    """cryofield with ``setting`` = (scheme, max_dt, max_change, tolerance): wall time, isotherm error, work."""
    seconds, (problem, temps, stats) = timed(lambda: temperatures_at(with_scheme(case, *setting), times), repeats)
    return Trial("cryofield", setting_label(setting), seconds, score(input_order(problem, temps)),
                 {"steps": stats.steps, "rejected": stats.rejected,
                  "operator_applications": stats.operator_applications,
                  "full_mesh_equivalent_applications": float(stats.equivalent_applications)})


def volume_radii(points: np.ndarray, tets: np.ndarray, temps: list[np.ndarray], levels: list[float]) -> np.ndarray:
    """(len(temps), len(levels)) radius of the sphere holding the volume at or below each level (m)."""
    return (0.75 / np.pi * level_volumes(points, tets, temps, levels)) ** (1 / 3)


def demo_study(sizes: dict) -> dict:
    """Old (single-rate RKL2) against new (multirate) on the demo's first freeze: the equivalent radii of its
    0, -20 and -40 °C ice at a third, two thirds and the end of the freeze, against RKL2 at tight steps (the
    same mesh: the error is the time stepping's alone), and the work and time of each."""
    spec = sizes["demo"]
    base = load_case(DEMO_CASE)
    first = base.protocol[0].model_copy(update={"duration": spec["freeze_s"]})
    case = base.model_copy(update={"protocol": [first]})
    times = [spec["freeze_s"] * f for f in (1 / 3, 2 / 3, 1.0)]
    mesh = mesh_of(case)

    def radii(temps: list[np.ndarray]) -> np.ndarray:
        return volume_radii(mesh.points, mesh.tets, temps, DEMO_LEVELS)

    problem, temps, _ = temperatures_at(with_scheme(case, *spec["reference"]), times)
    truth = radii(input_order(problem, temps))

    def score(temps: list[np.ndarray]) -> float:
        return isotherm_error(radii(temps), truth)

    trials = [cryofield_trial(case, setting, score, spec["repeats"], times) for setting in spec["settings"]]
    old, new = trials[0], trials[1]
    old_work, new_work = (t.work["full_mesh_equivalent_applications"] for t in (old, new))
    return {"id": "demo_time_stepping", "title": f"Demo case ({DEMO_CASE.name}), first freeze {spec['freeze_s']:g} s",
            "nodes": mesh.n_nodes, "reference": setting_label(spec["reference"]),
            "norm": "largest relative equivalent-radius error of the 0, -20, -40 °C ice (1/3, 2/3, end of freeze)",
            "trials": [asdict(t) for t in trials], "reference_radii_mm": (truth * 1e3).tolist(),
            "figures": {"multirate/rkl2 full-mesh-equivalent applications, default steps":
                        figure(new_work / old_work, "work"),
                        "multirate isotherm error, default steps": figure(new.error, "error"),
                        **fewest_within(trials, old_work)}}


def fewest_within(trials: list[Trial], old_work: float, bound: float = 0.005) -> dict:
    """The figure "old default / fewest full-mesh-equivalent applications of a setting within ``bound``"."""
    within = [t.work["full_mesh_equivalent_applications"] for t in trials if t.error <= bound]
    if not within:
        return {}
    return {f"old-default/fewest full-mesh-equivalent applications within {bound:.1%}":
            figure(old_work / min(within), "ratio")}


def graded_sphere_study(sizes: dict) -> list[dict]:
    """The reference's convergence, then cryofield's settings and the peer's steps against it."""
    t0 = time.perf_counter()
    references = [radial_reference(n) for n in sizes["reference_cells"]]
    reference = references[-1]
    reference_change = isotherm_error(references[0], reference)
    reference_seconds = time.perf_counter() - t0
    case = graded_sphere_case(*sizes["mesh"])
    mesh = mesh_of(case)

    def score(temps: list[np.ndarray]) -> float:
        return isotherm_error(equivalent_radii(mesh.points, mesh.tets, temps), reference)

    ours = [cryofield_trial(case, s, score, sizes["repeats"]) for s in sizes["cryofield"]]
    peers, pilot = peer_series(case, sizes["peer"], TIMES, score, sizes["repeats"])
    rows = equal_accuracy(ours, peers)
    spread = limit_spread(case)
    h, far = sizes["mesh"]
    default, multirate = ours[0], ours[1]  # the same default steps, old scheme and new
    within = [r["ratio"] for r, t in zip(rows, ours) if t.error <= 0.005]
    return [
        {"id": "radial_reference", "title": "1-D radial enthalpy reference: isotherm radii (mm)",
         "cells": sizes["reference_cells"], "seconds": reference_seconds, "levels": LEVELS, "times": TIMES,
         "radii_mm": (reference * 1e3).tolist(), "change_between_grids": reference_change,
         "figures": {"change between the two finest grids": figure(reference_change, "error")}},
        {"id": "graded_sphere", "title": f"Spherical probe r0 = {SPHERE['r0']:g} mm at {SPHERE['probe']:g} °C in "
         f"{SPHERE['library']}, {SPHERE['duration']:g} s, octant graded {h:g}-{far:g} mm", "nodes": mesh.n_nodes,
         "norm": "largest relative isotherm-radius error (-1, -20, -40 °C at 30, 60, 90 s)",
         "reference": "1-D radial enthalpy reference", "trials": [asdict(t) for t in ours + peers],
         "linear_solver_pilot_s": pilot, "equal_accuracy": rows, "limit_spread": spread,
         "figures": {"isotherm error, default steps": figure(default.error, "error"),
                     "full-mesh-equivalent applications, default steps":
                         figure(default.work["full_mesh_equivalent_applications"], "work"),
                     "peer/cryofield time at equal accuracy, default steps": figure(rows[0]["ratio"], "ratio"),
                     "multirate/rkl2 full-mesh-equivalent applications, default steps": figure(
                         multirate.work["full_mesh_equivalent_applications"]
                         / default.work["full_mesh_equivalent_applications"], "work"),
                     "peer/cryofield time at equal accuracy, multirate default steps": figure(rows[1]["ratio"],
                                                                                               "ratio"),
                     **({"peer/cryofield time at equal accuracy, best cryofield setting within 0.5 %":
                         figure(max(within), "ratio")} if within else {}),
                     **fewest_within(ours, default.work["full_mesh_equivalent_applications"])}},
    ]


def run(quick: bool, backend: str = "cpu") -> dict:
    """The graded-sphere study on one core each (``backend`` must be cpu: the peer runs there)."""
    if backend != "cpu":
        raise ValueError("the time-stepping suite compares with the peer on the cpu backend (one core each)")
    sizes = SIZES["quick" if quick else "full"]
    with numba_threads(1), threadpool_limits(1):
        for scheme in ("rkl2", "multirate"):  # compile (or load) the kernels before timing
            temperatures_at(with_scheme(graded_sphere_case(1.0, 4.0), scheme, 2.0, 10.0, 3.0), [1.0, 2.0, 3.0])
        records = graded_sphere_study(sizes)
    return {"records": [*records, demo_study(sizes)]}  # the demo on every core: its figures are work counts


def tables(result: dict) -> str:
    """The reference radii, every trial with its work, and the peer ratios at equal accuracy."""
    ref, study, demo = result["records"]
    radii = [[f"{t:g} s"] + [f"{r:.3f}" for r in row] for t, row in zip(ref["times"], ref["radii_mm"])]
    parts = [f"### {ref['title']} ({ref['cells'][-1]} cells; change from {ref['cells'][0]} cells: "
             f"{ref['change_between_grids']:.2e})\n",
             markdown_table(["time"] + [f"{level:g} °C" for level in ref["levels"]], radii),
             f"\n### {study['title']} ({study['nodes']} nodes)\n\nError: {study['norm']}.\n"]
    rows = [[t["solver"], t["setting"], f"{t['error']:.2%}", f"{t['seconds']:.2f}",
             t["work"].get("steps", ""), t["work"].get("operator_applications", t["work"].get("newton_iterations", "")),
             f"{t['work']['full_mesh_equivalent_applications']:.0f}"
             if "full_mesh_equivalent_applications" in t["work"] else ""] for t in study["trials"]]
    parts.append(markdown_table(["solver", "setting", "isotherm error", "wall s", "steps",
                                 "operator applications / Newton iterations", "full-mesh equivalent"], rows))
    ratio_rows = [[r["cryofield"], f"{r['cryofield_error']:.2%}", f"{r['cryofield_s']:.2f}", r["peer"],
                   f"{r['peer_error']:.2%}", f"{r['peer_s']:.2f}",
                   f"{'≥ ' if r['lower_bound'] else ''}{r['ratio']:.1f}"] for r in study["equal_accuracy"]]
    spread = study["limit_spread"]
    shares = spread["shares"].values()
    parts.append(f"\nNodes whose own forward-Euler limit is below R x the smallest ({spread['smallest_limit_s']:.2e}"
                 " s), alone and with their neighbours:\n")
    parts.append(markdown_table(["R"] + [str(R) for R in spread["shares"]],
                                [["nodes"] + [f"{v['nodes']:.1%}" for v in shares],
                                 ["with neighbours"] + [f"{v['with_neighbours']:.1%}" for v in shares]]))
    parts.append("\nAt equal or better accuracy:\n")
    parts.append(markdown_table(["cryofield", "error", "s", "peer", "error", "s", "peer/cryofield"], ratio_rows))
    parts.append(f"\n### {demo['title']} ({demo['nodes']} nodes)\n\nError: {demo['norm']}, against "
                 f"{demo['reference']}.\n")
    parts.append(markdown_table(["setting", "error", "wall s", "steps", "operator applications",
                                 "full-mesh equivalent"],
                                [[t["setting"], f"{t['error']:.3%}", f"{t['seconds']:.1f}", t["work"]["steps"],
                                  t["work"]["operator_applications"],
                                  f"{t['work']['full_mesh_equivalent_applications']:.0f}"] for t in demo["trials"]]))
    return "\n".join(parts)
