"""The backend interface: a handful of kernels that the time stepper calls, nothing more.

A backend owns where arrays live (host memory for ``cpu``, GPU memory for ``cuda``). The stepper only
passes around the opaque arrays it got from :meth:`Backend.to_device` / :meth:`Backend.empty` and calls
the kernels below, so it never knows which backend runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import kernels
from ..materials import MaterialTables
from ..problem import BoundaryState, Problem


@dataclass
class DeviceProblem:
    """The problem's arrays as a backend holds them, packed so that a kernel takes a handful of arrays.

    Layout (float arrays in the run's precision, indices int32 unless said otherwise):

    ``tets`` (E, 4), ``edge_coef`` (E, 6), ``elem_mat`` (E,)
        connectivity, P1 stiffness coefficients (fem.EDGES order) and tissue of each element;
    ``node_mat`` (N,), ``node_ptr`` (N + 1,) int64, ``node_slot`` (4E,)
        each node's enthalpy-law tissue, and the node → element-slot incidence (:mod:`cryofield.kernels`);
    ``node_data`` (5, N)
        the per-node floats, one row each (:data:`cryofield.kernels.LUMPED`, ``PERFUSION``, ``METABOLIC``,
        ``ROBIN_COEF``, ``ROBIN_RHS``). Rows, not columns: one thread per node reads row k at column i,
        so consecutive threads read consecutive addresses (coalesced on the GPU, a unit-stride stream per
        row on the CPU), and the two Robin rows are one contiguous block that :meth:`Backend.upload_boundaries`
        overwrites in place;
    ``fixed`` (N,) uint8
        nodes held at a fixed temperature (overwritten in place by :meth:`Backend.upload_boundaries`);
    ``mat_f`` (6, M, P), ``mat_n`` (2, M)
        the material tables of :class:`cryofield.materials.MaterialTables` in two arrays: rows
        ``H_T``, ``H_H``, ``K_T``, ``K_K`` (padded to P points), ``H_SLOPE`` (columns 0 and 1) and ``PHASE``
        (column 0 solidus, column 1 liquidus) of ``mat_f``; the counts ``H_N``, ``K_N`` of ``mat_n``;
    ``flux`` (E, 4)
        scratch: each element's heat flow into its nodes (W).

    Every array keeps its identity (and so its device address) for the problem's lifetime: boundary
    updates write into it. The CUDA backend relies on that to prepare each launch's arguments once.
    """

    n_nodes: int
    n_elems: int
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
    arterial_temperature: float
    flux: Any


def pack_node_data(problem: Problem, dtype: np.dtype) -> np.ndarray:
    """(5, N) host array of the per-node floats (:class:`DeviceProblem`); the Robin rows are zero."""
    data = np.zeros((kernels.NODE_ROWS, problem.n_nodes), dtype=dtype)
    data[kernels.LUMPED], data[kernels.PERFUSION], data[kernels.METABOLIC] = (problem.lumped, problem.perfusion,
                                                                              problem.metabolic)
    return data


def pack_materials(tables: MaterialTables, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``mat_f`` (6, M, P) in ``dtype`` and ``mat_n`` (2, M) int32 of :class:`DeviceProblem`."""
    m = len(tables.h_n)
    width = max(tables.h_T.shape[1], tables.k_T.shape[1], 2)
    mat_f = np.zeros((kernels.MAT_ROWS, m, width), dtype=dtype)
    mat_f[kernels.H_T, :, :tables.h_T.shape[1]] = tables.h_T
    mat_f[kernels.H_H, :, :tables.h_H.shape[1]] = tables.h_H
    mat_f[kernels.K_T, :, :tables.k_T.shape[1]] = tables.k_T
    mat_f[kernels.K_K, :, :tables.k_k.shape[1]] = tables.k_k
    mat_f[kernels.H_SLOPE, :, :2] = tables.h_slope
    mat_f[kernels.PHASE, :, 0], mat_f[kernels.PHASE, :, 1] = tables.solidus, tables.liquidus
    mat_n = np.zeros((2, m), dtype=np.int32)
    mat_n[kernels.H_N], mat_n[kernels.K_N] = tables.h_n, tables.k_n
    return mat_f, mat_n


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
        """Copy the problem's arrays to the backend, packed as :class:`DeviceProblem` says, floats in ``dtype``."""
        f = lambda a: self.to_device(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
        i32 = lambda a: self.to_device(np.ascontiguousarray(a, dtype=np.int32))  # noqa: E731
        mat_f, mat_n = pack_materials(problem.tables, dtype)
        return DeviceProblem(
            n_nodes=problem.n_nodes, n_elems=problem.n_elems,
            tets=i32(problem.mesh.tets), edge_coef=f(problem.edge_coef), elem_mat=i32(problem.elem_mat),
            node_mat=i32(problem.node_mat), node_ptr=self.to_device(problem.node_ptr.astype(np.int64)),
            node_slot=i32(problem.node_slot), node_data=self.to_device(pack_node_data(problem, dtype)),
            fixed=self.to_device(np.zeros(problem.n_nodes, np.uint8)), mat_f=self.to_device(mat_f),
            mat_n=self.to_device(mat_n), arterial_temperature=float(problem.arterial_temperature),
            flux=self.empty((problem.n_elems, 4), dtype),
        )

    def upload_boundaries(self, dp: DeviceProblem, state: BoundaryState, dtype: np.dtype) -> None:
        """Make ``state`` the boundary conditions the operator applies (written into the arrays in place)."""
        self.update(dp.fixed, state.fixed.astype(np.uint8))
        robin = np.stack([state.robin_coef, state.robin_rhs]).astype(dtype)
        self.update(dp.node_data[kernels.ROBIN_COEF:kernels.ROBIN_RHS + 1], robin)

    def diagnostics(self) -> dict:
        """What the run summary records about the backend: every piece the CUDA backend needs (found or why
        not, :mod:`cryofield.backends.cuda_check`), whichever backend runs."""
        from . import cuda_check

        return {"cuda_pieces": cuda_check.as_dict(cuda_check.checks())}

    # -- kernels ----------------------------------------------------------------------------------
    @abstractmethod
    def temperature(self, dp: DeviceProblem, H: Any, T: Any) -> None:
        """T_i = T(H_i) with node i's enthalpy law."""

    @abstractmethod
    def apply_operator(self, dp: DeviceProblem, T: Any, out: Any) -> None:
        """out_i = dH_i/dt from the semi-discrete Pennes equation (0 at fixed nodes)."""

    @abstractmethod
    def combine(self, dp: DeviceProblem, out: Any, T_out: Any, coefs: tuple[float, float, float, float, float],
                Y1: Any, Y2: Any, Y0: Any, L1: Any, L0: Any) -> None:
        """out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0 and T_out = T(out): one RKL (or Euler) stage."""

    def stage(self, dp: DeviceProblem, T: Any, L: Any, out: Any, T_out: Any,
              coefs: tuple[float, float, float, float, float], Y1: Any, Y2: Any, Y0: Any, L0: Any) -> None:
        """L = F(T), then out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L + b0 L0 and T_out = T(out): one whole RKL stage.

        :meth:`apply_operator` followed by :meth:`combine`; a backend may fuse the two into one pass over
        the nodes. ``L0`` may be ``L`` itself (it is read after ``L`` is written).
        """
        self.apply_operator(dp, T, L)
        self.combine(dp, out, T_out, coefs, Y1, Y2, Y0, L, L0)

    def rkl2_stages(self, dp: DeviceProblem, table: np.ndarray, stages: list[tuple]) -> None:
        """Stages j = 1..s of one step, in order: ``stages[j - 1]`` is ``(T, L, out, T_out, Y1, Y2, Y0, L0)`` of
        :meth:`stage` and ``table[j]`` (a (s + 1, 5) host array) its coefficients (a1, a2, a0, b1, b0).

        Stage by stage by default; a backend may run the whole list at once (the CUDA backend replays a
        CUDA graph of it).
        """
        for j, (T, L, out, T_out, Y1, Y2, Y0, L0) in enumerate(stages, start=1):
            self.stage(dp, T, L, out, T_out, tuple(table[j]), Y1, Y2, Y0, L0)

    @abstractmethod
    def max_abs_difference(self, a: Any, b: Any) -> float:
        """max_i |a_i - b_i| (a reduction, returned to the host)."""

    @abstractmethod
    def track(self, T_old: Any, T_new: Any, dt: float, T_min: Any, thresholds: Any, time_below: Any) -> None:
        """Running minimum of T, and time spent below each threshold (linear in time within a step)."""
