"""The CUDA backend: the CPU backend's kernels in Numba-CUDA, with the whole solution state on the GPU.

One job per module:

:mod:`~cryofield.backends.cuda.check`
    what the backend needs (numba-cuda, driver, device, NVVM, libdevice, NVRTC, a test compile), checked
    piece by piece; it imports no kernel, so ``auto`` and ``cryofield info`` can ask cheaply;
:mod:`~cryofield.backends.cuda.kernels`
    the ``@cuda.jit`` kernels, one thread per work item around the shared bodies of
    :mod:`cryofield.kernels.bodies`;
:mod:`~cryofield.backends.cuda.exact`
    the exact mode: the kernels compiled without FMA contraction, for parity with the CPU;
:mod:`~cryofield.backends.cuda.launch`
    the launch configuration and launches prepared once per set of arrays;
:mod:`~cryofield.backends.cuda.graphs`
    a CUDA graph per RKL2 step, captured once and replayed;
:mod:`~cryofield.backends.cuda.backend`
    :class:`~cryofield.backends.cuda.backend.CudaBackend`, the backend itself.

This file imports none of them: ``numba.cuda`` reads ``NUMBA_ENABLE_CUDASIM`` when it is first imported,
and the kernels are built on import, so each module loads only when it is asked for.
"""
