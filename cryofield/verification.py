"""Closed-form references (PHYSICS.md §7) and error norms, shared by the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq
from scipy.special import erf, erfc

from .fem import gradients_and_volumes

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


def mesh_size(points: np.ndarray, tets: np.ndarray) -> float:
    """A mesh's characteristic size: the cube root of the mean element volume."""
    _, vol = gradients_and_volumes(points, tets)
    return float(np.cbrt(vol.mean()))


def observed_order(h: np.ndarray, err: np.ndarray) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])
