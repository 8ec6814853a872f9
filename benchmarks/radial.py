"""The graded spherical probe and its 1-D radial enthalpy reference (:mod:`benchmarks.timestepping`'s problem).

A spherical cryoprobe (radius 1 mm) at -88 °C freezes muscle for 90 s in an octant mesh graded from the
probe; :func:`radial_reference` solves the same equation in r alone on a fine uniform grid, and
:func:`equivalent_radii` reads the mesh's isotherm radii from the exact P1 volumes (docs/physics.md §7).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cryofield.config.case import Case
from cryofield.fem.geometry import gradients_and_volumes
from cryofield.fem.metrics import volumes_below
from cryofield.kernels import pointwise
from cryofield.model.materials import build_tables, maximum_conductivity, minimum_capacity
from cryofield.run.plan import prepare

from .verification import fill_case

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

def level_volumes(points: np.ndarray, tets: np.ndarray, temps: list[np.ndarray], levels: list[float]) -> np.ndarray:
    """(len(temps), len(levels)) mesh volume (m³) at or below each level of each field (exact for P1)."""
    volumes = gradients_and_volumes(points, tets)[1]
    group = np.zeros(len(tets), np.int64)
    return np.array([volumes_below(T, tets, volumes, group, 1, levels)[:, 0] for T in temps])


def equivalent_radii(points: np.ndarray, tets: np.ndarray, temps: list[np.ndarray]) -> np.ndarray:
    """(len(temps), len(LEVELS)) radius (m) of the sphere whose octant beyond the probe holds the octant
    volume at or below each level: r³ = r0³ + 6 V / π."""
    r0 = SPHERE["r0"] * 1e-3
    return (r0**3 + 6.0 / np.pi * level_volumes(points, tets, temps, LEVELS)) ** (1 / 3)


def isotherm_error(radii: np.ndarray, reference: np.ndarray) -> float:
    """Largest relative isotherm-radius difference over every level and time."""
    return float(np.max(np.abs(radii / reference - 1.0)))


# -- how unevenly the limit is spread --------------------------------------------------------------------------

#: Ratios R of the limit-spread figures: the share of nodes whose own limit is below R x the smallest.
SPREAD_RATIOS = [4, 16, 64, 256]


def limit_spread(case: Case) -> dict:
    """The share of nodes whose own forward-Euler limit (the Gershgorin row bound during the freeze,
    :meth:`cryofield.problem.assemble.Problem.nodal_spectral_radius`) is below R times the mesh's smallest, alone
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
