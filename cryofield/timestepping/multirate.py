"""Multirate stabilised explicit stepping: the few stiff nodes at a probe get their own stages.

Why (measured in ``cryofield bench timestepping``): on a graded probe mesh each node's own explicit limit
(:meth:`cryofield.problem.assemble.Problem.nodal_spectral_radius`) spreads evenly over two decades, so single-rate
RKL2, whose stage count follows the stiffest node, spends most of its stages on nodes that need few.

The scheme nests the averaged-force construction of mRKC (Abdulle, Grote & Rosilho de Souza, "Explicit
stabilized multirate method for stiff differential equations", Math. Comp. 91, 2022) level by level,
under the second-order RKL2 step the single-rate scheme takes:

* Nodes are sorted into levels 0..K by their own limit (level k + 1 is stiffer than level k;
  :func:`plan_levels`). ``G_k`` is the operator on the rows of level >= k with the other rows' rates
  frozen (a constant), so a level-k problem only touches its own nodes, the elements around them and a
  halo of frozen neighbours.
* Level 0 is the whole mesh, stepped by RKL2 with step tau, but every stage uses the averaged force
  ``f_eta(u) = (v(eta) - u) / eta`` on the rows of level >= 1, where v solves the level-1 problem
  ``v' = G_1(v)`` (the slower rows' rates frozen at their values at u) from v(0) = u over a short time
  eta; on the slower rows ``f_eta = F``. The averaged force is no stiffer than 2 / eta, so the outer
  stages follow level 0's stiffness, not the probe's.
* Level k >= 1 is stepped by first-order damped Runge–Kutta–Chebyshev (RKC, damping 0.05, stable for
  ``dt rho <= beta s²``, beta about 1.94) with the same construction for level k + 1 inside each stage.

Its error: the outer step is RKL2 (second order in tau) on the modified equation y' = f_eta(y), which
differs from y' = F(y) by O(eta), and eta is of the order of level 0's own explicit limit whatever tau
is; the inner RKC steps are first order in eta likewise. At the same steps the isotherm radii agree with
single-rate RKL2's within what tests/timestepping/test_multirate.py asserts (figures: benchmarks/README.md,
"Time stepping").

Stability (checked on the scalar test equation y' = (lambda_F + lambda_S) y over the whole range of both,
for tau rho_S up to 3000): the outer RKL2 must also hold the averaged force's range 2 / eta, so its stage
count is chosen for ``tau (rho_0 + 2 / eta)`` with ``eta = c 2 tau / (s² + s - 2)``, ``c`` =
:data:`OUTER_ETA` (stable from 3 on); the inner levels take ``eta = 6 tau_k / (beta s_k²)`` as mRKC does.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from cryofield.timestepping.rkl2 import rkl2_stages

#: Damping of the inner RKC levels (mRKC's 0.05) and the factor c of the outer averaging time.
DAMPING, OUTER_ETA, INNER_ETA = 0.05, 3.0, 6.0
#: Candidate cuts: level k + 1 holds the nodes whose spectral radius exceeds the largest over ``cut``.
CANDIDATE_CUTS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
#: Deepest nesting the automatic choice considers (levels 0..MAX_LEVELS).
MAX_LEVELS = 3


@functools.lru_cache(maxsize=512)
def rkc_rows(s: int) -> tuple[np.ndarray, float]:
    """Rows j = 1..s of (mu_j, nu_j, mu~_j) of first-order damped RKC with ``s`` stages, and its beta.

    With w0 = 1 + damping / s², w1 = T_s(w0) / T_s'(w0) and b_j = 1 / T_j(w0) (T_j Chebyshev)::

        Y_1 = Y_0 + mu~_1 dt F(Y_0),  Y_j = mu_j Y_{j-1} + nu_j Y_{j-2} + mu~_j dt F(Y_{j-1})

    (mu_j = 2 w0 b_j / b_{j-1}, nu_j = -b_j / b_{j-2}, mu~_j = 2 w1 b_j / b_{j-1}, mu~_1 = w1 / w0), stable
    for ``dt rho <= beta s²``, beta = (1 + w0) / (w1 s²).

    Examples
    --------
    >>> rows, beta = rkc_rows(10)
    >>> round(beta, 3), bool(np.allclose(rows[2:, 0] + rows[2:, 1], 1.0))
    (1.936, True)
    """
    w0 = 1.0 + DAMPING / s**2
    T, dT = np.zeros(s + 1), np.zeros(s + 1)
    T[0], T[1], dT[1] = 1.0, w0, 1.0
    for j in range(2, s + 1):
        T[j] = 2 * w0 * T[j - 1] - T[j - 2]
        dT[j] = 2 * T[j - 1] + 2 * w0 * dT[j - 1] - dT[j - 2]
    w1 = T[s] / dT[s]
    b = 1.0 / T
    rows = np.zeros((s + 1, 3))
    rows[1] = 1.0, 0.0, w1 / w0
    for j in range(2, s + 1):
        rows[j] = 2 * w0 * b[j] / b[j - 1], -b[j] / b[j - 2], 2 * w1 * b[j] / b[j - 1]
    rows.flags.writeable = False
    return rows, float((1.0 + w0) / (w1 * s * s))


def rkc_stages(dt_rho: float) -> int:
    """Fewest RKC stages (at least 1) stable for ``dt rho`` (beta s² >= dt rho)."""
    s = max(1, math.ceil(math.sqrt(dt_rho / 1.96)))  # beta < 1.96 for every s: a lower bound
    while dt_rho > rkc_rows(s)[1] * s * s:
        s += 1
    return s


def outer_stages(tau: float, rho0: float, nested: bool) -> tuple[int, float]:
    """RKL2 stages of the level-0 step and its averaging time eta (0 without levels below)."""
    if not nested:
        return rkl2_stages(tau, 2.0 / rho0), 0.0
    s = rkl2_stages(tau * OUTER_ETA / (OUTER_ETA - 1.0), 2.0 / rho0)
    return s, OUTER_ETA * 2.0 * tau / (s * s + s - 2.0)


def inner_eta(duration: float, s: int) -> float:
    """Averaging time of the level below an ``s``-stage RKC step of ``duration`` (mRKC's 6 dt / (beta s²))."""
    return INNER_ETA * duration / (rkc_rows(s)[1] * s * s)


@dataclass
class Levels:
    """Nodes sorted by stiffness for :class:`MultirateStep` (host arrays).

    Attributes
    ----------
    level
        (N,) level of each node, 0 the mildest.
    rho
        (K + 1,) largest nodal spectral radius of each level over the safety factor (1/s).
    elems, nodes, active
        For levels k = 1..K: the elements with a node of level >= k, the nodes of level >= k followed by
        their halo (the other nodes of those elements), and how many of ``nodes`` are of level >= k.
    weight
        (K + 1,) the share of a full-mesh operator application one application at level k costs,
        (elements + active nodes) / (E + N); 1 at level 0.
    cuts
        The cuts that made the levels (:func:`levels_from_cuts`).
    """

    level: np.ndarray
    rho: np.ndarray
    elems: list[np.ndarray]
    nodes: list[np.ndarray]
    active: list[int]
    weight: np.ndarray
    cuts: tuple[float, ...]

    @property
    def depth(self) -> int:
        """K, the number of levels below level 0."""
        return len(self.rho) - 1

    def work_per_step(self, tau: float) -> float:
        """Full-mesh-equivalent operator applications of one step of ``tau`` (:func:`step_work`)."""
        return step_work(tau, self.rho, self.weight)


def step_work(tau: float, rho: np.ndarray, weight: np.ndarray) -> float:
    """Full-mesh-equivalent applications of one step: the outer stages, and in each stage the nested solves
    (a level's first stage reuses its parent's rates)."""
    s, eta = outer_stages(tau, rho[0], len(rho) > 1)
    return s * (1.0 + (_nested_work(1, eta, rho, weight) if len(rho) > 1 else 0.0))


def _nested_work(k: int, duration: float, rho: np.ndarray, weight: np.ndarray) -> float:
    s = rkc_stages(duration * rho[k])
    work = (s - 1) * weight[k]
    if k + 1 < len(rho):
        work += s * _nested_work(k + 1, inner_eta(duration, s), rho, weight)
    return work


def levels_from_cuts(rho_nodes: np.ndarray, tets: np.ndarray, cuts: tuple[float, ...], safety: float) -> Levels:
    """Levels of a mesh: node i is of level k when its spectral radius exceeds max / cuts[k - 1] (cuts
    decreasing, each > 1); levels left empty are dropped. ``tets`` is the kernels' connectivity (a fourth
    corner -1 on an r-z triangle)."""
    n, top = len(rho_nodes), float(rho_nodes.max())
    level = np.zeros(n, np.int32)
    kept: list[float] = []
    for cut in sorted(set(cuts), reverse=True):  # the largest cut makes the largest stiff set: level 1
        stiff = rho_nodes > top / cut
        if 0 < stiff.sum() < (level == len(kept)).sum():  # else the level below would be empty
            kept.append(float(cut))
            level[stiff] = len(kept)
    rho = np.array([rho_nodes[level == k].max() / safety for k in range(len(kept) + 1)])
    corners = np.where(tets >= 0, tets, tets[:, :1])  # a triangle's missing corner repeats its first
    elems, nodes, active, weight = [], [], [], [1.0]
    E = len(tets)
    for k in range(1, len(kept) + 1):
        act = level >= k
        touched = act[corners].any(axis=1)
        near = np.zeros(n, bool)
        near[corners[touched].ravel()] = True
        halo = near & ~act
        elems.append(np.flatnonzero(touched).astype(np.int32))
        nodes.append(np.concatenate([np.flatnonzero(act), np.flatnonzero(halo)]).astype(np.int32))
        active.append(int(act.sum()))
        weight.append((touched.sum() + act.sum()) / (E + n))
    return Levels(level, rho, elems, nodes, active, np.array(weight), tuple(kept))


def plan_levels(rho_nodes: np.ndarray, tets: np.ndarray, tau: float, safety: float,
                cuts: tuple[float, ...] | None = None) -> Levels:
    """The levels that make a step of ``tau`` cheapest (:func:`step_work`), over up to :data:`MAX_LEVELS`
    nested levels of :data:`CANDIDATE_CUTS`, or those of ``cuts`` when given (a case's override). No
    levels (single-rate RKL2) when nesting does not pay.

    Each candidate's work comes from per-cut counts (the stiff nodes and the elements around them), so
    the search costs one pass over the mesh per candidate cut, not per combination.
    """
    if cuts is None:
        cuts = _cheapest_cuts(rho_nodes, tets, tau, safety)
    return levels_from_cuts(rho_nodes, tets, tuple(cuts), safety)


def _cheapest_cuts(rho_nodes: np.ndarray, tets: np.ndarray, tau: float, safety: float) -> tuple[float, ...]:
    n, E, top = len(rho_nodes), len(tets), float(rho_nodes.max())
    corners = np.where(tets >= 0, tets, tets[:, :1])
    ordered = np.sort(rho_nodes)
    weight, below = {}, {}
    for cut in CANDIDATE_CUTS:
        stiff = rho_nodes > top / cut
        weight[cut] = (stiff[corners].any(axis=1).sum() + stiff.sum()) / (E + n)
        i = np.searchsorted(ordered, top / cut, side="right")  # the largest radius at or below the cut
        below[cut] = ordered[i - 1] if i > 0 else 0.0
    best, best_work = (), step_work(tau, np.array([top / safety]), np.ones(1))
    for depth in range(1, MAX_LEVELS + 1):
        for combo in itertools.combinations(sorted(CANDIDATE_CUTS, reverse=True), depth):
            if min(below[c] for c in combo) <= 0 or any(weight[a] == weight[b] for a, b in zip(combo, combo[1:])):
                continue  # an empty level
            # level k's largest radius: the largest at or below cut k + 1 (the stiffest level: the mesh's largest)
            rho = np.array([*(below[c] for c in combo), top]) / safety
            work = step_work(tau, rho, np.array([1.0, *(weight[c] for c in combo)]))
            if work < best_work * (1 - 1e-9):
                best, best_work = combo, work
    return tuple(float(c) for c in best)


class MultirateStep:
    """Runs one multirate step's stages on a backend (a single run: one variant).

    The level lists live on the backend (:meth:`cryofield.backends.base.Backend.load_level`); each level
    below 0 has three rotating stage values with their temperatures and one rate array. The outer RKL2
    stages write the stepper's own buffers (:meth:`cryofield.timestepping.stepper.Ensemble._stage_buffers`), so the
    step's change, commit and rejection are those of the single-rate scheme.
    """

    def __init__(self, backend, dp, levels: Levels, dtype):
        self.backend, self.dp, self.levels = backend, dp, levels
        size = dp.n_nodes
        self.lists = [backend.load_level(dp, levels.elems[k], levels.nodes[k], levels.active[k])
                      for k in range(levels.depth)]
        self.Y = [tuple(backend.empty(size, dtype) for _ in range(3)) for _ in range(levels.depth)]
        self.TY = [tuple(backend.empty(size, dtype) for _ in range(3)) for _ in range(levels.depth)]
        self.L = [backend.empty(size, dtype) for _ in range(levels.depth)]
        self.applications = 0  # operator applications at any level since the last call of take_counts
        self.equivalent = 0.0  # the same, weighted by the share of the mesh each covers

    def stages(self, tau: float) -> int:
        """The outer RKL2 stage count of a step of ``tau``."""
        return outer_stages(tau, self.levels.rho[0], self.levels.depth > 0)[0]

    def run(self, tau: float, rows: np.ndarray, buffers: list[tuple]) -> None:
        """The outer stages of one step (``rows`` from :func:`cryofield.timestepping.rkl2.rkl2_stage_table`, ``buffers``
        the stepper's): L = f_eta(Y_{j-1}), then the RKL2 update of stage j over the whole mesh."""
        be, dp = self.backend, self.dp
        _, eta = outer_stages(tau, self.levels.rho[0], self.levels.depth > 0)
        for j, (T_in, L, out, T_out, Y1, Y2, Y0, L0) in enumerate(buffers, start=1):
            be.apply_operator(dp, T_in, L)  # L = F(Y_{j-1}) on every node
            self._count(0)
            if self.levels.depth:
                self._average(0, Y1, T_in, L, eta)  # rows of level >= 1: L = (v(eta) - Y_{j-1}) / eta
            be.combine(dp, out, T_out, rows[j], Y1, Y2, Y0, L, L0)

    def _average(self, parent: int, u, T_u, g, eta: float) -> None:
        """Overwrite the rows of level >= parent + 1 of ``g`` (the parent's rates at u) with the averaged force:
        v solves the level-(parent + 1) problem from u over eta, the slower rows' rates frozen at g."""
        v = self._solve(parent + 1, u, T_u, g, eta)
        self.backend.averaged_rate(self.dp, self.lists[parent], v, u, eta, g)

    def _solve(self, k: int, u, T_u, g, duration: float):
        """v(duration) of v' = G_k(v), v(0) = u, the rows of level < k at the rates ``g`` (damped RKC, each
        stage's force averaged over the level below when there is one); returns the buffer holding it."""
        be, dp, level = self.backend, self.dp, self.lists[k - 1]
        s = rkc_stages(duration * self.levels.rho[k])
        rows, _ = rkc_rows(s)
        deeper = k < self.levels.depth
        eta = inner_eta(duration, s) if deeper else 0.0
        Y, TY, L = self.Y[k - 1], self.TY[k - 1], self.L[k - 1]
        previous, older, T_prev = u, u, T_u
        for j in range(1, s + 1):
            if j == 1:
                rate = g  # G_k(u) on the level's rows: the parent's rates at u
            else:
                be.level_rate(dp, level, T_prev, L, g)  # L = F on rows of level >= k, g on the halo
                self._count(k)
                rate = L
            if deeper:
                self._average(k, previous, T_prev, rate, eta)
            mu, nu, mu_t = rows[j]
            # Y_j = mu Y_{j-1} + nu Y_{j-2} + mu~ dt rate (Y_1 = Y_0 + mu~_1 dt rate), on the level's nodes and halo
            coefs = (1.0, 0.0, 0.0, mu_t * duration, 0.0) if j == 1 else (mu, nu, 0.0, mu_t * duration, 0.0)
            be.level_combine(dp, level, Y[j % 3], TY[j % 3], coefs, previous, older, u, rate, rate)
            previous, older, T_prev = Y[j % 3], previous, TY[j % 3]
        return previous

    def _count(self, k: int) -> None:
        self.applications += 1
        self.equivalent += float(self.levels.weight[k])

    def warm_up(self, T, H) -> None:
        """Compile (or load) the level kernels on the real arrays, writing scratch only."""
        be, dp = self.backend, self.dp
        for k, level in enumerate(self.lists):
            be.level_rate(dp, level, T, self.L[k], self.L[k])
            be.level_combine(dp, level, self.Y[k][0], self.TY[k][0], (1.0, 0.0, 0.0, 0.0, 0.0), H, H, H, self.L[k],
                             self.L[k])
            be.averaged_rate(dp, level, H, H, 1.0, self.L[k])
