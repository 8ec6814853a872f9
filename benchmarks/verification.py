"""Verification suite: errors against the closed forms of docs/physics.md §7 and observed orders of convergence.

Every study runs a refinement series and reports, for each mesh, its size h and its error; the observed
order is the least-squares slope of log(error) against log(h) (:func:`cryofield.fem.closed_forms.observed_order`).
h is the cell length in the refined direction on the structured slabs and sectors, and the cube root of the
mean element volume (:func:`cryofield.fem.closed_forms.mesh_size`) on the cube and the unstructured sphere.

Norms
-----
front
    relative front position error X_h / X - 1 (signed), the -1 °C crossing read along the x axis, at 60 s
    and 90 s, and its root mean square over the times 10, 12, ..., 90 s (the single-time errors oscillate
    as the front passes nodes; the order is fitted to the RMS).
L2
    ||T_h - T||_L2 / sqrt(|Ω|), the root-mean-square temperature error (K), degree-3 quadrature.
H1
    ||grad(T_h - T)||_L2 / sqrt(|Ω|) (K/m).

The suite runs single-threaded: its meshes are small, and under a shared load thread start-up would
dominate. Only accuracy is measured here; speed belongs to the performance suite.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cryofield.config.case import Case, parse_case
from cryofield.fem.closed_forms import (
    h1_seminorm_error,
    l2_error,
    line_sink_lambda,
    line_sink_temperature,
    manufactured_sine,
    mesh_size,
    neumann_lambda,
    observed_order,
    pennes_1d_step,
    pennes_cylinder,
    pennes_cylinder_robin,
    pennes_sphere,
    pennes_sphere_robin,
    planar_front_position,
)
from cryofield.fem.geometry import gradients_and_volumes
from cryofield.mesh.sources import mesh_of
from cryofield.model.schedule import phases
from cryofield.problem.assemble import Problem, build_problem
from cryofield.problem.steady import steady_state

from .common import GENERIC_BLOOD, markdown_table, numba_threads, temperatures_at
from .compare import figure
from .geometry import annular_sector, write_case_mesh

NAME = "verification"

#: Generic tissue (docs/physics.md §3) with GENERIC_BLOOD: m = sqrt(w_b rho_b c_b / k) and
#: T_a* = T_a + Q_m / (w_b rho_b c_b).
GENERIC = {"k": 0.5, "C": 3.6e6, "perfusion": 5e-4 * 3.6e6, "metabolic": 4200.0}
M_GENERIC = float(np.sqrt(GENERIC["perfusion"] / GENERIC["k"]))
TA_STAR = 37.0 + GENERIC["metabolic"] / GENERIC["perfusion"]

#: Isothermal freezing at -1 °C approximated by a 1 K mushy interval (generic tissue, no perfusion or heat).
FREEZING_TISSUE = "{library: generic, perfusion: 0, metabolic_heat: 0, solidus: -1.5, liquidus: -0.5}"

SIZES = {
    "quick": {"neumann": [75, 150, 300, 600], "sphere": [1.1, 0.8, 0.55], "cylinder": [10, 20, 40],
              "step": [25, 50, 100, 200], "manufactured": [6, 12, 24], "line_sink": [0.4, 0.2, 0.1, 0.05],
              "robin_sphere": [1.1, 0.8, 0.55], "vessel": [10, 20, 40]},
    "full": {"neumann": [75, 150, 300, 600, 1200, 2400], "sphere": [1.1, 0.8, 0.55, 0.4, 0.3],
             "cylinder": [10, 20, 40, 80, 160], "step": [25, 50, 100, 200, 400, 800],
             "manufactured": [6, 12, 24, 36, 48], "line_sink": [0.4, 0.2, 0.1, 0.05, 0.025, 0.0125],
             "robin_sphere": [1.1, 0.8, 0.55, 0.4, 0.3], "vessel": [10, 20, 40, 80, 160]},
}


def study(study_id: str, title: str, norms: dict[str, str], expected: dict[str, float], h: list[float],
          nodes: list[int], errors: dict[str, list[float]], seconds: float, note: str = "") -> dict:
    """One study's record: the series, the observed order of each norm in ``expected`` and the figures.

    Figures (what ``--compare`` checks): every norm's error on the finest mesh (``error``) and the
    observed order of each norm with an expected order (``order``).
    """
    orders = {k: observed_order(np.array(h), np.abs(np.array(errors[k]))) for k in expected}
    figures = {f"{k} error, finest": figure(abs(v[-1]), "error") for k, v in errors.items()}
    figures.update({f"{k} order": figure(orders[k], "order") for k in expected})
    return {"id": study_id, "title": title, "norms": norms, "expected_order": expected, "h_m": h, "nodes": nodes,
            "errors": errors, "observed_order": orders, "seconds": seconds, "note": note, "figures": figures}


def fill_case(template: str, **values) -> Case:
    """Parse a case template of this module, filling in the shared blood and freezing tissue."""
    return parse_case(template.format(blood=GENERIC_BLOOD, tissue=FREEZING_TISSUE, **values))


def rms_error(points: np.ndarray, tets: np.ndarray, T: np.ndarray, exact: Callable[[np.ndarray], np.ndarray]) -> float:
    """L2 error divided by sqrt(volume): the root-mean-square error (K)."""
    volume = float(gradients_and_volumes(points, tets)[1].sum())
    return l2_error(points, tets, T, exact) / np.sqrt(volume)


def _relative_front(points: np.ndarray, T: np.ndarray, exact: float) -> float:
    return planar_front_position(points, T, -1.0) / exact - 1.0


# -- Neumann planar freezing ---------------------------------------------------------------------------------

NEUMANN_CASE = """
name: neumann
mesh: {{generate: {{kind: slab, size: [30, 1, 1], cells: [{n}, 1, 1]}}, units: mm}}
tissues: {{tissue: {tissue}}}
probes: [{{name: cold_face, surface: xmin}}]
protocol: [{{kind: freeze, duration: 90, temperature: -88}}]
initial: {{type: uniform, temperature: 37}}
"""


FRONT_TIMES = [float(t) for t in range(10, 91, 2)]


def front_errors(points: np.ndarray, temps: list[np.ndarray], exact: list[float]) -> dict[str, float]:
    """Signed relative front errors at 60 s and 90 s and their RMS over :data:`FRONT_TIMES` (``points`` in m)."""
    e = np.array([_relative_front(points, T, x) for T, x in zip(temps, exact)])
    return {"front 60 s": e[FRONT_TIMES.index(60.0)], "front 90 s": e[FRONT_TIMES.index(90.0)],
            "front RMS 10-90 s": float(np.sqrt(np.mean(e**2)))}


FRONT_NORMS = {"front 60 s": "relative front error at 60 s", "front 90 s": "relative front error at 90 s",
               "front RMS 10-90 s": "RMS over 10-90 s of the relative front error"}
L2_NORM = {"L2": "L2 norm of T_h - T over sqrt(volume) (K)"}
H1_NORM = {"H1": "L2 norm of grad(T_h - T) over sqrt(volume) (K/m)"}


def neumann_front(cells: int, backend: str = "cpu") -> tuple[Problem, dict[str, float]]:
    """Front errors (:func:`front_errors`) of the Neumann problem on a ``cells``-long slab (default steps)."""
    case = fill_case(NEUMANN_CASE, n=cells)
    problem, temps, _ = temperatures_at(case, FRONT_TIMES, backend)
    return problem, front_errors(problem.mesh.points, temps, neumann_front_exact(case, FRONT_TIMES))


def neumann_front_exact(case: Case, times: list[float], surface: float = -88.0) -> list[float]:
    """X(t) = 2 λ sqrt(α_s t) (m) for the tissue of a Neumann case (front at -1 °C, start at 37 °C)."""
    mat = case.materials()["tissue"]
    lam = neumann_lambda(mat.conductivity_frozen, mat.conductivity, mat.heat_capacity_frozen,
                         mat.heat_capacity_unfrozen, mat.latent_heat, surface, -1.0, 37.0)
    return [2 * lam * np.sqrt(mat.conductivity_frozen / mat.heat_capacity_frozen * t) for t in times]


def neumann_planar(mode: str, backend: str = "cpu") -> dict:
    """Two-phase planar freezing: the front against X = 2 λ sqrt(α_s t)."""
    t0 = time.perf_counter()
    h, nodes, errors = [], [], {k: [] for k in FRONT_NORMS}
    for cells in SIZES[mode]["neumann"]:
        problem, e = neumann_front(cells, backend)
        h.append(30e-3 / cells)
        nodes.append(problem.n_nodes)
        for k in FRONT_NORMS:
            errors[k].append(e[k])
    return study("neumann_planar", "Neumann two-phase planar freezing (face at -88 °C, 1 K mushy interval)",
                 FRONT_NORMS, {"front RMS 10-90 s": 1.0}, h, nodes, errors, time.perf_counter() - t0,
                 "h is the cell length along x; default steps (max_dt 2 s, max_change 10 K); signed errors at "
                 "60 s and 90 s (they oscillate as the front crosses nodes, so the order is fitted to the RMS)")


# -- steady Pennes around a sphere and a cylinder -----------------------------------------------------------

SPHERE_CASE = """
name: sphere
mesh:
  generate: {{kind: sphere_octant_shell, inner_radius: 5, outer_radius: 25, size_inner: {h}, size_outer: {H}}}
  units: mm
tissues: {{tissue: {{library: generic}}}}
{blood}
boundaries:
  - {{surface: inner, type: fixed, temperature: 10.0}}
  - {{surface: outer, type: fixed, temperature: {T_outer}}}
"""


def steady_error(problem: Problem, exact: Callable[[np.ndarray], np.ndarray]) -> float:
    """RMS error of the steady state of ``problem`` (its base boundary conditions) against ``exact``."""
    T = steady_state(problem, problem.boundary_state(None), tol=1e-10)
    return rms_error(problem.mesh.points, problem.mesh.tets, T, exact)


SPHERE = {"r0": 5e-3, "r1": 25e-3, "theta0": 10.0 - TA_STAR}


def sphere_exact(x: np.ndarray) -> np.ndarray:
    """The steady temperature around the sphere of :data:`SPHERE_CASE` (°C) at points ``x`` (m)."""
    return TA_STAR + pennes_sphere(np.linalg.norm(x, axis=-1), SPHERE["r0"], SPHERE["theta0"], M_GENERIC)


def sphere_case(size: float) -> Case:
    """The sphere case with element size ``size`` mm at the sphere (3 x at the outer surface)."""
    return fill_case(SPHERE_CASE, h=size, H=3 * size, T_outer=float(sphere_exact(np.array([SPHERE["r1"], 0, 0]))))


def pennes_sphere_study(sizes: list[float]) -> dict:
    """Steady Pennes around a sphere r0 = 5 mm at 10 °C, outer sphere 25 mm at the closed form (gmsh meshes)."""
    t0 = time.perf_counter()
    h, nodes, errors = [], [], []
    for size in sizes:
        case = sphere_case(size)
        problem = build_problem(case, mesh_of(case))
        h.append(mesh_size(problem.mesh.points, problem.mesh.tets))
        nodes.append(problem.n_nodes)
        errors.append(steady_error(problem, sphere_exact))
    return study("pennes_sphere", "Steady Pennes around a sphere (octant shell 5-25 mm, unstructured)", L2_NORM,
                 {"L2": 2.0}, h, nodes, {"L2": errors}, time.perf_counter() - t0,
                 "element size grows from h at the sphere to 3h at the outer surface")


def pennes_sphere_series(mode: str, backend: str = "cpu") -> dict:
    return pennes_sphere_study(SIZES[mode]["sphere"])


CYLINDER_CASE = """
name: cylinder
mesh: {{file: {mesh}, units: mm}}
tissues: {{tissue: {{library: generic}}}}
{blood}
boundaries:
  - {{surface: inner, type: fixed, temperature: 10.0}}
  - {{surface: outer, type: fixed, temperature: {T_outer}}}
"""


def pennes_cylinder_series(mode: str, backend: str = "cpu") -> dict:
    """Steady Pennes around a cylinder r0 = 5 mm at 10 °C: a quarter annulus to 25 mm, one layer thick in z."""
    t0 = time.perf_counter()
    r0, r1, theta0 = 5e-3, 25e-3, 10.0 - TA_STAR
    T_outer = TA_STAR + float(pennes_cylinder(np.array(r1), r0, theta0, M_GENERIC))

    def exact(x: np.ndarray) -> np.ndarray:
        return TA_STAR + pennes_cylinder(np.hypot(x[..., 0], x[..., 1]), r0, theta0, M_GENERIC)

    h, nodes, errors = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES[mode]["cylinder"]:
            mesh = annular_sector(r0, r1, np.pi / 2, 1e-3, n, n)
            path = write_case_mesh(mesh, Path(tmp), f"cylinder_{n}")
            case = fill_case(CYLINDER_CASE, mesh=path, T_outer=T_outer)
            problem = build_problem(case, mesh_of(case))
            h.append((r1 - r0) / n)
            nodes.append(problem.n_nodes)
            errors.append(steady_error(problem, exact))
    return study("pennes_cylinder", "Steady Pennes around a cylinder (quarter annulus 5-25 mm, structured)",
                 L2_NORM, {"L2": 2.0}, h, nodes, {"L2": errors}, time.perf_counter() - t0,
                 "h is the radial cell length; n x n cells in (r, θ), one 1 mm layer in z (insulated faces)")


# -- the cryogen probe and the vessel wall: steady Pennes with a Robin film on the inner surface --------------

ROBIN_SPHERE_CASE = """
name: robin_sphere
mesh:
  generate: {{kind: sphere_octant_shell, inner_radius: 5, outer_radius: 25, size_inner: {h}, size_outer: {H}}}
  units: mm
tissues: {{tissue: {{library: generic}}}}
{blood}
probes: [{{name: probe, surface: inner, model: cryogen, cryogen: n2o, cryogen_temperature: {T_fluid},
          heat_transfer_coefficient: {film}}}]
protocol: [{{kind: freeze, duration: 1}}]
boundaries: [{{surface: outer, type: fixed, temperature: {T_outer}}}]
"""

#: The cryogen-probe study: a 5 mm sphere whose cryogen (a warm one, so nothing freezes and the closed
#: form holds) sits behind a film of h = 300 W/m²/K (Biot number h r0 / k = 3), the outer sphere at 25 mm
#: at 30 °C.
ROBIN_SPHERE = {"r0": 5e-3, "r1": 25e-3, "T_fluid": 5.0, "h": 300.0, "T_outer": 30.0}


def robin_sphere_series(mode: str, backend: str = "cpu") -> dict:
    """The ``cryogen`` probe's Robin term: steady Pennes around a sphere exchanging with its fluid through a film."""
    t0 = time.perf_counter()
    p = ROBIN_SPHERE
    k = GENERIC["k"]

    def exact(x: np.ndarray) -> np.ndarray:
        return TA_STAR + pennes_sphere_robin(np.linalg.norm(x, axis=-1), p["r0"], p["r1"], p["T_fluid"] - TA_STAR,
                                             p["T_outer"] - TA_STAR, p["h"], k, M_GENERIC)

    h, nodes, errors = [], [], []
    for size in SIZES[mode]["robin_sphere"]:
        case = fill_case(ROBIN_SPHERE_CASE, h=size, H=3 * size, T_fluid=p["T_fluid"], film=p["h"],
                         T_outer=p["T_outer"])
        problem = build_problem(case, mesh_of(case))
        freeze = phases(case.protocol)[0]
        T = steady_state(problem, problem.boundary_state(freeze), tol=1e-10)
        h.append(mesh_size(problem.mesh.points, problem.mesh.tets))
        nodes.append(problem.n_nodes)
        errors.append(rms_error(problem.mesh.points, problem.mesh.tets, T, exact))
    return study("robin_sphere", "Cryogen probe: steady Pennes around a sphere behind a film (Robin, h r0/k = 3)",
                 L2_NORM, {"L2": 2.0}, h, nodes, {"L2": errors}, time.perf_counter() - t0,
                 "the cryogen model in a freeze at 5 °C behind h = 300 W/m²/K; octant shell 5-25 mm, element size "
                 "h at the sphere to 3h at the outer surface (held at 30 °C)")


VESSEL_CASE = """
name: vessel
mesh: {{file: {mesh}, units: mm}}
tissues: {{tissue: {{library: generic}}}}
{blood}
boundaries:
  - {{surface: inner, type: vessel, diameter: {diameter}, flow_rate: 37.5}}
  - {{surface: outer, type: fixed, temperature: {T_outer}}}
"""

#: The vessel study: the occipital artery (2.5 mm, 37.5 mL/min, Hausen over 10 mm) in tissue whose outer
#: cylinder, 15 mm out, is held at 10 °C (a cold probe's surroundings): the vessel warms the tissue round it.
VESSEL = {"r0": 1.25e-3, "r1": 15e-3, "T_outer": 10.0}


def vessel_cylinder_series(mode: str, backend: str = "cpu") -> dict:
    """The ``vessel`` wall's Robin term (h from its Nusselt correlation): steady Pennes round a convective
    cylinder, against the K0/I0 closed form with the model's own h."""
    t0 = time.perf_counter()
    p = VESSEL
    h_film = None
    h, nodes, errors = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES[mode]["vessel"]:
            mesh = annular_sector(p["r0"], p["r1"], np.pi / 2, 1e-3, n, n)
            path = write_case_mesh(mesh, Path(tmp), f"vessel_{n}")
            case = fill_case(VESSEL_CASE, mesh=path, diameter=2e3 * p["r0"], T_outer=p["T_outer"])
            problem = build_problem(case, mesh_of(case))
            h_film = problem.boundaries.models[0].h

            def exact(x: np.ndarray) -> np.ndarray:
                return TA_STAR + pennes_cylinder_robin(np.hypot(x[..., 0], x[..., 1]), p["r0"], p["r1"],
                                                       37.0 - TA_STAR, p["T_outer"] - TA_STAR, h_film, GENERIC["k"],
                                                       M_GENERIC)

            h.append((p["r1"] - p["r0"]) / n)
            nodes.append(problem.n_nodes)
            errors.append(steady_error(problem, exact))
    return study("vessel_cylinder", "Vessel heat sink: steady Pennes round a convective cylinder (occipital artery)",
                 L2_NORM, {"L2": 2.0}, h, nodes, {"L2": errors}, time.perf_counter() - t0,
                 f"the vessel model on the lumen wall of a 2.5 mm artery, 37.5 mL/min: h = {h_film:.0f} W/m²/K "
                 "(Hausen over 10 mm), blood at 37 °C; quarter annulus to 15 mm (held at 10 °C), one 1 mm layer")


# -- transient 1-D Pennes after a surface step --------------------------------------------------------------

STEP_CASE = """
name: pennes_step
mesh: {{generate: {{kind: slab, size: [20, 0.5, 0.5], cells: [{n}, 1, 1]}}, units: mm}}
tissues: {{tissue: {{library: generic, metabolic_heat: 0}}}}
{blood}
probes: [{{name: face, surface: xmin}}]
protocol: [{{kind: hold, duration: 60, temperature: 10}}]
initial: {{type: uniform, temperature: 37}}
solver: {{max_dt: {max_dt}, max_change: {max_change}}}
"""


def pennes_1d_step_series(mode: str, backend: str = "cpu") -> dict:
    """The face of a 20 mm slab at basal 37 °C (no metabolism) steps to 10 °C; the profile at 60 s.

    Space and time are refined together: max_dt and max_change scale with h (2 s and 10 K at 25 cells).
    """
    t0 = time.perf_counter()
    beta = GENERIC["perfusion"] / GENERIC["C"]
    alpha = GENERIC["k"] / GENERIC["C"]

    def exact(x: np.ndarray) -> np.ndarray:
        return 37.0 + pennes_1d_step(x[..., 0], 60.0, 10.0 - 37.0, M_GENERIC, alpha, beta)

    h, nodes, errors = [], [], []
    for n in SIZES[mode]["step"]:
        scale = 25 / n
        case = fill_case(STEP_CASE, n=n, max_dt=2.0 * scale, max_change=10.0 * scale)
        problem, (T,), _ = temperatures_at(case, [60.0], backend)
        h.append(20e-3 / n)
        nodes.append(problem.n_nodes)
        errors.append(rms_error(problem.mesh.points, problem.mesh.tets, T, exact))
    return study("pennes_1d_step", "Transient 1-D Pennes after a surface step to 10 °C (profile at 60 s)",
                 L2_NORM, {"L2": 2.0}, h, nodes, {"L2": errors}, time.perf_counter() - t0,
                 "h is the cell length along x; max_dt and max_change refined with h")


# -- manufactured solution, variable k(T) and perfusion -----------------------------------------------------

MMS_CASE = """
name: manufactured
mesh: {{generate: {{kind: slab, size: [10, 10, 10], cells: [{n}, {n}, {n}]}}, units: mm}}
tissues:
  tissue: {{library: generic, metabolic_heat: 0, conductivity_table: [[0, 0.3], [100, 1.3]]}}
{blood}
boundaries:
""" + "".join(f"  - {{{{surface: {s}, type: fixed, temperature: 37}}}}\n"
              for s in ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax"))

MMS_LENGTH, MMS_AMPLITUDE = 10e-3, 20.0


def manufactured_study(cells: list[int]) -> dict:
    """Steady -div(k(T) grad T) + P(x) (T - T_a) = f on a 10 mm cube, k(T) = 0.3 + 0.01 T, P varying in space.

    u = 37 + 20 sin(πx/L) sin(πy/L) sin(πz/L); f is computed from u and added as a nodal source.
    """
    t0 = time.perf_counter()
    h, nodes, l2, h1 = [], [], [], []
    for n in cells:
        case = fill_case(MMS_CASE, n=n)
        problem = build_problem(case, mesh_of(case))
        x = problem.mesh.points
        P = GENERIC["perfusion"] * (1.0 + 0.8 * np.sin(np.pi * x[:, 0] / MMS_LENGTH)
                                    * np.cos(np.pi * x[:, 1] / (2 * MMS_LENGTH)))
        problem.perfusion = P
        u, grad, lap = manufactured_sine(x, MMS_LENGTH, 37.0, MMS_AMPLITUDE)
        # -div(k(u) grad u) + P (u - T_a) = f with k = 0.3 + 0.01 u
        f = -(0.3 + 0.01 * u) * lap - 0.01 * np.sum(grad**2, axis=1) + P * (u - 37.0)
        T = steady_state(problem, problem.boundary_state(None), extra_source=f * problem.lumped, tol=1e-10)
        tets = problem.mesh.tets
        h.append(mesh_size(x, tets))
        nodes.append(problem.n_nodes)
        l2.append(rms_error(x, tets, T, lambda p: manufactured_sine(p, MMS_LENGTH, 37.0, MMS_AMPLITUDE)[0]))
        h1.append(h1_seminorm_error(x, tets, T, lambda p: manufactured_sine(p, MMS_LENGTH, 37.0, MMS_AMPLITUDE)[1])
                  / np.sqrt(MMS_LENGTH**3))
    return study("manufactured", "Manufactured solution, k(T) = 0.3 + 0.01 T and perfusion varying in space",
                 L2_NORM | H1_NORM, {"L2": 2.0, "H1": 1.0}, h, nodes, {"L2": l2, "H1": h1},
                 time.perf_counter() - t0, "structured cube, n³ cells of six tetrahedra; lumped source")


def manufactured_series(mode: str, backend: str = "cpu") -> dict:
    return manufactured_study(SIZES[mode]["manufactured"])


# -- line heat sink with freezing ---------------------------------------------------------------------------

LINE_SINK_CASE = """
name: line_sink
mesh: {{file: {mesh}, units: mm}}
tissues: {{tissue: {tissue}}}
initial: {{type: uniform, temperature: 37}}
boundaries: [{{surface: inner, type: flux, heat_flux: {flux}}}]
"""

#: Sink strength (W/m), probe radius, outer radius (m), sector angle (rad) and start time (s) of the line-sink study.
LINE_SINK = {"Q": 300.0, "r_probe": 0.2e-3, "r_outer": 15e-3, "angle": 0.02, "start": 5.0}


def line_sink_properties(case: Case) -> tuple[float, ...]:
    """(k_s, k_l, C_s, C_l, L, T_m, T_i) of the case's tissue for the line-sink closed forms."""
    mat = case.materials()["tissue"]
    return (mat.conductivity_frozen, mat.conductivity, mat.heat_capacity_frozen, mat.heat_capacity_unfrozen,
            mat.latent_heat, -1.0, 37.0)


def line_sink_start(props: tuple[float, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """The closed-form temperature at the study's start time, as a function of the node coordinates."""
    p = LINE_SINK
    return lambda x: line_sink_temperature(np.hypot(x[:, 0], x[:, 1]), p["start"], p["Q"], *props)


def line_sink_series(mode: str, backend: str = "cpu") -> dict:
    """Freezing around a line sink of 300 W/m: a 0.2 mm probe drawing Q/(2π r_p) through a thin sector.

    The front against R = 2 λ sqrt(α_s t) (Carslaw & Jaeger §11.2). The run starts at t = 5 s from the
    closed-form temperature field: from t = 0 the finite probe would draw Q where the line sink draws
    Q exp(-r_p²/4α_s t) through r_p, putting the front 0.3 % ahead at 10 s; from 5 s on the excess is
    below 0.02 % of the heat drawn.
    """
    t0 = time.perf_counter()
    p = LINE_SINK
    times = [t - p["start"] for t in FRONT_TIMES]
    h, nodes, errors = [], [], {k: [] for k in FRONT_NORMS}
    with tempfile.TemporaryDirectory() as tmp:
        for dr in SIZES[mode]["line_sink"]:
            n = round((p["r_outer"] - p["r_probe"]) / (dr * 1e-3))
            mesh = annular_sector(p["r_probe"], p["r_outer"], p["angle"], 0.5e-3, n, 1)
            path = write_case_mesh(mesh, Path(tmp), f"line_sink_{n}")
            case = fill_case(LINE_SINK_CASE, mesh=path, flux=-p["Q"] / (2 * np.pi * p["r_probe"]))
            props = line_sink_properties(case)
            problem, temps, _ = temperatures_at(case, times, backend, initial=line_sink_start(props))
            lam = line_sink_lambda(p["Q"], *props)
            exact = [2 * lam * np.sqrt(props[0] / props[2] * t) for t in FRONT_TIMES]
            e = front_errors(problem.mesh.points, temps, exact)
            h.append(dr * 1e-3)
            nodes.append(problem.n_nodes)
            for k in FRONT_NORMS:
                errors[k].append(e[k])
    return study("line_sink", "Freezing around a line heat sink, Q = 300 W/m (flux boundary on a 0.2 mm probe)",
                 FRONT_NORMS, {"front RMS 10-90 s": 1.0}, h, nodes, errors, time.perf_counter() - t0,
                 "h is the radial cell length; 0.02 rad sector; from the closed form at 5 s; default steps; signed "
                 "errors at 60 s and 90 s")


STUDIES = [neumann_planar, pennes_sphere_series, pennes_cylinder_series, pennes_1d_step_series,
           manufactured_series, line_sink_series, robin_sphere_series, vessel_cylinder_series]


def run(quick: bool, backend: str = "cpu") -> dict:
    """Every study of the suite on ``backend`` (the transient studies step on it; the steady ones are host solves)."""
    mode = "quick" if quick else "full"
    with numba_threads(1):
        return {"records": [s(mode, backend) for s in STUDIES]}


def tables(result: dict) -> str:
    """The summary table (error on the finest mesh, observed and expected order) and one table per study."""
    rows = []
    for r in result["records"]:
        for norm, errors in r["errors"].items():
            fitted = norm in r["expected_order"]
            rows.append([r["title"], r["norms"][norm], f"{abs(errors[-1]):.3e}",
                         f"{r['observed_order'][norm]:.2f}" if fitted else "",
                         f"{r['expected_order'][norm]:g}" if fitted else "", len(errors)])
    parts = ["### Verification summary\n", markdown_table(["study", "norm", "error, finest mesh", "observed order",
                                                           "expected order", "meshes"], rows)]
    for r in result["records"]:
        norms = list(r["errors"])
        body = [[f"{h * 1e3:.4g}", n, *[f"{r['errors'][k][i]:+.3e}" for k in norms]]
                for i, (h, n) in enumerate(zip(r["h_m"], r["nodes"]))]
        parts += [f"\n#### {r['title']}\n", markdown_table(["h (mm)", "nodes", *norms], body),
                  f"\n{r['note']}; {r['seconds']:.1f} s."]
    return "\n".join(parts)
