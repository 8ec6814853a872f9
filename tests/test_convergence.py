"""Spatial convergence of the P1 discretisation: observed L2 order ≈ 2 (fit with polyfit)."""

import numpy as np

from cryofield.case import parse_case
from cryofield.problem import build_problem, load_mesh
from cryofield.steady import steady_state
from cryofield.verification import l2_error, mesh_size, observed_order, pennes_sphere

SPHERE_CASE = """
name: sphere
mesh:
  generate: {{kind: sphere_octant_shell, inner_radius: 5, outer_radius: 25, size_inner: {h}, size_outer: {H}}}
  units: mm
tissues: {{tissue: {{library: generic}}}}
blood: {{density: 1000, specific_heat: 3600, arterial_temperature: 37}}
boundaries:
  - {{surface: inner, type: fixed, temperature: 10.0}}
  - {{surface: outer, type: fixed, temperature: {T_outer}}}
"""


def test_steady_pennes_sphere_second_order():
    m = np.sqrt(5e-4 * 3.6e6 / 0.5)
    Ta_star = 37.0 + 4200.0 / (5e-4 * 3.6e6)
    r0, r1, theta0 = 5e-3, 25e-3, 10.0 - Ta_star
    T_outer = Ta_star + pennes_sphere(np.array(r1), r0, theta0, m)
    exact = lambda x: Ta_star + pennes_sphere(np.linalg.norm(x, axis=-1), r0, theta0, m)
    sizes, errors = [], []
    for h in (1.1, 0.8, 0.55, 0.4):
        case = parse_case(SPHERE_CASE.format(h=h, H=3 * h, T_outer=float(T_outer)))
        problem = build_problem(case, load_mesh(case))
        T = steady_state(problem, problem.boundary_state(None))
        sizes.append(mesh_size(problem.mesh.points, problem.mesh.tets))
        errors.append(l2_error(problem.mesh.points, problem.mesh.tets, T, exact))
    order = observed_order(np.array(sizes), np.array(errors))
    assert 1.8 <= order <= 2.2, (sizes, errors, order)


MMS_CASE = """
name: mms
mesh:
  generate: {{kind: slab, size: [10, 10, 10], cells: [{n}, {n}, {n}]}}
  units: mm
tissues:
  tissue:
    library: generic
    metabolic_heat: 0
    conductivity_table: [[0, 0.3], [100, 1.3]]
blood: {{density: 1000, specific_heat: 3600, arterial_temperature: 37}}
boundaries:
""" + "".join(f"  - {{{{surface: {s}, type: fixed, temperature: 37}}}}\n"
              for s in ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax"))


def manufactured(x, L=10e-3, T0=37.0, A=20.0):
    """u = T0 + A sin(πx/L) sin(πy/L) sin(πz/L), its Laplacian and squared gradient."""
    s = np.sin(np.pi * x / L)
    c = np.cos(np.pi * x / L)
    k = np.pi / L
    u = T0 + A * s[..., 0] * s[..., 1] * s[..., 2]
    lap = -3 * k**2 * (u - T0)
    grad2 = (A * k) ** 2 * ((c[..., 0] * s[..., 1] * s[..., 2]) ** 2 + (s[..., 0] * c[..., 1] * s[..., 2]) ** 2
                            + (s[..., 0] * s[..., 1] * c[..., 2]) ** 2)
    return u, lap, grad2


def test_manufactured_variable_conductivity_and_perfusion_second_order():
    """k(T) = 0.3 + 0.01 T (a conductivity table), perfusion varying in space; f from the exact solution."""
    sizes, errors = [], []
    for n in (6, 12, 24, 36):
        case = parse_case(MMS_CASE.format(n=n))
        problem = build_problem(case, load_mesh(case))
        x = problem.mesh.points
        P = 1800.0 * (1.0 + 0.8 * np.sin(np.pi * x[:, 0] / 10e-3) * np.cos(np.pi * x[:, 1] / 20e-3))
        problem.perfusion = P
        u, lap, grad2 = manufactured(x)
        k, dk = 0.3 + 0.01 * u, 0.01
        # -div(k(u) grad u) + P (u - T_a) = f
        f = -k * lap - dk * grad2 + P * (u - 37.0)
        T = steady_state(problem, problem.boundary_state(None), extra_source=f * problem.lumped, tol=1e-10)
        sizes.append(mesh_size(x, problem.mesh.tets))
        errors.append(l2_error(x, problem.mesh.tets, T, lambda p: manufactured(p)[0]))
    order = observed_order(np.array(sizes), np.array(errors))
    assert 1.8 <= order <= 2.2, (sizes, errors, order)
