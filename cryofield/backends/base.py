"""The backend interface: a handful of kernels that the time stepper calls, nothing more.

A backend owns where arrays live (host memory for ``cpu``, GPU memory for ``cuda``). The stepper only
passes around the opaque arrays it got from :meth:`Backend.to_device` / :meth:`Backend.empty` and calls
the kernels below, so it never knows which backend runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cryofield.fem import geometry as fem
from cryofield.kernels import bodies as kernels
from cryofield.model.materials import MaterialTables

if TYPE_CHECKING:  # type hints only: the problem layer sits above the backends, and boundaries would load pydantic
    from cryofield.model.boundaries import BoundaryState
    from cryofield.problem.assemble import Problem


@dataclass
class DeviceProblem:
    """The arrays of an ensemble of ``n_variants`` problems on one mesh, as a backend holds them, packed so
    that a kernel takes a handful of arrays. A single run is an ensemble of one.

    Layout (float arrays in the run's precision, indices int32 unless said otherwise). Shared by all variants:

    ``tets`` (E, 4), ``edge_coef`` (E, 6), ``elem_mat`` (E,)
        connectivity (an axisymmetric mesh's triangles with a fourth corner -1,
        :func:`cryofield.fem.geometry.kernel_cells`), P1 stiffness coefficients (fem.EDGES order) and tissue of
        each element;
    ``node_mat`` (N,), ``node_ptr`` (N + 1,) int64, ``node_slot`` (4E,)
        each node's enthalpy-law tissue, and the node → element-slot incidence (:mod:`cryofield.kernels.bodies`).

    Per variant, entry (i, b) at :func:`cryofield.kernels.bodies.at` (``variant_fastest`` 1: ``i * B + b``; 0:
    ``b * N + i``):

    ``node_data`` (5, N * B)
        the per-node floats, one row each (:data:`cryofield.kernels.bodies.LUMPED`, ``PERFUSION``, ``METABOLIC``,
        ``ROBIN_COEF``, ``ROBIN_RHS``). Rows, not columns: consecutive threads read consecutive addresses
        of each row (coalesced on the GPU, a unit-stride stream per row on the CPU);
    ``fixed`` (N * B,) uint8
        nodes held at a fixed temperature (written in place by :meth:`Backend.upload_boundaries`);
    ``mat_f`` (6, M * B, P), ``mat_n`` (2, M * B)
        the material tables of :class:`cryofield.model.materials.MaterialTables`, variant b's tissue m at
        ``m + b * n_materials``: rows ``H_T``, ``H_H``, ``K_T``, ``K_K`` (padded to P points), ``H_SLOPE``
        (columns 0 and 1) and ``PHASE`` (column 0 solidus, column 1 liquidus) of ``mat_f``; the counts
        ``H_N``, ``K_N`` of ``mat_n``;
    ``arterial`` (B,)
        each variant's arterial blood temperature (°C);
    ``flux`` (4 E B,)
        scratch: each element's heat flow into its nodes (W), slot 4 e + a of variant b at
        :func:`~cryofield.kernels.bodies.at` (4 e + a, b, 4 E, B, variant_fastest).

    Every array keeps its identity (and so its device address) for the problem's lifetime: boundary
    updates write into it. The CUDA backend relies on that to prepare each launch's arguments once.
    """

    n_nodes: int
    n_elems: int
    n_variants: int
    variant_fastest: int
    n_materials: int
    tets: Any
    edge_coef: Any
    elem_mat: Any
    node_mat: Any
    node_ptr: Any
    node_slot: Any
    node_data: Any
    fixed: Any
    mat_f: Any
    mat_n: Any
    arterial: Any
    flux: Any

    @property
    def layout(self) -> tuple[int, int, int, int]:
        """(N, E, B, variant_fastest): the scalars every ensemble kernel takes."""
        return self.n_nodes, self.n_elems, self.n_variants, self.variant_fastest

    def lane(self, b: int, n: int | None = None) -> slice:
        """The entries of variant ``b`` in a flat per-variant array of ``n`` (default: N) entries per variant.

        Examples
        --------
        >>> dp = DeviceProblem(3, 1, 2, 1, 1, *[None] * 12)
        >>> dp.lane(1), DeviceProblem(3, 1, 2, 0, 1, *[None] * 12).lane(1)
        (slice(1, None, 2), slice(3, 6, None))
        """
        n = self.n_nodes if n is None else n
        return slice(b, None, self.n_variants) if self.variant_fastest else slice(b * n, (b + 1) * n)


@dataclass
class DeviceLevel:
    """One level of a multirate step on a backend (:class:`cryofield.timestepping.multirate.Levels`): ``elems``
    (int32) the elements with a node of the level, ``nodes`` (int32) its ``n_active`` nodes then their halo."""

    elems: Any
    nodes: Any
    n_active: int


def pack_node_data(problems: list[Problem], dtype: np.dtype, dp: DeviceProblem) -> np.ndarray:
    """(5, N * B) host array of the per-node floats of every variant (:class:`DeviceProblem`); Robin rows zero."""
    data = np.zeros((kernels.NODE_ROWS, dp.n_nodes * dp.n_variants), dtype=dtype)
    for b, problem in enumerate(problems):
        lane = dp.lane(b)
        data[kernels.LUMPED, lane], data[kernels.PERFUSION, lane] = problem.lumped, problem.perfusion
        data[kernels.METABOLIC, lane] = problem.metabolic
    return data


def pack_materials(tables: list[MaterialTables], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``mat_f`` (6, M * B, P) in ``dtype`` and ``mat_n`` (2, M * B) int32 of :class:`DeviceProblem`: the
    tables of the B variants one after the other, padded to the widest."""
    m = len(tables[0].h_n)
    width = max(2, *(max(t.h_T.shape[1], t.k_T.shape[1]) for t in tables))
    mat_f = np.zeros((kernels.MAT_ROWS, m * len(tables), width), dtype=dtype)
    mat_n = np.zeros((2, m * len(tables)), dtype=np.int32)
    for b, t in enumerate(tables):
        rows = slice(b * m, (b + 1) * m)
        mat_f[kernels.H_T, rows, :t.h_T.shape[1]] = t.h_T
        mat_f[kernels.H_H, rows, :t.h_H.shape[1]] = t.h_H
        mat_f[kernels.K_T, rows, :t.k_T.shape[1]] = t.k_T
        mat_f[kernels.K_K, rows, :t.k_k.shape[1]] = t.k_k
        mat_f[kernels.H_SLOPE, rows, :2] = t.h_slope
        mat_f[kernels.PHASE, rows, 0], mat_f[kernels.PHASE, rows, 1] = t.solidus, t.liquidus
        mat_n[kernels.H_N, rows], mat_n[kernels.K_N, rows] = t.h_n, t.k_n
    return mat_f, mat_n


def check_shared_mesh(problems: list[Problem]) -> None:
    """Raise ValueError unless ``problems`` share one mesh, one numbering and one set of tissues."""
    first = problems[0]
    for b, p in enumerate(problems[1:], start=1):
        same = (p.n_nodes == first.n_nodes and p.n_elems == first.n_elems
                and len(p.materials) == len(first.materials) and p.region_names == first.region_names
                and np.array_equal(p.mesh.tets, first.mesh.tets) and np.array_equal(p.node_mat, first.node_mat)
                and np.array_equal(p.elem_mat, first.elem_mat) and np.array_equal(p.edge_coef, first.edge_coef))
        if not same:
            raise ValueError(f"variant {b} of the ensemble does not share the mesh of variant 0")


class Backend(ABC):
    """Kernels of one compute target. Implementations register themselves in :mod:`cryofield.backends`."""

    name: str = "abstract"
    #: Why this backend runs (set by :func:`cryofield.backends.get_backend`).
    chosen_by: str = "constructed directly"

    @property
    @abstractmethod
    def device_name(self) -> str:
        """Human-readable description of the device (CPU model and threads, GPU name)."""

    # -- memory -----------------------------------------------------------------------------------
    @abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """Copy a host array to the backend."""

    @abstractmethod
    def to_host(self, array: Any) -> np.ndarray:
        """Copy a backend array to a new host array."""

    @abstractmethod
    def empty(self, shape: int | tuple[int, ...], dtype: np.dtype) -> Any:
        """An uninitialised backend array."""

    def synchronize(self) -> None:
        """Wait until queued kernels have finished (for timing)."""

    def update(self, array: Any, host: np.ndarray) -> None:
        """Overwrite the backend array ``array`` with ``host`` (same shape and dtype), keeping its identity."""
        array[...] = host

    def load(self, problem: Problem, dtype: np.dtype) -> DeviceProblem:
        """Copy one problem's arrays to the backend (an ensemble of one, :meth:`load_ensemble`)."""
        return self.load_ensemble([problem], dtype)

    def load_ensemble(self, problems: list[Problem], dtype: np.dtype, variant_fastest: bool = True) -> DeviceProblem:
        """Copy the arrays of ``problems`` (one mesh, :func:`check_shared_mesh`) to the backend, packed as
        :class:`DeviceProblem` says, floats in ``dtype``."""
        check_shared_mesh(problems)
        first, nb = problems[0], len(problems)
        f = lambda a: self.to_device(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
        i32 = lambda a: self.to_device(np.ascontiguousarray(a, dtype=np.int32))  # noqa: E731
        mat_f, mat_n = pack_materials([p.tables for p in problems], dtype)
        dp = DeviceProblem(n_nodes=first.n_nodes, n_elems=first.n_elems, n_variants=nb,
                           variant_fastest=int(bool(variant_fastest) and nb > 1), n_materials=len(first.materials),
                           **dict.fromkeys(("tets", "edge_coef", "elem_mat", "node_mat", "node_ptr", "node_slot",
                                            "node_data", "fixed", "mat_f", "mat_n", "arterial", "flux")))
        dp.tets, dp.edge_coef = i32(fem.kernel_cells(first.mesh.tets)), f(first.edge_coef)
        dp.elem_mat = i32(first.elem_mat)
        dp.node_mat, dp.node_ptr = i32(first.node_mat), self.to_device(first.node_ptr.astype(np.int64))
        dp.node_slot, dp.node_data = i32(first.node_slot), self.to_device(pack_node_data(problems, dtype, dp))
        dp.fixed = self.to_device(np.zeros(first.n_nodes * nb, np.uint8))
        dp.mat_f, dp.mat_n = self.to_device(mat_f), self.to_device(mat_n)
        dp.arterial = f(np.array([p.arterial_temperature for p in problems], float))
        dp.flux = self.empty(4 * first.n_elems * nb, dtype)
        return dp

    def upload_boundaries(self, dp: DeviceProblem, state: BoundaryState, dtype: np.dtype, variant: int = 0) -> None:
        """Make ``state`` the boundary conditions variant ``variant`` applies (written into the arrays in place)."""
        self.write_lane(dp, dp.fixed, variant, state.fixed.astype(np.uint8))
        self.write_lane(dp, dp.node_data[kernels.ROBIN_COEF], variant, state.robin_coef.astype(dtype))
        self.write_lane(dp, dp.node_data[kernels.ROBIN_RHS], variant, state.robin_rhs.astype(dtype))

    def read_lane(self, dp: DeviceProblem, array: Any, b: int) -> np.ndarray:
        """Variant ``b``'s entries of the flat per-variant backend array ``array``, as a new host array."""
        return np.array(array[dp.lane(b, array.shape[0] // dp.n_variants)])

    def write_lane(self, dp: DeviceProblem, array: Any, b: int, host: np.ndarray) -> None:
        """Overwrite variant ``b``'s entries of the flat per-variant backend array ``array`` with ``host``."""
        array[dp.lane(b, array.shape[0] // dp.n_variants)] = host

    def diagnostics(self) -> dict:
        """What the run summary records about the backend: every piece the CUDA backend needs (found or why
        not, :mod:`cryofield.backends.cuda.check`), whichever backend runs."""
        from cryofield.backends.cuda import check as cuda_check

        return {"cuda_pieces": cuda_check.as_dict(cuda_check.checks())}

    # -- kernels: every variant of the ensemble ``dp`` in one pass -------------------------------------------------
    @abstractmethod
    def temperature(self, dp: DeviceProblem, H: Any, T: Any) -> None:
        """T = T(H) with each node's enthalpy law, every variant."""

    @abstractmethod
    def apply_operator(self, dp: DeviceProblem, T: Any, out: Any) -> None:
        """out = dH/dt from the semi-discrete Pennes equation (0 at fixed nodes), every variant."""

    @abstractmethod
    def combine(self, dp: DeviceProblem, out: Any, T_out: Any, coefs: tuple[float, float, float, float, float],
                Y1: Any, Y2: Any, Y0: Any, L1: Any, L0: Any) -> None:
        """out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0 and T_out = T(out), every variant with the same ``coefs``."""

    def stage(self, dp: DeviceProblem, T: Any, L: Any, out: Any, T_out: Any,
              coefs: tuple[float, float, float, float, float], Y1: Any, Y2: Any, Y0: Any, L0: Any) -> None:
        """L = F(T), then out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L + b0 L0 and T_out = T(out): one whole stage, every
        variant with the same ``coefs`` (:meth:`rkl2_stages` with one row)."""
        table = np.zeros((2, dp.n_variants, 5))
        table[1] = coefs
        self.rkl2_stages(dp, table, np.ones(dp.n_variants, np.int32), [(T, L, out, T_out, Y1, Y2, Y0, L0)])

    @abstractmethod
    def rkl2_stages(self, dp: DeviceProblem, table: np.ndarray, counts: np.ndarray, stages: list[tuple]) -> None:
        """Stages j = 1..s of one step of every variant, in order.

        ``stages[j - 1]`` is ``(T, L, out, T_out, Y1, Y2, Y0, L0)``: L = F(T), then out = a1 Y1 + a2 Y2 + a0 Y0 +
        b1 L + b0 L0 and T_out = T(out); ``L0`` may be ``L`` itself (it is read after ``L`` is written).
        ``table`` (s + 1, B, 5) host array: row j, column b the coefficients (a1, a2, a0, b1, b0) of variant
        b's stage j; ``counts`` (B,) int32: variant b takes part in stages 1..counts[b] only (0: it waits).
        One pass over the elements and one over the nodes per stage for the whole ensemble.
        """

    # -- multirate levels (a single run: one variant) ------------------------------------------------------------
    def load_level(self, dp: DeviceProblem, elems: np.ndarray, nodes: np.ndarray, n_active: int) -> DeviceLevel:
        """Copy one level's lists (:class:`DeviceLevel`) to the backend."""
        if dp.n_variants != 1:
            raise ValueError("multirate levels are for a single run (an ensemble of one)")
        return DeviceLevel(self.to_device(np.ascontiguousarray(elems, np.int32)),
                           self.to_device(np.ascontiguousarray(nodes, np.int32)), int(n_active))

    @abstractmethod
    def level_rate(self, dp: DeviceProblem, level: DeviceLevel, T: Any, L: Any, frozen: Any) -> None:
        """L = dH/dt on the level's active nodes (the flows of its elements only) and L = frozen on its halo;
        other entries are left as they are."""

    @abstractmethod
    def level_combine(self, dp: DeviceProblem, level: DeviceLevel, out: Any, T_out: Any,
                      coefs: tuple[float, float, float, float, float], Y1: Any, Y2: Any, Y0: Any, L1: Any,
                      L0: Any) -> None:
        """:meth:`combine` on the level's nodes and halo only."""

    @abstractmethod
    def averaged_rate(self, dp: DeviceProblem, level: DeviceLevel, v: Any, u: Any, eta: float, L: Any) -> None:
        """L = (v - u) / eta on the level's active nodes (the multirate averaged force)."""

    @abstractmethod
    def step_change(self, dp: DeviceProblem, T: Any, T_odd: Any, T_even: Any, counts: np.ndarray) -> np.ndarray:
        """(B,) host float64: per variant max_i |T_s,i - T_i| (NaN if any is NaN), where its last stage
        s = counts[b] wrote ``T_odd`` (s odd) or ``T_even`` (s even); 0 for a variant with no stages."""

    @abstractmethod
    def local_error(self, dp: DeviceProblem, T_older: Any, T_prev: Any, T: Any, T_odd: Any, T_even: Any,
                    counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(B,) host float64: per variant the largest estimated local error of its step (K; NaN if any is NaN),
        :func:`cryofield.kernels.bodies.local_error_at` with ``weights[b]`` ((B, 4) host array) over its nodes; 0 for a
        variant with ``counts[b]`` 0. The step's temperature is in ``T_odd`` or ``T_even`` as for
        :meth:`step_change`."""

    @abstractmethod
    def commit(self, dp: DeviceProblem, counts: np.ndarray, accept: np.ndarray, H: Any, T: Any, T_prev: Any,
               T_older: Any, Y: tuple[Any, Any, Any], T_odd: Any, T_even: Any) -> None:
        """For every variant b with ``accept[b]``: T_older = T_prev, T_prev = T, H = Y_s, T = T_s (s = counts[b],
        stage s's value in ``Y[(s - 1) % 3]``, its temperature in ``T_odd`` or ``T_even``); the others are left
        as they are."""

    @abstractmethod
    def track(self, dp: DeviceProblem, T_old: Any, T_new: Any, dt: np.ndarray, T_min: Any, thresholds: Any,
              time_below: Any) -> None:
        """Running minimum of T and time spent below each threshold (linear in time within a step), for every
        variant b with ``dt[b]`` > 0 (a host (B,) array of step lengths, s)."""
