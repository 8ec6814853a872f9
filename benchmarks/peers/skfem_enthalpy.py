"""A peer implementation of cryofield's physics with the standard Python FEM stack.

scikit-fem assembles everything (P1 stiffness with element-wise conductivity, lumped mass, lumped boundary
mass); SciPy and pyamg solve. Time integration is backward Euler on the enthalpy, the textbook implicit
scheme for phase change: at each step find the nodal enthalpy H, T = T(H), with

    V (H - H^n) / dt + K(k) T - V f_l(T) [P (T_a - T) + Q] + hA (T - T_amb) - qA = 0

at every free node (fixed nodes hold their temperature). The nonlinear iteration is Newton's method on
H, the robust choice for the enthalpy kinks (T(H) is monotone and Lipschitz, so an update that
overshoots into the mushy interval changes T only a little; Newton on T cycles there): with
C = dH/dT at the current H, solve (V C/dt + K + diag(V f_l P + hA)) y = -R and set H += C y. The
conductivity and the liquid fraction are updated every iteration but not differentiated; the residual
is exact, so the iteration converges to the backward-Euler solution. The linear solves of the steps
use one of :data:`LINEAR_SOLVERS` (the peer suite picks the fastest for each case): conjugate gradients
preconditioned by smoothed-aggregation algebraic multigrid (pyamg) or by the diagonal (the step's mass
term makes the Jacobian well conditioned), or a sparse direct factorisation (SuperLU); a preconditioner
is built once per step and reused by that step's iterations. The steady (basal) solve uses the AMG
preconditioner. A step whose iteration does not converge is retried as two half steps.

The physics is the same as cryofield's (docs/physics.md §2; the tissue laws come from the case's
:class:`~cryofield.model.materials.Material` objects): element conductivity is the mean of k(T) at its nodes,
mass and boundary mass are lumped, a node's enthalpy law is that of the tissue holding most of its
volume, perfusion and metabolism are volume-weighted and scale with the liquid fraction. Only the mesh
reading is shared (``mesh_of``), so both run on exactly the same mesh.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyamg
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from skfem import Basis, BilinearForm, ElementTetP1, FacetBasis, MeshTet, asm
from skfem.helpers import dot, grad

from cryofield.config.case import Case, PhaseSpec
from cryofield.mesh.sources import mesh_of
from cryofield.model.schedule import phase_bounds

#: Linear solvers of the time steps: conjugate gradients preconditioned by smoothed-aggregation AMG or by the
#: diagonal, or a sparse direct factorisation (SuperLU, minimum-degree ordering of A + A^T, symmetric mode).
LINEAR_SOLVERS = ("amg", "jacobi", "direct")


@BilinearForm
def _laplace(u, v, w):
    return dot(grad(u), grad(v))


@BilinearForm
def _mass(u, v, w):
    return w.weight * u * v


@dataclass
class PeerStats:
    """Work counters."""

    steps: int = 0
    halvings: int = 0
    newton_iterations: int = 0
    cg_iterations: int = 0


@dataclass
class BoundaryArrays:
    """Nodal boundary data during one phase."""

    fixed: np.ndarray
    fixed_temperature: np.ndarray
    robin_coef: np.ndarray  # W/K
    robin_rhs: np.ndarray  # W


@dataclass
class EnthalpyPeer:
    """Backward-Euler enthalpy solver for a cryofield case, built with scikit-fem (see the module docstring).

    Parameters
    ----------
    case
        The case; its mesh is read or generated exactly as cryofield does.
    tol
        Newton stops when no temperature changes by more than this (K).
    max_iter
        Newton iterations before a step is halved.
    linear_solver
        One of :data:`LINEAR_SOLVERS` for the time steps.
    """

    case: Case
    tol: float = 1e-4
    max_iter: int = 30
    linear_solver: str = "jacobi"
    stats: PeerStats = field(default_factory=PeerStats)

    def __post_init__(self) -> None:
        t0 = time.perf_counter()
        mesh = mesh_of(self.case)
        self.mesh = mesh
        self.n = mesh.n_nodes
        self.materials = [self.case.materials()[r] for r in self.case.tissues]
        tag_to_mat = {mesh.regions[r]: m for m, r in enumerate(self.case.tissues)}
        self.elem_mat = np.array([tag_to_mat[t] for t in mesh.tet_tags])
        self.skmesh = MeshTet(mesh.points.T.copy(), mesh.tets.T.copy())
        self.basis = Basis(self.skmesh, ElementTetP1(), intorder=2)
        self._stiffness_pattern()
        share = np.stack([self._lumped(self.elem_mat == m) for m in range(len(self.materials))], axis=1)
        self.lumped = share.sum(axis=1)
        self.node_mat = np.argmax(share, axis=1)
        blood = self.case.blood.heat_capacity
        self.perfusion = share @ np.array([m.perfusion * blood for m in self.materials]) / self.lumped
        self.metabolic = share @ np.array([m.metabolic_heat for m in self.materials]) / self.lumped
        self.setup_seconds = time.perf_counter() - t0

    # -- assembly (scikit-fem) ---------------------------------------------------------------------------
    def _stiffness_pattern(self) -> None:
        """Unit-conductivity element matrices and the map of their entries into one CSR pattern."""
        coo = _laplace.coo_data(self.basis)
        self.local = coo.tolocal()  # (E, 4, 4)
        dofs = self.basis.element_dofs.T  # (E, 4)
        rows = np.repeat(dofs[:, :, None], 4, axis=2).ravel()
        cols = np.repeat(dofs[:, None, :], 4, axis=1).ravel()
        keys, self.slot = np.unique(rows.astype(np.int64) * self.n + cols, return_inverse=True)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // self.n, minlength=self.n))])
        self.pattern = (keys % self.n, indptr)

    def _lumped(self, elements: np.ndarray) -> np.ndarray:
        """Row sums of the mass matrix restricted to ``elements`` (a boolean mask): lumped volumes (m³)."""
        weight = np.repeat(elements.astype(float)[:, None], self.basis.X.shape[1], axis=1)
        return np.asarray(asm(_mass, self.basis, weight=weight).sum(axis=1)).ravel()

    def _facet_lumped(self, surface: str) -> np.ndarray:
        """Lumped boundary mass of a tagged surface: each node's share of its area (m²)."""
        triangles = np.sort(self.mesh.surface_facets(surface), axis=1)
        all_facets = np.sort(self.skmesh.facets.T, axis=1)
        order = np.lexsort(all_facets.T[::-1])
        keys = all_facets[order] @ np.array([self.n * self.n, self.n, 1], dtype=np.int64)
        wanted = triangles.astype(np.int64) @ np.array([self.n * self.n, self.n, 1], dtype=np.int64)
        facets = order[np.searchsorted(keys, wanted)]
        fb = FacetBasis(self.skmesh, ElementTetP1(), facets=facets, intorder=2)
        weight = np.ones((len(facets), fb.X.shape[1]))
        return np.asarray(asm(_mass, fb, weight=weight).sum(axis=1)).ravel()

    def stiffness(self, T: np.ndarray) -> sp.csr_matrix:
        """K(k) with k_e the mean of k(T) at the element's nodes."""
        k_nodes = np.empty((len(self.elem_mat), 4))
        tets = self.mesh.tets
        for m, mat in enumerate(self.materials):
            sel = self.elem_mat == m
            k_nodes[sel] = mat.conductivity_at(T[tets[sel]])
        data = np.bincount(self.slot, weights=(self.local * k_nodes.mean(axis=1)[:, None, None]).ravel(),
                           minlength=len(self.pattern[0]))
        return sp.csr_matrix((data, *self.pattern), shape=(self.n, self.n))

    # -- material laws, nodewise ---------------------------------------------------------------------------
    def enthalpy(self, T: np.ndarray) -> np.ndarray:
        return self._nodewise(T, "enthalpy")

    def temperature(self, H: np.ndarray) -> np.ndarray:
        return self._nodewise(H, "temperature")

    def liquid_fraction(self, T: np.ndarray) -> np.ndarray:
        return self._nodewise(T, "liquid_fraction")

    def _nodewise(self, values: np.ndarray, law: str) -> np.ndarray:
        out = np.empty(self.n)
        for m, mat in enumerate(self.materials):
            sel = self.node_mat == m
            out[sel] = getattr(mat, law)(values[sel])
        return out

    def capacity(self, H: np.ndarray) -> np.ndarray:
        """dH/dT at the enthalpy ``H`` (J/m³/K), from T(H) 1 J/m³ either side (the mean slope at a kink)."""
        return 2.0 / (self.temperature(H + 1.0) - self.temperature(H - 1.0))

    # -- boundary conditions -------------------------------------------------------------------------------
    def boundaries(self, phase: PhaseSpec | None) -> BoundaryArrays:
        """The case's boundaries, plus its probes when ``phase`` drives them (None: probes off)."""
        b = BoundaryArrays(np.zeros(self.n, bool), np.zeros(self.n), np.zeros(self.n), np.zeros(self.n))
        for bc in self.case.boundaries:
            if bc.type == "fixed":
                self._fix(b, bc.surface, bc.temperature)
            elif bc.type == "convection":
                area = self._facet_lumped(bc.surface)
                b.robin_coef += bc.heat_transfer_coefficient * area
                b.robin_rhs += bc.heat_transfer_coefficient * area * bc.temperature
            elif bc.type == "flux":
                b.robin_rhs += bc.heat_flux * self._facet_lumped(bc.surface)
        t_probe = None if phase is None else phase.probe_temperature
        if t_probe is not None:
            for probe in self.case.probes:
                if probe.model == "fixed":
                    self._fix(b, probe.surface, t_probe)
                else:
                    area = self._facet_lumped(probe.surface)
                    b.robin_coef += probe.heat_transfer_coefficient * area
                    b.robin_rhs += probe.heat_transfer_coefficient * area * t_probe
        return b

    def _fix(self, b: BoundaryArrays, surface: str, temperature: float) -> None:
        nodes = self.mesh.surface_nodes(surface)
        b.fixed[nodes] = True
        b.fixed_temperature[nodes] = temperature

    # -- the nonlinear solve ---------------------------------------------------------------------------
    def solve(self, b: BoundaryArrays, T_guess: np.ndarray, dt: float | None,
              H_old: np.ndarray | None = None) -> np.ndarray | None:
        """Backward-Euler step of ``dt`` from the enthalpy ``H_old``, or the steady state when ``dt`` is None.

        Returns the new temperature, or None when Newton does not converge in ``max_iter`` iterations.
        """
        H = self.enthalpy(np.where(b.fixed, b.fixed_temperature, T_guess))
        T = self.temperature(H)
        free = ~b.fixed
        Ta = self.case.blood.arterial_temperature
        preconditioner = None
        for _ in range(self.max_iter):
            self.stats.newton_iterations += 1
            K = self.stiffness(T)
            fl = self.liquid_fraction(T)
            residual = K @ T - self.lumped * fl * (self.perfusion * (Ta - T) + self.metabolic) \
                + b.robin_coef * T - b.robin_rhs
            diagonal = self.lumped * fl * self.perfusion + b.robin_coef
            C = self.capacity(H)
            if dt is not None:
                residual += self.lumped * (H - H_old) / dt
                diagonal += self.lumped * C / dt
            J = (K + sp.diags(diagonal)).tocsr()[free][:, free]
            y, preconditioner = self._linear_solve(J, -residual[free], preconditioner, dt is None)
            H[free] += C[free] * y
            T_new = self.temperature(H)
            change = np.max(np.abs(T_new - T))
            T = T_new
            if change < self.tol:
                return T
        return None

    def _linear_solve(self, J: sp.csr_matrix, rhs: np.ndarray, preconditioner, steady: bool):
        """Solve J x = rhs with :attr:`linear_solver` (steady solves always use AMG-preconditioned CG).

        ``preconditioner`` is the one from the previous iteration of the same solve (None on the first).
        """
        method = "amg" if steady else self.linear_solver
        if method == "direct":
            return spla.splu(J.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                             options={"SymmetricMode": True}).solve(rhs), None
        if preconditioner is None:
            preconditioner = (pyamg.smoothed_aggregation_solver(J).aspreconditioner() if method == "amg"
                              else sp.diags(1.0 / J.diagonal()))
        count = [0]
        x, info = spla.cg(J, rhs, rtol=1e-10, atol=0.0, M=preconditioner, maxiter=2000,
                          callback=lambda _: count.__setitem__(0, count[0] + 1))
        self.stats.cg_iterations += count[0]
        if info != 0:
            raise RuntimeError(f"CG did not converge ({info})")
        return x, preconditioner

    # -- time integration ----------------------------------------------------------------------------------
    def initial_temperature(self) -> np.ndarray:
        """The case's initial state: uniform, or the steady state with the probes off."""
        init = self.case.initial
        if init.type == "uniform":
            return np.full(self.n, init.temperature)
        T = self.solve(self.boundaries(None), np.full(self.n, self.case.blood.arterial_temperature), None)
        if T is None:
            raise RuntimeError("the peer's steady state did not converge")
        return T

    def run(self, dt: float, times: list[float]) -> list[np.ndarray]:
        """Temperatures at ``times`` (s) through the case's protocol with steps of at most ``dt`` seconds.

        Steps end exactly on every requested time and protocol switch; without a protocol the base
        boundaries hold throughout.
        """
        T = self.initial_temperature()
        bounds = phase_bounds(self.case.protocol)
        protocol = self.case.protocol
        found, now, current, b = {}, 0.0, -1, None
        for end in sorted(set(times) | {float(x) for x in bounds[1:-1] if x < max(times)}):
            phase = min(int(np.searchsorted(bounds, now, side="right")) - 1, len(protocol) - 1) if protocol else None
            if phase != current:
                b = self.boundaries(None if phase is None else protocol[phase])
                current = phase
            T = self._advance(b, T, end - now, dt)
            now = end
            found[end] = T.copy()
        return [found[t] for t in times]

    def _advance(self, b: BoundaryArrays, T: np.ndarray, duration: float, dt: float) -> np.ndarray:
        """Equal steps of at most ``dt`` over ``duration``; a step that fails is split in two."""
        T = np.where(b.fixed, b.fixed_temperature, T)
        n_steps = max(1, int(np.ceil(duration / dt - 1e-9)))
        for _ in range(n_steps):
            T = self._step(b, T, duration / n_steps)
        return T

    def _step(self, b: BoundaryArrays, T: np.ndarray, dt: float) -> np.ndarray:
        new = self.solve(b, T, dt, self.enthalpy(T))
        if new is None:
            self.stats.halvings += 1
            return self._step(b, self._step(b, T, dt / 2), dt / 2)
        self.stats.steps += 1
        return new

