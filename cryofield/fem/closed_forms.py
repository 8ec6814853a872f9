"""Closed-form references (docs/physics.md §7) and error norms, shared by the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import erf, erfc, exp1

from cryofield.fem.geometry import gradients_and_volumes

# Degree-3 rule on the reference tetrahedron (Keast #2: 5 points, one negative weight), barycentric.
_KEAST_BARY = np.array([[0.25, 0.25, 0.25, 0.25],
                        [0.5, 1 / 6, 1 / 6, 1 / 6], [1 / 6, 0.5, 1 / 6, 1 / 6],
                        [1 / 6, 1 / 6, 0.5, 1 / 6], [1 / 6, 1 / 6, 1 / 6, 0.5]])
_KEAST_W = np.array([-0.8, 0.45, 0.45, 0.45, 0.45])


def neumann_lambda(k_s: float, k_l: float, C_s: float, C_l: float, L: float, T_surface: float, T_m: float,
                   T_initial: float) -> float:
    """λ of the two-phase Neumann solution, X(t) = 2 λ sqrt(α_s t).

    Root of exp(-λ²)/erf(λ) - (k_l/k_s) ν (T_i - T_m)/(T_m - T_s) exp(-λ²ν²)/erfc(λν) = λ√π/St with
    ν = sqrt(α_s/α_l), St = C_s (T_m - T_s)/L (volumetric capacities).

    Examples
    --------
    >>> round(neumann_lambda(2.0, 0.5, 1.8e6, 3.6e6, 250e6, -88.0, -1.0, 37.0), 4)
    0.4073
    """
    nu = np.sqrt((k_s / C_s) / (k_l / C_l))
    St = C_s * (T_m - T_surface) / L

    def f(lam: float) -> float:
        return (np.exp(-lam**2) / erf(lam)
                - (k_l / k_s) * nu * (T_initial - T_m) / (T_m - T_surface) * np.exp(-(lam * nu) ** 2) / erfc(lam * nu)
                - lam * np.sqrt(np.pi) / St)

    return float(brentq(f, 1e-4, 5.0))


def line_sink_lambda(Q: float, k_s: float, k_l: float, C_s: float, C_l: float, L: float, T_m: float,
                     T_initial: float) -> float:
    """λ of freezing around a line heat sink of strength ``Q`` (W/m drawn out), front R(t) = 2 λ sqrt(α_s t).

    Carslaw & Jaeger §11.2: root of (Q/4π) exp(-λ²) - k_l (T_i - T_m) exp(-λ² α_s/α_l)/E1(λ² α_s/α_l)
    = L α_s λ² (volumetric capacities ``C_s``, ``C_l`` and latent heat ``L``).

    Examples
    --------
    >>> lam = line_sink_lambda(300.0, 2.0, 0.5, 1.8e6, 3.6e6, 250e6, -1.0, 37.0)
    >>> round(lam, 4)
    0.1783
    """
    alpha_s, alpha_l = k_s / C_s, k_l / C_l

    def f(lam: float) -> float:
        z = lam**2 * alpha_s / alpha_l
        return (Q / (4 * np.pi) * np.exp(-lam**2) - k_l * (T_initial - T_m) * np.exp(-z) / exp1(z)
                - L * alpha_s * lam**2)

    return float(brentq(f, 1e-6, 5.0))


def line_sink_temperature(r: np.ndarray, t: float, Q: float, k_s: float, k_l: float, C_s: float, C_l: float,
                          L: float, T_m: float, T_initial: float) -> np.ndarray:
    """Temperature at radius ``r`` (m) and time ``t`` around the line sink of :func:`line_sink_lambda`.

    Frozen, r < R: T = T_m - (Q/4π k_s) [E1(r²/4α_s t) - E1(λ²)]; unfrozen: T = T_i - (T_i - T_m)
    E1(r²/4α_l t)/E1(λ² α_s/α_l) (Carslaw & Jaeger §11.2).
    """
    alpha_s, alpha_l = k_s / C_s, k_l / C_l
    lam = line_sink_lambda(Q, k_s, k_l, C_s, C_l, L, T_m, T_initial)
    r2 = np.asarray(r, float) ** 2
    frozen = T_m - Q / (4 * np.pi * k_s) * (exp1(r2 / (4 * alpha_s * t)) - exp1(lam**2))
    unfrozen = T_initial - (T_initial - T_m) * exp1(r2 / (4 * alpha_l * t)) / exp1(lam**2 * alpha_s / alpha_l)
    return np.where(r2 < 4 * lam**2 * alpha_s * t, frozen, unfrozen)


def planar_front_position(points: np.ndarray, T: np.ndarray, level: float) -> float:
    """Where T crosses ``level`` along the edge y = z = 0 of a slab (linear interpolation between nodes)."""
    line = (np.abs(points[:, 1]) < 1e-12) & (np.abs(points[:, 2]) < 1e-12)
    order = np.argsort(points[line, 0])
    x, t = points[line, 0][order], T[line][order]
    i = int(np.argmax(t > level))
    return float(x[i - 1] + (level - t[i - 1]) / (t[i] - t[i - 1]) * (x[i] - x[i - 1]))


def pennes_sphere(r: np.ndarray, r0: float, theta0: float, m: float) -> np.ndarray:
    """Steady excess temperature θ = θ0 (r0/r) exp(-m (r - r0)) around a sphere of radius r0."""
    return theta0 * (r0 / r) * np.exp(-m * (r - r0))


def pennes_cylinder(r: np.ndarray, r0: float, theta0: float, m: float) -> np.ndarray:
    """Steady excess temperature θ = θ0 K0(m r)/K0(m r0) around a cylinder of radius r0."""
    from scipy.special import k0

    return theta0 * k0(m * r) / k0(m * r0)


def _robin_inner(f: Callable, df: Callable, r0: float, r1: float, theta_fluid: float, theta1: float, h: float,
                 k: float) -> tuple[float, float]:
    """Constants (A, B) of θ = A f_1(r) + B f_2(r) with k θ'(r0) = h (θ(r0) - θ_fluid) and θ(r1) = θ1."""
    f1, f2 = f(r0)
    d1, d2 = df(r0)
    g1, g2 = f(r1)
    matrix = np.array([[k * d1 - h * f1, k * d2 - h * f2], [g1, g2]])
    return tuple(np.linalg.solve(matrix, np.array([-h * theta_fluid, theta1])))


def pennes_sphere_robin(r: np.ndarray, r0: float, r1: float, theta_fluid: float, theta1: float, h: float, k: float,
                        m: float) -> np.ndarray:
    """Steady excess temperature between spheres r0 < r < r1: a fluid at θ_fluid behind a film h on the inner
    one (``-k dT/dn = h (T - T_fluid)``, n out of the tissue, so ``k θ'(r0) = h (θ(r0) - θ_fluid)``), θ1 on the
    outer one. θ = (A exp(-m r) + B exp(m r)) / r.

    Examples
    --------
    >>> r = np.array([5e-3, 25e-3])
    >>> theta = pennes_sphere_robin(r, 5e-3, 25e-3, -30.0, -5.0, 1e9, 0.5, 60.0)  # a stiff film: a fixed wall
    >>> np.round(theta, 4).tolist()
    [-30.0, -5.0]
    """
    def f(x):
        return np.exp(-m * x) / x, np.exp(m * x) / x

    def df(x):
        return -np.exp(-m * x) * (m * x + 1) / x**2, np.exp(m * x) * (m * x - 1) / x**2

    a, b = _robin_inner(f, df, r0, r1, theta_fluid, theta1, h, k)
    return (a * np.exp(-m * r) + b * np.exp(m * r)) / r


def pennes_cylinder_robin(r: np.ndarray, r0: float, r1: float, theta_fluid: float, theta1: float, h: float, k: float,
                          m: float) -> np.ndarray:
    """Steady excess temperature between coaxial cylinders r0 < r < r1, a fluid at θ_fluid behind a film h on
    the inner one (a vessel's lumen wall, :func:`pennes_sphere_robin`'s condition), θ1 on the outer one.
    θ = A K0(m r) + B I0(m r)."""
    from scipy.special import i0, i1, k0, k1

    a, b = _robin_inner(lambda x: (k0(m * x), i0(m * x)), lambda x: (-m * k1(m * x), m * i1(m * x)), r0, r1,
                        theta_fluid, theta1, h, k)
    return a * k0(m * r) + b * i0(m * r)


def pennes_1d_step(x: np.ndarray, t: float, theta0: float, m: float, alpha: float, beta: float) -> np.ndarray:
    """Transient 1-D Pennes after a surface step θ0 from the basal state (β = w_b rho_b c_b / (rho c))."""
    a = x / (2 * np.sqrt(alpha * t))
    b = np.sqrt(beta * t)
    return theta0 / 2 * (np.exp(-m * x) * erfc(a - b) + np.exp(m * x) * erfc(a + b))


def l2_error(points: np.ndarray, tets: np.ndarray, u_h: np.ndarray, exact: Callable[[np.ndarray], np.ndarray]) -> float:
    """||u_h - u||_L2 over the mesh, P1 ``u_h`` against a function of (..., 3) points (degree-3 quadrature)."""
    _, vol = gradients_and_volumes(points, tets)
    corners = points[tets]  # (E, 4, 3)
    total = 0.0
    for bary, w in zip(_KEAST_BARY, _KEAST_W):
        x = np.einsum("a,eai->ei", bary, corners)
        uh = u_h[tets] @ bary
        total += w * np.sum(vol * (uh - exact(x)) ** 2)
    return float(np.sqrt(max(total, 0.0)))


def h1_seminorm_error(points: np.ndarray, tets: np.ndarray, u_h: np.ndarray,
                      grad_exact: Callable[[np.ndarray], np.ndarray]) -> float:
    """||grad(u_h - u)||_L2 over the mesh, P1 ``u_h`` against the exact gradient (degree-3 quadrature)."""
    grads, vol = gradients_and_volumes(points, tets)
    grad_h = np.einsum("ea,eai->ei", u_h[tets], grads)  # constant in each element
    corners = points[tets]
    total = 0.0
    for bary, w in zip(_KEAST_BARY, _KEAST_W):
        x = np.einsum("a,eai->ei", bary, corners)
        total += w * np.sum(vol * np.sum((grad_h - grad_exact(x)) ** 2, axis=1))
    return float(np.sqrt(max(total, 0.0)))


def manufactured_sine(x: np.ndarray, length: float, base: float, amplitude: float
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u = base + amplitude sin(πx/L) sin(πy/L) sin(πz/L) on the cube [0, L]³: u, grad u (..., 3) and Δu.

    u equals ``base`` on the whole boundary of the cube (a manufactured solution for fixed boundaries).
    """
    k = np.pi / length
    s, c = np.sin(k * x), np.cos(k * x)
    bump = s[..., 0] * s[..., 1] * s[..., 2]
    grad = amplitude * k * np.stack([c[..., 0] * s[..., 1] * s[..., 2], s[..., 0] * c[..., 1] * s[..., 2],
                                     s[..., 0] * s[..., 1] * c[..., 2]], axis=-1)
    return base + amplitude * bump, grad, -3 * k**2 * amplitude * bump


def mesh_size(points: np.ndarray, tets: np.ndarray) -> float:
    """A mesh's characteristic size: the cube root of the mean element volume."""
    _, vol = gradients_and_volumes(points, tets)
    return float(np.cbrt(vol.mean()))


def observed_order(h: np.ndarray, err: np.ndarray) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])
