"""The one body of every solver kernel, rendered for each backend.

Each function here is the work of one thread: one element (``element_flux_at``) or one node (the
others). They are plain Python on scalars and arrays. A backend renders them with its own compiler
(:func:`render`: ``numba.njit`` on the CPU, ``numba.cuda.jit(device=True)`` on the GPU) and only writes
the loop or the launch around them, so the CPU and the GPU evaluate the same arithmetic in the same
order. The semi-discrete equation they implement is in :mod:`cryofield.problem.assemble` and docs/physics.md §2.

Array names follow :class:`cryofield.backends.base.DeviceProblem`. ``flux`` is flat, 4 E B entries: the
heat flow into local node ``a`` of element ``e`` of variant ``b`` at slot ``4 e + a`` (:func:`at` of the
slot; with the variants fastest, one slot's variants share a cache line); ``node_slot`` lists, for node
``i``, the slots ``4 e + a`` where it is local node ``a`` of element ``e`` (rows
``node_ptr[i]:node_ptr[i + 1]``), so the sum over a node's elements is a gather without atomics, in a
fixed order: runs are deterministic on both backends.

Ensembles. Every body works on one entry of one variant ``b`` of ``B`` variants that share the mesh
(:class:`cryofield.timestepping.stepper.Ensemble`; a single run is ``B = 1``). Geometry and incidence are stored once;
per-variant arrays (state, per-node floats, fixed flags, flows) are flat with entry ``(i, b)`` at
:func:`at` ``(i, b, n, nb, vf)``: variant fastest (``vf`` 1) or node fastest (``vf`` 0). Variant ``b``'s
tissues are materials ``m + b * n_mat`` of the material tables, so a variant may change any property.
A loop or a grid covers the ``n * B`` work items in the layout's order (:func:`split`), and the same
arithmetic in the same order runs for a variant whatever ``B`` is: an ensemble member's numbers equal
those of the same case run alone, bit for bit.

Kernels receive the per-node floats packed as one (5, N * B) array ``node_data`` (rows :data:`LUMPED` ...
:data:`ROBIN_RHS`) and the material tables as one float array ``mat_f`` (6, M * B, P) and one int array
``mat_n`` (2, M * B) (rows below); they take the rows as views (``node_data[LUMPED]``, no copy) and pass
them to the bodies, which see the separate arrays named above.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable

from numba import int64  # noqa: F401  (the bodies cast with it)

from cryofield.kernels import pointwise

# The bodies call the laws by these names; :func:`render` rebinds them to each backend's compiled versions.
from cryofield.kernels.pointwise import below_fraction, conductivity_of, liquid_fraction_of, temperature_of  # noqa: F401

#: Rows of ``node_data`` (5, N * B): lumped volume (m³), perfusion P (W/m³/K), metabolic heat Q (W/m³), Robin
#: coefficient hA (W/K) and right-hand side hA T_amb + qA (W). Row-major, so that consecutive threads
#: (nodes) read consecutive addresses of each row, and the two Robin rows are one contiguous block.
LUMPED, PERFUSION, METABOLIC, ROBIN_COEF, ROBIN_RHS = range(5)
NODE_ROWS = 5
#: Rows of ``mat_f`` (6, M * B, P): enthalpy breakpoints h_T and h_H, conductivity points k_T and k_k,
#: h_slope (columns 0 and 1), and the phase-change interval (column 0 solidus, column 1 liquidus).
H_T, H_H, K_T, K_K, H_SLOPE, PHASE = range(6)
MAT_ROWS = 6
#: Rows of ``mat_n`` (2, M * B): the point counts h_n and k_n.
H_N, K_N = range(2)
#: Columns of a stage coefficient row: out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L1 + b0 L0.
A1, A2, A0, B1, B0 = range(5)


def at(i, b, n, nb, vf):
    """Flat address of entry ``i`` (of ``n``) of variant ``b`` (of ``nb``) in an ensemble array.

    ``vf`` 1: variant fastest, ``i * nb + b`` (the variants of one node are adjacent); 0: node fastest,
    ``b * n + i`` (each variant is one contiguous block). A single run (``nb`` 1) is ``i`` either way.
    """
    if vf:
        return i * nb + b
    return b * n + i


def split(t, n, nb, vf):
    """(i, b) of work item ``t`` of ``n * nb``, in the order of the layout (consecutive items, adjacent addresses)."""
    t = int64(t)  # a parallel loop's index may be unsigned: unsigned // signed would be a float
    if nb == 1:
        return t, 0
    if vf:
        return t // nb, t % nb
    return t % n, t // n


def nan_max(a, b):
    """max(a, b), NaN if either is NaN (a reduction must not skip a non-finite temperature)."""
    if a != a or a >= b:
        return a
    return b


def element_flux_at(e, b, T, tets, edge_coef, elem_mat, n_mat, k_T, k_k, k_n, flux, n, ne, nb, vf):
    """flux[e, a] = -k_e sum_{b != a} K_ab (T_b - T_a): heat flow (W) into local node a of element e, variant b.

    Element e is a tetrahedron, or an r-z triangle of an axisymmetric mesh when its fourth corner is -1
    (the same equation with its three nodes and the r-weighted K_ab of
    :func:`cryofield.fem.geometry.edge_coefficients`).

    Geometry (``tets``, ``edge_coef``, ``elem_mat``) is shared; variant b's tissues are materials
    ``elem_mat[e] + b * n_mat`` of the tables, its temperatures and flows are at :func:`at` addresses.
    """
    m = elem_mat[e] + b * n_mat
    t0, t1 = T[at(tets[e, 0], b, n, nb, vf)], T[at(tets[e, 1], b, n, nb, vf)]
    t2 = T[at(tets[e, 2], b, n, nb, vf)]
    ns = 4 * ne
    if tets[e, 3] < 0:  # an r-z triangle of an axisymmetric mesh (fem.kernel_cells): three corners, three edges
        # k_e = mean of k(T) at the three nodes; w_ab = k_e K_ab (T_b - T_a), edges 01, 02, 12 (fem.TRIANGLE_EDGE_SLOTS)
        k = (conductivity_of(t0, m, k_T, k_k, k_n) + conductivity_of(t1, m, k_T, k_k, k_n)
             + conductivity_of(t2, m, k_T, k_k, k_n)) / 3.0
        w01 = k * edge_coef[e, 0] * (t1 - t0)
        w02 = k * edge_coef[e, 1] * (t2 - t0)
        w12 = k * edge_coef[e, 3] * (t2 - t1)
        flux[at(4 * e, b, ns, nb, vf)] = -(w01 + w02)
        flux[at(4 * e + 1, b, ns, nb, vf)] = w01 - w12
        flux[at(4 * e + 2, b, ns, nb, vf)] = w02 + w12
        flux[at(4 * e + 3, b, ns, nb, vf)] = 0.0  # no fourth corner: no node gathers this slot
        return
    t3 = T[at(tets[e, 3], b, n, nb, vf)]
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
    # slot 4 e + a of variant b (the node pass gathers slots): flux[at(4 e + a, b, 4 ne, nb, vf)]
    flux[at(4 * e, b, ns, nb, vf)] = -(w01 + w02 + w03)
    flux[at(4 * e + 1, b, ns, nb, vf)] = w01 - w12 - w13
    flux[at(4 * e + 2, b, ns, nb, vf)] = w02 + w12 - w23
    flux[at(4 * e + 3, b, ns, nb, vf)] = w03 + w13 + w23


def node_rate_at(i, b, T, flux, node_ptr, node_slot, lumped, perfusion, metabolic, Ta, node_mat, n_mat, solidus,
                 liquidus, fixed, robin_coef, robin_rhs, n, ne, nb, vf):
    """dH_i/dt = [sum_e flux_e,i + hA_i (T_amb - T_i) + qA_i] / V_i + f_l(T_i) [P_i (T_a - T_i) + Q_i]; 0 if fixed.

    For variant ``b``: per-node arrays at :func:`at` addresses, ``Ta[b]`` its arterial temperature.
    ``robin_rhs`` holds hA T_amb + qA (W), ``robin_coef`` hA (W/K).
    """
    p = at(i, b, n, nb, vf)
    if fixed[p]:
        return 0.0
    s = 0.0
    for j in range(node_ptr[i], node_ptr[i + 1]):
        s += flux[at(node_slot[j], b, 4 * ne, nb, vf)]
    m = node_mat[i] + b * n_mat
    fl = liquid_fraction_of(T[p], solidus[m], liquidus[m])
    return (s + robin_rhs[p] - robin_coef[p] * T[p]) / lumped[p] + fl * (perfusion[p] * (Ta[b] - T[p]) + metabolic[p])


def combine_at(p, m, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, h_T, h_H, h_n, h_slope):
    """out_p = a1 Y1_p + a2 Y2_p + a0 Y0_p + b1 L1_p + b0 L0_p (an RKL stage); T_out_p = T(out_p), material m."""
    y = a1 * Y1[p] + a2 * Y2[p] + a0 * Y0[p] + b1 * L1[p] + b0 * L0[p]
    out[p] = y
    T_out[p] = temperature_of(y, m, h_T, h_H, h_n, h_slope)


def averaged_rate_at(p, v, u, eta, L):
    """L_p = (v_p - u_p) / eta: the averaged force of a multirate level (:mod:`cryofield.timestepping.multirate`)."""
    L[p] = (v[p] - u[p]) / eta


def change_at(p, s, T, T_odd, T_even):
    """|T_s - T_p| of a variant whose step had ``s`` stages: stage s wrote its temperature to ``T_odd`` (s odd)
    or ``T_even`` (s even), the rotation of :meth:`cryofield.timestepping.stepper.Ensemble.step`."""
    if s % 2 == 0:
        return abs(T_even[p] - T[p])
    return abs(T_odd[p] - T[p])


def local_error_at(p, m, s, w, T_older, T_prev, T, T_odd, T_even, phase):
    """|w0 T_older + w1 T_prev + w2 T + w3 T_s| at address p: the step's estimated local error (K); 0 where the
    node's four temperatures straddle its tissue's solidus or liquidus.

    ``w`` are the weights of the third divided difference over the four times, times dt³ (so the value is
    about dt³ |d³T/dt³| / 6, the leading term of a second-order step's local error;
    :func:`cryofield.timestepping.control.error_weights`). Across the solidus or liquidus T(t) has a kink (the heat
    capacity jumps): there the divided difference measures the kink, not the step's error, and
    ``max_change`` bounds the step. ``phase`` is the material table's phase-change interval (column 0
    solidus, 1 liquidus), ``m`` the node's tissue.
    """
    t0, t1, t2 = T_older[p], T_prev[p], T[p]
    t3 = T_even[p] if s % 2 == 0 else T_odd[p]
    low = min(min(t0, t1), min(t2, t3))
    high = max(max(t0, t1), max(t2, t3))
    solidus, liquidus = phase[m, 0], phase[m, 1]
    if (low <= solidus and solidus <= high) or (low <= liquidus and liquidus <= high):
        return 0.0
    return abs(w[0] * t0 + w[1] * t1 + w[2] * t2 + w[3] * t3)


def commit_at(p, s, H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even):
    """Accept a step of ``s`` stages at address p: T_older = T_prev, T_prev = T, H = Y_s, T = T(Y_s).

    Stage s wrote its value to ``(Y_a, Y_b, Y_c)[(s - 1) % 3]`` and its temperature to ``T_odd`` / ``T_even``.
    """
    T_older[p] = T_prev[p]
    T_prev[p] = T[p]
    r = (s - 1) % 3
    if r == 0:
        H[p] = Y_a[p]
    elif r == 1:
        H[p] = Y_b[p]
    else:
        H[p] = Y_c[p]
    if s % 2 == 0:
        T[p] = T_even[p]
    else:
        T[p] = T_odd[p]


def track_at(p, T_old, T_new, dt, T_min, thresholds, time_below):
    """T_min_p = min(T_min_p, T_new_p); time_below[k, p] += dt * (fraction of the step with T_p <= level k)."""
    a, b = T_old[p], T_new[p]
    if b < T_min[p]:
        T_min[p] = b
    for k in range(thresholds.shape[0]):
        time_below[k, p] += dt * below_fraction(a, b, thresholds[k])


#: The scalar laws of :mod:`cryofield.kernels.pointwise` that the bodies call.
LAWS = ("temperature_of", "conductivity_of", "liquid_fraction_of", "below_fraction")
#: The per-thread bodies above, helpers first (a body calls only those before it).
BODIES = ("at", "split", "nan_max", "element_flux_at", "node_rate_at", "combine_at", "averaged_rate_at", "change_at",
          "local_error_at", "commit_at", "track_at")


def render(compile_fn: Callable, name: str) -> types.ModuleType:
    """A module ``name`` of every law and body compiled with ``compile_fn`` (e.g. ``numba.njit(inline="always")``).

    Each body is rebuilt with globals in which the laws are their compiled versions, so a compiled body
    calls compiled laws (Numba resolves a function's globals when it compiles it). Kernels call them as
    attributes of the returned module, which Numba resolves at compile time too.
    """
    compiled: dict = {"__builtins__": builtins, "int64": int64}
    for name in LAWS:
        compiled[name] = compile_fn(getattr(pointwise, name))
    for name in BODIES:
        body = globals()[name]
        compiled[name] = compile_fn(types.FunctionType(body.__code__, compiled, name))
    module = types.ModuleType(name, f"Kernel bodies of {__name__}, compiled with {compile_fn!r}.")
    for attr in LAWS + BODIES:
        setattr(module, attr, compiled[attr])
    return module


def stage_bytes(n_nodes: int, n_elems: int, itemsize: int, variants: int = 1) -> int:
    """Bytes one RKL stage must move at the least, each array once (``itemsize``: 8 or 4 bytes per float).

    A stage is :func:`element_flux_at` over the elements, then one node pass of :func:`node_rate_at` and
    :func:`combine_at` (both backends fuse them), with int32 indices. Shared by every variant, read once:

    * per element: connectivity 4 x 4 = 16, edge coefficients 6 d, tissue id 4, slot indices 4 x 4 = 16;
      per node: row pointer 8, tissue id 4;

    and per variant:

    * element pass: flows written 4 d per element, temperature d per node (the corner gathers hit cache:
      elements are sorted by node);
    * node pass: flows read 4 d per element; per node temperature d, lumped volume, perfusion, metabolic
      heat, Robin coefficient and right-hand side 5 d, fixed flag 1, rate written d, Y1, Y2, Y0, L0 read
      4 d, stage value and temperature written 2 d.

    One variant: E (36 + 14 d) + N (13 + 14 d), 148 E + 125 N bytes in float64, 92 E + 69 N in float32.
    Material tables (a few hundred bytes per variant) are not counted.

    Examples
    --------
    >>> stage_bytes(1, 1, 8), stage_bytes(1, 1, 4), stage_bytes(1, 1, 8, variants=2)
    (273, 161, 450)
    """
    shared = n_elems * (36 + 6 * itemsize) + n_nodes * 12
    return shared + variants * (n_elems * 8 * itemsize + n_nodes * (1 + 14 * itemsize))


def step_bytes(n_nodes: int, n_elems: int, itemsize: int, stages: int, thresholds: int = 2, variants: int = 1) -> int:
    """Bytes one accepted RKL2 step moves: ``stages`` stages, the step-size reduction (two fields read), the
    commit (T_prev, T, Y_s, T_s read; T_older, T_prev, H, T written) and the dose tracker (T old and new
    read, T_min read and written, each threshold's time read and written), per variant. The local error
    estimate (four fields read) is left out: it runs only with a tolerance and three earlier steps."""
    per_node = 2 * itemsize + 8 * itemsize + 4 * itemsize + 2 * thresholds * itemsize
    return stages * stage_bytes(n_nodes, n_elems, itemsize, variants) + variants * n_nodes * per_node
