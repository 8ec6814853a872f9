"""The exact mode: the CUDA kernels compiled without FMA contraction, so the GPU evaluates the CPU's arithmetic.

Real GPUs contract ``a * b + c`` into one fused multiply-add (NVVM's default, ``-fma=1``); the CPU and the
CUDA simulator round the product first. In float64 that changes results by round-off, about 1e-13 K on
the 48-node parity case, up to about 1e-7 K over a long run on a 30 k-node mesh when both backends take
the same steps; a step-size decision that flips on the difference changes results by far more. numba-cuda
has no switch for it (``cuda.jit(fastmath=True)`` turns FMA *on*, with other unsafe options), so
``CudaBackend(exact=True)`` (or ``CRYOFIELD_CUDA_EXACT=1``) launches its own copies of the kernels
(:func:`exact_kernels`: not cached, without LTO), compiled under :func:`no_fma`, which adds ``fma=False`` to
the options numba-cuda hands to NVVM (``numba.cuda.cudadrv.nvvm.compile_ir``, checked to exist by
:func:`exact_support`): the PTX then has ``mul.rn`` and ``add.rn``, which ptxas does not fuse, and the GPU
evaluates exactly the CPU's arithmetic. It is for parity checks; it is slower.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from numba import cuda

from cryofield.backends.cuda.check import simulator
from cryofield.backends.cuda.kernels import KERNEL_FUNCTIONS

_exact_kernels: dict | None = None


def exact_kernels() -> dict:
    """Separate, uncached copies of the kernels for the exact mode (compiled under :func:`no_fma`, without LTO).

    Uncached: the disk cache is keyed by function and signature, not by NVVM's options, so it could hand
    these copies the contracted code of :data:`~cryofield.backends.cuda.kernels.KERNELS`.
    """
    global _exact_kernels
    if _exact_kernels is None:
        options = {} if simulator() else {"lto": False}  # LTO would leave the final code generation to nvJitLink
        _exact_kernels = {name: cuda.jit(cache=False, **options)(f) for name, f in KERNEL_FUNCTIONS.items()}
    return _exact_kernels


def exact_support() -> tuple[bool, str]:
    """Whether this numba-cuda lets the exact mode turn FMA contraction off, and how (or why not)."""
    if simulator():
        return True, "the simulator never contracts a * b + c"
    try:
        from numba.cuda import codegen
        from numba.cuda.cudadrv import nvvm
    except Exception as exc:
        return False, f"numba-cuda's NVVM interface is not where it was ({exc})"
    if getattr(codegen, "nvvm", None) is not nvvm or not callable(getattr(nvvm, "compile_ir", None)):
        return False, "this numba-cuda does not compile through numba.cuda.cudadrv.nvvm.compile_ir"
    return True, "NVVM option -fma=0 (mul.rn and add.rn in the PTX)"


@contextlib.contextmanager
def no_fma() -> Iterator[None]:
    """While active, NVVM compiles with ``-fma=0`` unless a kernel asks otherwise (fastmath)."""
    if simulator():
        yield
        return
    from numba.cuda.cudadrv import nvvm

    original = nvvm.compile_ir

    def compile_ir(llvmir, **options):
        options.setdefault("fma", False)
        return original(llvmir, **options)

    nvvm.compile_ir = compile_ir
    try:
        yield
    finally:
        nvvm.compile_ir = original
