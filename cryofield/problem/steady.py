"""Steady state of the Pennes problem (the basal state before the probe starts, or a steady reference).

Solves  K(T) T + diag(V f_l P + hA) T = V f_l (P T_a + Q) + hA T_amb  with fixed nodes eliminated, by
Picard iteration (damped when it stalls) on the temperature-dependent conductivity and liquid fraction; each linear
solve is
conjugate gradients preconditioned by smoothed-aggregation algebraic multigrid (pyamg), which takes a
1 M-node mesh in seconds where a direct 3-D factorisation would fill in badly.
"""

from __future__ import annotations

import numpy as np
import pyamg
import scipy.sparse as sp

from cryofield.fem import geometry as fem
from cryofield.problem.assemble import BoundaryState, Problem

#: Jacobi prolongation smoothing weighted by local (Gershgorin) bounds: pyamg's default estimates a spectral
#: radius from a random start vector, which makes two solves of one problem differ in the last bits, and a
#: resumed run (:mod:`cryofield.run.checkpoint`) must match an uninterrupted one exactly.
DETERMINISTIC_SMOOTHER = ("jacobi", {"omega": 4.0 / 3.0, "weighting": "local"})


def system(problem: Problem, state: BoundaryState, T: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """The linearised steady operator A and right-hand side b at temperature ``T`` (no elimination)."""
    k_elem = problem.element_conductivity(T)
    K = fem.stiffness_matrix(problem.mesh.tets, problem.edge_coef, k_elem, problem.n_nodes)
    fl = problem.liquid_fraction(T)
    diag = problem.lumped * fl * problem.perfusion + state.robin_coef
    rhs = problem.lumped * fl * (problem.perfusion * problem.arterial_temperature + problem.metabolic) + state.robin_rhs
    return (K + sp.diags(diag)).tocsr(), rhs


def steady_state(problem: Problem, state: BoundaryState, T_guess: np.ndarray | float = 37.0,
                 extra_source: np.ndarray | None = None, tol: float = 1e-7, max_iter: int = 200) -> np.ndarray:
    """Nodal steady temperature (°C).

    Parameters
    ----------
    problem, state
        The problem and the boundary conditions in force.
    T_guess
        Starting temperature for the Picard iteration.
    extra_source
        Optional nodal heat input (W per node) added to the right-hand side (manufactured solutions).
    tol
        Stop when the largest temperature change of an iteration is below this (K).
    """
    T = np.broadcast_to(np.asarray(T_guess, float), (problem.n_nodes,)).copy()
    fixed = state.fixed
    T[fixed] = state.fixed_temperature[fixed]
    free = ~fixed
    if not free.any():
        return T
    relax, last_change = 1.0, np.inf
    for _ in range(max_iter):
        A, b = system(problem, state, T)
        if extra_source is not None:
            b = b + extra_source
        A_ff = A[free][:, free].tocsr()
        b_f = b[free] - A[free][:, fixed] @ T[fixed]
        solver = pyamg.smoothed_aggregation_solver(A_ff, max_coarse=500, smooth=DETERMINISTIC_SMOOTHER)
        x = solver.solve(b_f, x0=T[free], tol=1e-12, accel="cg", maxiter=500)
        change = np.max(np.abs(x - T[free]))
        if change < tol:
            T[free] = x
            return T
        # Picard can cycle across the phase-change interval (k and f_l jump there): damp when it stalls
        if change > 0.9 * last_change:
            relax = max(0.1, 0.5 * relax)
        last_change = change
        T[free] += relax * (x - T[free])
    raise RuntimeError(f"steady state did not converge in {max_iter} Picard iterations (last change {change:.3g} K)")
