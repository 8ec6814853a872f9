"""The CUDA kernels: one thread per work item around the shared bodies of :mod:`cryofield.kernels.bodies`.

Work layout
-----------
One thread per (element, variant) for the element heat flows, one thread per (node, variant) for
everything else, in the order of the ensemble's layout (:func:`cryofield.kernels.bodies.split`: with the
variants fastest, the threads of a warp read one element's geometry and consecutive variants' values); a
single run is an ensemble of one. The per-node sum of element contributions is a gather through the
node → slot incidence list, exactly as on the CPU, so there are no atomics and a run is deterministic and
sums in the CPU's order. The arithmetic of every kernel is the shared body in :mod:`cryofield.kernels.bodies`
(and the laws of :mod:`cryofield.kernels.pointwise`), compiled here as device functions; this module only
writes the thread indexing around them.

A stage of RKL2 is :func:`element_flux` then :func:`node_stage`, which sums the flows, adds perfusion,
metabolism and Robin terms and does the stage's vector update and T(H) in the same pass; a variant takes
part in its own stages only (``counts``). :func:`step_change` and :func:`local_error` reduce per variant and
per block (:func:`block_max`); :func:`lane_out` and :func:`lane_in` move one variant's entries.

Every kernel takes its array arguments first and its scalars last, because
:class:`~cryofield.backends.cuda.launch.Launcher` marshals the arrays once and converts only the scalars on
later launches. :data:`KERNELS` are the kernels as the backend launches them; the exact mode compiles its
own copies of :data:`KERNEL_FUNCTIONS` (:mod:`cryofield.backends.cuda.exact`).
"""

from __future__ import annotations

from numba import cuda, float64

from cryofield.kernels import bodies as K  # layout constants of the packed arrays (Numba freezes them at compile time)
from cryofield.kernels import bodies as kernels

#: Threads per block of the reductions (a power of two: shared-memory tree).
REDUCE_THREADS = 256

k = kernels.render(cuda.jit(device=True), f"{__name__}.bodies")


# -- one thread per work item (i, b) of the n * nb in the layout's order (kernels.split), whose address is the item's
# index itself --------------------------------------------------------------------------------------------------------
def element_flux(T, tets, edge_coef, elem_mat, mat_f, mat_n, flux, counts, j, n, ne, nb, vf, n_mat):
    """flux[e, b] for the variants taking part in stage j (:func:`cryofield.kernels.bodies.element_flux_at`)."""
    t = cuda.grid(1)
    if t < ne * nb:
        e, b = k.split(t, ne, nb, vf)
        if counts[b] >= j:
            k.element_flux_at(e, b, T, tets, edge_coef, elem_mat, n_mat, mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N],
                              flux, n, ne, nb, vf)


def node_rate(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, arterial, out, n, ne, nb, vf, n_mat):
    """out = dH/dt (:func:`cryofield.kernels.bodies.node_rate_at`), every variant."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        out[t] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                                node_data[K.METABOLIC], arterial, node_mat, n_mat, mat_f[K.PHASE, :, 0],
                                mat_f[K.PHASE, :, 1], fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, nb,
                                vf)


def node_stage(T, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, mat_n, arterial, coefs, counts, L, out,
               T_out, Y1, Y2, Y0, L0, j, n, ne, nb, vf, n_mat):
    """L = dH/dt; out = a1 Y1 + a2 Y2 + a0 Y0 + b1 L + b0 L0; T_out = T(out), for the variants taking part in
    stage j, with variant b's coefficients ``coefs[j, b]`` (a device table)."""
    t = cuda.grid(1)
    if t >= n * nb:
        return
    i, b = k.split(t, n, nb, vf)
    if counts[b] < j:
        return
    L[t] = k.node_rate_at(i, b, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                          node_data[K.METABOLIC], arterial, node_mat, n_mat, mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1],
                          fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, nb, vf)
    # L_t is read back, rounded to the storage precision as the unfused path does; L0 may alias L
    k.combine_at(t, node_mat[i] + b * n_mat, out, T_out, coefs[j, b, K.A1], Y1, coefs[j, b, K.A2], Y2,
                 coefs[j, b, K.A0], Y0, coefs[j, b, K.B1], L, coefs[j, b, K.B0], L0, mat_f[K.H_T], mat_f[K.H_H],
                 mat_n[K.H_N], mat_f[K.H_SLOPE])


def temperature(H, node_mat, mat_f, mat_n, T, n, nb, vf, n_mat):
    """T = T(H), every variant."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        T[t] = k.temperature_of(H[t], node_mat[i] + b * n_mat, mat_f[K.H_T], mat_f[K.H_H], mat_n[K.H_N],
                                mat_f[K.H_SLOPE])


def combine(out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0, n, nb, vf, n_mat):
    """A stage's vector update and T(H), one set of coefficients for all
    (:func:`cryofield.kernels.bodies.combine_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        k.combine_at(t, node_mat[i] + b * n_mat, out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, mat_f[K.H_T],
                     mat_f[K.H_H], mat_n[K.H_N], mat_f[K.H_SLOPE])


def track(T_old, T_new, T_min, thresholds, time_below, dt, n, nb, vf):
    """Running minimum and time below each level of the variants with dt[b] > 0
    (:func:`cryofield.kernels.bodies.track_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        if dt[b] > 0:
            k.track_at(t, T_old, T_new, dt[b], T_min, thresholds, time_below)


def commit(counts, accept, H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even, n, nb, vf):
    """The accepted variants' step results become their state (:func:`cryofield.kernels.bodies.commit_at`)."""
    t = cuda.grid(1)
    if t < n * nb:
        i, b = k.split(t, n, nb, vf)
        if accept[b]:
            k.commit_at(t, counts[b], H, T, T_prev, T_older, Y_a, Y_b, Y_c, T_odd, T_even)


def step_change(T, T_odd, T_even, counts, partial, n, nb, vf):
    """partial[b * blocks + block] = max |T_s - T| of variant b = blockIdx.y over the nodes the block's threads
    stride over."""
    cache = cuda.shared.array(REDUCE_THREADS, float64)
    tid, b = cuda.threadIdx.x, cuda.blockIdx.y
    s = counts[b]
    m = 0.0
    if s > 0:
        for i in range(cuda.blockIdx.x * REDUCE_THREADS + tid, n, cuda.gridDim.x * REDUCE_THREADS):
            m = k.nan_max(m, k.change_at(k.at(i, b, n, nb, vf), s, T, T_odd, T_even))
    block_max(cache, tid, m, partial, b)


def local_error(T_older, T_prev, T, T_odd, T_even, counts, weights, node_mat, mat_f, partial, n, nb, vf, n_mat):
    """partial[b * blocks + block] = the largest local error estimate (:func:`cryofield.kernels.bodies.local_error_at`)
    of variant b = blockIdx.y over the nodes the block's threads stride over."""
    cache = cuda.shared.array(REDUCE_THREADS, float64)
    tid, b = cuda.threadIdx.x, cuda.blockIdx.y
    s = counts[b]
    m = 0.0
    if s > 0:
        for i in range(cuda.blockIdx.x * REDUCE_THREADS + tid, n, cuda.gridDim.x * REDUCE_THREADS):
            m = k.nan_max(m, k.local_error_at(k.at(i, b, n, nb, vf), node_mat[i] + b * n_mat, s, weights[b], T_older,
                                              T_prev, T, T_odd, T_even, mat_f[K.PHASE]))
    block_max(cache, tid, m, partial, b)


@cuda.jit(device=True)
def block_max(cache, tid, m, partial, b):
    """partial[b * blocks + block] = the NaN-propagating max of the block's threads' values ``m`` (a tree in
    shared memory)."""
    cache[tid] = m
    cuda.syncthreads()
    step = REDUCE_THREADS // 2
    while step > 0:
        if tid < step:
            cache[tid] = k.nan_max(cache[tid], cache[tid + step])
        cuda.syncthreads()
        step //= 2
    if tid == 0:
        partial[b * cuda.gridDim.x + cuda.blockIdx.x] = cache[0]


# Multirate levels (a single run): the same bodies over a level's element and node lists.
def level_flux(T, elems, tets, edge_coef, elem_mat, mat_f, mat_n, flux, n, ne):
    """flux of the level's elements (:func:`cryofield.kernels.bodies.element_flux_at`)."""
    q = cuda.grid(1)
    if q < elems.shape[0]:
        k.element_flux_at(elems[q], 0, T, tets, edge_coef, elem_mat, 0, mat_f[K.K_T], mat_f[K.K_K], mat_n[K.K_N], flux,
                          n, ne, 1, 0)


def level_rate(T, nodes, frozen, flux, node_ptr, node_slot, node_data, node_mat, fixed, mat_f, arterial, L, n_active,
               n, ne):
    """L = dH/dt on the level's active nodes, L = frozen on its halo."""
    q = cuda.grid(1)
    if q >= nodes.shape[0]:
        return
    i = nodes[q]
    if q < n_active:
        L[i] = k.node_rate_at(i, 0, T, flux, node_ptr, node_slot, node_data[K.LUMPED], node_data[K.PERFUSION],
                              node_data[K.METABOLIC], arterial, node_mat, 0, mat_f[K.PHASE, :, 0], mat_f[K.PHASE, :, 1],
                              fixed, node_data[K.ROBIN_COEF], node_data[K.ROBIN_RHS], n, ne, 1, 0)
    else:
        L[i] = frozen[i]


def level_combine(nodes, out, T_out, Y1, Y2, Y0, L1, L0, node_mat, mat_f, mat_n, a1, a2, a0, b1, b0):
    """:func:`cryofield.kernels.bodies.combine_at` on the level's nodes and halo."""
    q = cuda.grid(1)
    if q < nodes.shape[0]:
        i = nodes[q]
        k.combine_at(i, node_mat[i], out, T_out, a1, Y1, a2, Y2, a0, Y0, b1, L1, b0, L0, mat_f[K.H_T], mat_f[K.H_H],
                     mat_n[K.H_N], mat_f[K.H_SLOPE])


def averaged_rate(nodes, v, u, L, eta, n_active):
    """L = (v - u) / eta on the level's active nodes (:func:`cryofield.kernels.bodies.averaged_rate_at`)."""
    q = cuda.grid(1)
    if q < n_active:
        k.averaged_rate_at(nodes[q], v, u, eta, L)


def lane_out(src, dst, start, stride):
    """dst[i] = src[start + i * stride]: one variant's entries into a contiguous array."""
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[start + i * stride]


def lane_in(src, dst, start, stride):
    """dst[start + i * stride] = src[i]: a contiguous array into one variant's entries."""
    i = cuda.grid(1)
    if i < src.shape[0]:
        dst[start + i * stride] = src[i]


#: The kernels' Python functions, by name.
KERNEL_FUNCTIONS = {f.__name__: f for f in (element_flux, node_rate, node_stage, temperature, combine, track, commit,
                                            step_change, local_error, level_flux, level_rate, level_combine,
                                            averaged_rate, lane_out, lane_in)}
#: The kernels as the backend launches them (disk-cached, FMA contraction as NVVM does by default).
KERNELS = {name: cuda.jit(cache=True)(f) for name, f in KERNEL_FUNCTIONS.items()}
