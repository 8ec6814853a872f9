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

from ..problem import BoundaryState, Problem


@dataclass
class DeviceProblem:
    """The problem's arrays as a backend holds them (same names as :class:`~cryofield.problem.Problem`)."""

    n_nodes: int
    n_elems: int
    tets: Any
    edge_coef: Any
    elem_mat: Any
    node_mat: Any
    node_ptr: Any
    node_slot: Any
    lumped: Any
    perfusion: Any
    metabolic: Any
    arterial_temperature: float
    h_T: Any
    h_H: Any
    h_n: Any
    h_slope: Any
    k_T: Any
    k_k: Any
    k_n: Any
    solidus: Any
    liquidus: Any
    flux: Any  # (E, 4) scratch: each element's heat flow into its nodes (W)
    fixed: Any = None  # (N,) uint8, set by upload_boundaries
    robin_coef: Any = None
    robin_rhs: Any = None


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

    def load(self, problem: Problem, dtype: np.dtype) -> DeviceProblem:
        """Copy the problem's arrays to the backend, floating arrays in ``dtype``."""
        f = lambda a: self.to_device(np.ascontiguousarray(a, dtype=dtype))  # noqa: E731
        i32 = lambda a: self.to_device(np.ascontiguousarray(a, dtype=np.int32))  # noqa: E731
        t = problem.tables
        return DeviceProblem(
            n_nodes=problem.n_nodes, n_elems=problem.n_elems,
            tets=i32(problem.mesh.tets), edge_coef=f(problem.edge_coef), elem_mat=i32(problem.elem_mat),
            node_mat=i32(problem.node_mat), node_ptr=self.to_device(problem.node_ptr.astype(np.int64)),
            node_slot=i32(problem.node_slot), lumped=f(problem.lumped), perfusion=f(problem.perfusion),
            metabolic=f(problem.metabolic), arterial_temperature=float(problem.arterial_temperature),
            h_T=f(t.h_T), h_H=f(t.h_H), h_n=i32(t.h_n), h_slope=f(t.h_slope), k_T=f(t.k_T), k_k=f(t.k_k),
            k_n=i32(t.k_n), solidus=f(t.solidus), liquidus=f(t.liquidus),
            flux=self.empty((problem.n_elems, 4), dtype),
        )

    def upload_boundaries(self, dp: DeviceProblem, state: BoundaryState, dtype: np.dtype) -> None:
        """Make ``state`` the boundary conditions the operator applies."""
        dp.fixed = self.to_device(state.fixed.astype(np.uint8))
        dp.robin_coef = self.to_device(state.robin_coef.astype(dtype))
        dp.robin_rhs = self.to_device(state.robin_rhs.astype(dtype))

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

    @abstractmethod
    def max_abs_difference(self, a: Any, b: Any) -> float:
        """max_i |a_i - b_i| (a reduction, returned to the host)."""

    @abstractmethod
    def track(self, T_old: Any, T_new: Any, dt: float, T_min: Any, thresholds: Any, time_below: Any) -> None:
        """Running minimum of T, and time spent below each threshold (linear in time within a step)."""
