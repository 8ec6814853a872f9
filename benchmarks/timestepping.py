"""Time-stepping suite: work and time to solution on a graded spherical probe mesh (``cryofield bench timestepping``).

A spherical cryoprobe (radius 1 mm) at -88 °C freezes muscle for 90 s. The octant mesh is graded
from 0.1 mm at the probe to 1 mm at 20 mm (quick: 0.2 to 2 mm), the shape of every probe mesh: a few
tiny elements at the probe set the explicit limit of the whole mesh. The answer is compared with a
converged 1-D radial enthalpy reference written here (:func:`radial_reference`), which solves the
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
from numba import njit
from threadpoolctl import threadpool_limits

from cryofield import pointwise
from cryofield.case import Case
from cryofield.fem import gradients_and_volumes
from cryofield.materials import build_tables, maximum_conductivity, minimum_capacity
from cryofield.mesh.sources import mesh_of
from cryofield.metrics import volumes_below
from cryofield.runner import prepare

from .common import markdown_table, numba_threads, temperatures_at, timed
from .compare import figure
from .peers.suite import Trial, equal_accuracy, input_order, peer_series, with_steps
from .verification import fill_case

NAME = "timestepping"

GRADED_SPHERE_CASE = """
name: graded_sphere
mesh:
  generate: {{kind: sphere_octant_shell, inner_radius: {r0}, outer_radius: {r1}, size_inner: {h}, size_outer: {H}}}
  units: mm
tissues: {{tissue: {{library: {library}}}}}
probes: [{{name: probe, surface: inner}}]
protocol: [{{kind: freeze, duration: {duration}, temperature: {probe}}}]
initial: {{type: uniform, temperature: {T0}}}
boundaries:
  - {{surface: outer, type: fixed, temperature: {T0}}}
"""
#: The graded sphere: radii and element sizes (mm), tissue, probe and initial temperature (°C), duration (s).
SPHERE = {"r0": 1.0, "r1": 20.0, "library": "muscle", "probe": -88.0, "T0": 37.0, "duration": 90.0}
LEVELS = [-1.0, -20.0, -40.0]
TIMES = [30.0, 60.0, 90.0]

SIZES = {
    "quick": {"mesh": (0.2, 2.0), "reference_cells": [238, 475], "repeats": 1,
              "cryofield": [(2.0, 10.0), (5.0, 30.0)], "peer": [1.0, 0.5]},
    "full": {"mesh": (0.1, 1.0), "reference_cells": [475, 950], "repeats": 3,
             "cryofield": [(2.0, 10.0), (5.0, 30.0), (1.0, 5.0), (0.5, 2.5)], "peer": [1.0, 0.5, 0.25, 0.125]},
}


def graded_sphere_case(size_at_probe: float, size_far: float) -> Case:
    """The graded spherical-probe case of :data:`SPHERE` on a mesh of ``size_at_probe`` .. ``size_far`` mm."""
    return fill_case(GRADED_SPHERE_CASE, h=size_at_probe, H=size_far, **SPHERE)


# -- the 1-D radial reference ---------------------------------------------------------------------------------

_temperature_of = njit(cache=True)(pointwise.temperature_of)
_conductivity_of = njit(cache=True)(pointwise.conductivity_of)
_liquid_fraction_of = njit(cache=True)(pointwise.liquid_fraction_of)


@njit(cache=True)
def _radial_march(H, r, dt, n_steps, h_T, h_H, h_n, h_slope, k_T, k_k, k_n, solidus, liquidus, P, Q, Ta):
    """``n_steps`` forward-Euler steps of dt on the radial nodes ``r`` (first and last fixed), in place.

    Vertex-centred finite volumes in spherical symmetry (per steradian): node i owns the shell between
    the midpoints r_{i-1/2}, r_{i+1/2}, of volume (r_{i+1/2}³ - r_{i-1/2}³)/3, and exchanges
    k_f r_{i+1/2}² (T_{i+1} - T_i)/dr with node i + 1, k_f the mean of the two nodes' k(T):
    dH_i/dt = (F_{i+1/2} - F_{i-1/2}) / V_i + f_l(T_i) [P (T_a - T_i) + Q].
    """
    n = r.shape[0]
    dr = r[1] - r[0]
    T = np.empty(n)
    k = np.empty(n)
    flux = np.zeros(n + 1)
    volume = np.empty(n)
    for i in range(1, n - 1):
        volume[i] = ((r[i] + 0.5 * dr) ** 3 - (r[i] - 0.5 * dr) ** 3) / 3.0
    for _ in range(n_steps):
        for i in range(n):
            T[i] = _temperature_of(H[i], 0, h_T, h_H, h_n, h_slope)
            k[i] = _conductivity_of(T[i], 0, k_T, k_k, k_n)
        for i in range(n - 1):
            face = r[i] + 0.5 * dr
            flux[i + 1] = 0.5 * (k[i] + k[i + 1]) * face * face * (T[i + 1] - T[i]) / dr
        for i in range(1, n - 1):
            fl = _liquid_fraction_of(T[i], solidus, liquidus)
            H[i] += dt * ((flux[i + 1] - flux[i]) / volume[i] + fl * (P * (Ta - T[i]) + Q))


def radial_reference(cells: int, times: list[float] = TIMES, levels: list[float] = LEVELS) -> np.ndarray:
    """(len(times), len(levels)) isotherm radii (m) of :data:`SPHERE` on a uniform radial grid of ``cells``.

    The tissue, its perfusion (with the case's blood) and the arterial temperature are the case's.

    Forward Euler at 0.4 of its stability limit (the stiffest capacity and conductivity of the tissue),
    the output times hit exactly. The radius of level c is where the (monotonic) nodal profile, linear
    between nodes, crosses c.

    Examples
    --------
    >>> radii = radial_reference(190, [30.0], [-1.0])
    >>> 2.0e-3 < float(radii[0, 0]) < 6.0e-3
    True
    """
    case = graded_sphere_case(1.0, 4.0)
    material, blood = case.materials()["tissue"], case.blood
    tables = build_tables([material])
    r = np.linspace(SPHERE["r0"], SPHERE["r1"], cells + 1) * 1e-3
    dr = r[1] - r[0]
    dt_max = 0.4 * minimum_capacity(material) * dr * dr / (2.0 * maximum_conductivity(material))
    H = material.enthalpy(np.full(cells + 1, SPHERE["T0"]))
    H[0] = material.enthalpy(SPHERE["probe"])
    laws = (tables.h_T, tables.h_H, tables.h_n, tables.h_slope, tables.k_T, tables.k_k, tables.k_n,
            material.solidus, material.liquidus, material.perfusion * blood.heat_capacity, material.metabolic_heat,
            blood.arterial_temperature)
    radii, t = np.empty((len(times), len(levels))), 0.0
    for j, t_out in enumerate(times):
        n_steps = int(np.ceil((t_out - t) / dt_max - 1e-9))
        _radial_march(H, r, (t_out - t) / n_steps, n_steps, *laws)
        t = t_out
        T = material.temperature(H)
        radii[j] = [float(np.interp(level, T, r)) for level in levels]
    return radii


# -- the mesh's isotherm radii -------------------------------------------------------------------------------

def equivalent_radii(points: np.ndarray, tets: np.ndarray, temps: list[np.ndarray]) -> np.ndarray:
    """(len(temps), len(LEVELS)) radius (m) of the sphere whose octant beyond the probe holds the octant
    volume at or below each level: r³ = r0³ + 6 V / π."""
    volumes = gradients_and_volumes(points, tets)[1]
    group = np.zeros(len(tets), np.int64)
    r0 = SPHERE["r0"] * 1e-3
    return np.array([(r0**3 + 6.0 / np.pi * volumes_below(T, tets, volumes, group, 1, LEVELS)[:, 0]) ** (1 / 3)
                     for T in temps])


def isotherm_error(radii: np.ndarray, reference: np.ndarray) -> float:
    """Largest relative isotherm-radius difference over every level and time."""
    return float(np.max(np.abs(radii / reference - 1.0)))


# -- how unevenly the limit is spread --------------------------------------------------------------------------

#: Ratios R of the limit-spread figures: the share of nodes whose own limit is below R x the smallest.
SPREAD_RATIOS = [4, 16, 64, 256]


def limit_spread(case: Case) -> dict:
    """The share of nodes whose own forward-Euler limit (the Gershgorin row bound during the freeze,
    :meth:`cryofield.problem.Problem.nodal_spectral_radius`) is below R times the mesh's smallest, alone
    and with the nodes that share an element with them: what a multirate scheme would step finely."""
    plan = prepare(case)
    problem, phase = plan.problem, plan.timeline.phases[0]
    state = problem.boundary_state(phase, phase.start)
    rho = problem.nodal_spectral_radius(state.robin_coef, state.fixed)
    free = ~state.fixed
    ratio = rho.max() / np.where(free, rho, np.nan)  # node i's limit over the smallest
    tets = problem.mesh.tets
    shares = {}
    for R in SPREAD_RATIOS:
        fine = free & (ratio < R)
        ring = np.zeros(problem.n_nodes, bool)
        ring[tets[fine[tets].any(axis=1)].ravel()] = True
        shares[R] = {"nodes": float(fine.sum() / free.sum()), "with_neighbours": float(ring[free].sum() / free.sum())}
    return {"nodes": int(free.sum()), "smallest_limit_s": float(2.0 / rho.max()), "shares": shares}


# -- trials ------------------------------------------------------------------------------------------------

def cryofield_trial(case: Case, setting: tuple[float, float], score, repeats: int) -> Trial:
    """cryofield with ``setting`` = (max_dt, max_change): wall time, isotherm error, work."""
    seconds, (problem, temps, stats) = timed(lambda: temperatures_at(with_steps(case, *setting), TIMES), repeats)
    return Trial("cryofield", f"max_dt {setting[0]:g} s, max_change {setting[1]:g} K", seconds,
                 score(input_order(problem, temps)),
                 {"steps": stats.steps, "rejected": stats.rejected,
                  "operator_applications": stats.operator_applications,
                  "full_mesh_equivalent_applications": float(stats.operator_applications)})


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
    default = ours[0]
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
                     "peer/cryofield time at equal accuracy, default steps": figure(rows[0]["ratio"], "ratio")}},
    ]


def run(quick: bool, backend: str = "cpu") -> dict:
    """The graded-sphere study on one core each (``backend`` must be cpu: the peer runs there)."""
    if backend != "cpu":
        raise ValueError("the time-stepping suite compares with the peer on the cpu backend (one core each)")
    sizes = SIZES["quick" if quick else "full"]
    with numba_threads(1), threadpool_limits(1):
        temperatures_at(graded_sphere_case(1.0, 4.0), [1.0])  # compile (or load) the kernels before timing
        return {"records": graded_sphere_study(sizes)}


def tables(result: dict) -> str:
    """The reference radii, every trial with its work, and the peer ratios at equal accuracy."""
    ref, study = result["records"]
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
    return "\n".join(parts)
