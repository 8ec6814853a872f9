"""The one body of every solver kernel, rendered for each backend.

Each function here is the work of one thread: one element (``element_flux_at``) or one node (the
others). They are plain Python on scalars and arrays. A backend renders them with its own compiler
(:func:`render`: ``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU) and only writes
the loop or the launch around them, so the CPU and the GPU evaluate the same arithmetic in the same
order. The semi-discrete equation they implement is in :mod:`cryofield.problem` and docs/physics.md §2.

Array names follow :class:`cryofield.backends.base.DeviceProblem`. ``flux`` is (E, 4): the heat flow
into each local node of each element; ``node_slot`` lists, for node ``i``, the slots ``4 e + a`` where it
is local node ``a`` of element ``e`` (rows ``node_ptr[i]:node_ptr[i + 1]``), so the sum over a node's
elements is a gather without atomics, in a fixed order: runs are deterministic on both backends.

Kernels receive the per-node floats packed as one (5, N) array ``node_data`` (rows :data:`LUMPED` ...
:data:`ROBIN_RHS`) and the material tables as one float array ``mat_f`` (6, M, P) and one int array
``mat_n`` (2, M) (rows below); they take the rows as views (``node_data[LUMPED]``, no copy) and pass them
to the bodies, which see the separate arrays named above.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable

from . import pointwise

# The bodies call the laws by these names; :func:`render` rebinds them to each backend's compiled versions.
from .pointwise import below_fraction, conductivity_of, liquid_fraction_of, temperature_of  # noqa: F401

#: Rows of ``node_data`` (5, N): lumped volume (m³), perfusion P (W/m³/K), metabolic heat Q (W/m³), Robin
#: coefficient hA (W/K) and right-hand side hA T_amb + qA (W). Row-major, so that consecutive threads
#: (nodes) read consecutive addresses of each row, and the two Robin rows are one contiguous block.
LUMPED, PERFUSION, METABOLIC, ROBIN_COEF, ROBIN_RHS = range(5)
NODE_ROWS = 5
#: Rows of ``mat_f`` (6, M, P): enthalpy breakpoints h_T and h_H, conductivity points k_T and k_k,
#: h_slope (columns 0 and 1), and the phase-change interval (column 0 solidus, column 1 liquidus).
H_T, H_H, K_T, K_K, H_SLOPE, PHASE = range(6)
MAT_ROWS = 6
#: Rows of ``mat_n`` (2, M): the point counts h_n and k_n.
H_N, K_N = range(2)
#: Columns of a stage coefficient row: out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0.
A1, A2, A0, B1, B0 = range(5)


def element_flux_at(e, T, tets, edge_coef, elem_mat, k_T, k_k, k_n, flux):
    """flux[e, a] = -k_e sum_{b != a} K_ab (T_b - T_a): heat flow (W) into local node a of element e."""
    m = elem_mat[e]
    t0, t1, t2, t3 = T[tets[e, 0]], T[tets[e, 1]], T[tets[e, 2]], T[tets[e, 3]]
    # k_e = mean of k(T) at the four nodes, with the element's tissue
    k = 0.25 * (conductivity_of(t0, m, k_T, k_k, k_n) + conductivity_of(t1, m, k_T, k_k, k_n)
                + conductivity_of(t2, m, k_T, k_k, k_n) + conductivity_of(t3, m, k_T, k_k, k_n))
    # w_ab = k_e K_ab (T_b - T_a), edges in fem.EDGES order
    w01 = k * edge_coef[e, 0] * (t1 - t0)
    w02 = k * edge_coef[e, 1] * (t2 - t0)
    w03 = k * edge_coef[e, 2] * (t3 - t0)
    w12 = k * edge_coef[e, 3] * (t2 - t1)
    w13 = k * edge_coef[e, 4] * (t3 - t1)
    w23 = k * edge_coef[e, 5] * (t3 - t2)
    flux[e, 0] = -(w01 + w02 + w03)
    flux[e, 1] = w01 - w12 - w13
    flux[e, 2] = w02 + w12 - w23
    flux[e, 3] = w03 + w13 + w23


def node_rate_at(i, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, solidus, liquidus,
                 fixed, robin_coef, robin_rhs):
    """dH_i/dt = [sum_e flux_e,i + hA_i (T_amb - T_i) + qA_i] / V_i + f_l(T_i) [P_i (T_a - T_i) + Q_i]; 0 if fixed.

    ``robin_rhs`` holds hA T_amb + qA (W), ``robin_coef`` hA (W/K).
    """
    if fixed[i]:
        return 0.0
    s = 0.0
    for j in range(node_ptr[i], node_ptr[i + 1]):
        slot = node_slot[j]
        s += flux[slot >> 2, slot & 3]
    m = node_mat[i]
    fl = liquid_fraction_of(T[i], solidus[m], liquidus[m])
    return (s + robin_rhs[i] - robin_coef[i] * T[i]) / lumped[i] + fl * (perfusion[i] * (Ta - T[i]) + metabolic[i])


def combine_at(i, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, node_mat, h_T, h_H, h_n, h_slope):
    """out_i = a1 Y1_i + a2 Y2_i + a0 Y0_i + b1 L1_i + b0 L0_i (an RKL stage); T_out_i = T(out_i)."""
    y = a1 * Y1[i] + a2 * Y2[i] + a0 * Y0[i] + b1 * L1[i] + b0 * L0[i]
    out[i] = y
    T_out[i] = temperature_of(y, node_mat[i], h_T, h_H, h_n, h_slope)


def track_at(i, T_old, T_new, dt, T_min, thresholds, time_below):
    """T_min_i = min(T_min_i, T_new_i); time_below[k, i] += dt * (fraction of the step with T_i <= level k)."""
    a, b = T_old[i], T_new[i]
    if b < T_min[i]:
        T_min[i] = b
    for k in range(thresholds.shape[0]):
        time_below[k, i] += dt * below_fraction(a, b, thresholds[k])


#: The scalar laws of :mod:`cryofield.pointwise` that the bodies call.
LAWS = ("temperature_of", "conductivity_of", "liquid_fraction_of", "below_fraction")
#: The per-thread bodies above.
BODIES = ("element_flux_at", "node_rate_at", "combine_at", "track_at")


def render(compile_fn: Callable, name: str) -> types.ModuleType:
    """A module ``name`` of every law and body compiled with ``compile_fn`` (e.g. ``numba.njit(inline="always")``).

    Each body is rebuilt with globals in which the laws are their compiled versions, so a compiled body
    calls compiled laws (Numba resolves a function's globals when it compiles it). Kernels call them as
    attributes of the returned module, which Numba resolves at compile time too.
    """
    compiled: dict = {"__builtins__": builtins}
    for name in LAWS:
        compiled[name] = compile_fn(getattr(pointwise, name))
    for name in BODIES:
        body = globals()[name]
        compiled[name] = compile_fn(types.FunctionType(body.__code__, compiled, name))
    module = types.ModuleType(name, f"Kernel bodies of {__name__}, compiled with {compile_fn!r}.")
    for attr in LAWS + BODIES:
        setattr(module, attr, compiled[attr])
    return module


def stage_bytes(n_nodes: int, n_elems: int, itemsize: int) -> int:
    """Bytes one RKL stage must move at the least, each array once (``itemsize``: 8 or 4 bytes per float).

    A stage is :func:`element_flux_at` over the elements, then one node pass of :func:`node_rate_at` and
    :func:`combine_at` (both backends fuse them), with int32 indices:

    * element pass, per element: connectivity 4 x 4 = 16, edge coefficients 6 d, tissue id 4, flows
      written 4 d; per node: temperature d (the corner gathers hit cache: elements are sorted by node);
    * node pass, per element: slot indices 4 x 4 = 16, flows read 4 d; per node: row pointer 8,
      temperature d, tissue id 4, lumped volume, perfusion, metabolic heat, Robin coefficient and
      right-hand side 5 d, fixed flag 1, rate written d, Y1, Y2, Y0, L0 read 4 d, stage value and
      temperature written 2 d.

    Total E (36 + 14 d) + N (13 + 14 d): 148 E + 125 N bytes in float64, 92 E + 69 N in float32.
    Material tables (a few hundred bytes) are not counted.

    Examples
    --------
    >>> stage_bytes(1, 1, 8), stage_bytes(1, 1, 4)
    (273, 161)
    """
    return n_elems * (36 + 14 * itemsize) + n_nodes * (13 + 14 * itemsize)


def step_bytes(n_nodes: int, n_elems: int, itemsize: int, stages: int, thresholds: int = 2) -> int:
    """Bytes one accepted RKL2 step moves: ``stages`` stages, the step-size reduction (two fields read) and
    the dose tracker (T old and new read, T_min read and written, each threshold's time read and written)."""
    return (stages * stage_bytes(n_nodes, n_elems, itemsize) + 2 * n_nodes * itemsize
            + n_nodes * (4 * itemsize + 2 * thresholds * itemsize))
