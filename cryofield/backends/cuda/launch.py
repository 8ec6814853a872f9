"""Kernel launches: the launch configuration, and launches prepared once per set of arrays.

Host time per launch
--------------------
On meshes below a few hundred thousand nodes a stage takes less GPU time than numba-cuda's host-side
launch (typing every argument, then marshalling every array argument into the driver's parameter list:
about 5 µs per array). Three things keep the host off the critical path:

* packed arguments (:class:`~cryofield.backends.base.DeviceProblem`): the stage kernels take 8 and 19
  arrays, and the stage coefficients and per-variant stage counts live in small device tables (one
  host → device copy each per step from pinned memory), so a kernel's arguments do not change from step
  to step;
* prepared launches (:class:`Launcher`): the first launch of a kernel with a given set of arrays goes
  through numba-cuda's dispatcher, which compiles and marshals; the marshalled argument list (made by
  numba-cuda's own ``_Kernel._prepare_args``) is kept, and later launches with the same arrays pass it
  straight to ``cuda.core.launch``. Entries are keyed by the arrays' identities and dropped when an array
  is freed (``weakref.finalize``), so a stale device address is never launched;
* a CUDA graph per RKL2 step (:mod:`cryofield.backends.cuda.graphs`), replayed with one launch.

``CudaBackend(prepared=False)`` (or ``CRYOFIELD_CUDA_PREPARED=0``) launches everything through the
dispatcher. ``python -m benchmarks.gpu --parts host`` measures the host time per stage each way.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import weakref

from cryofield.backends.cuda.check import simulator
from cryofield.backends.cuda.exact import no_fma

#: Threads per block of the element and node kernels.
THREADS = 128
#: Most blocks of a reduction; each thread strides over the rest.
REDUCE_BLOCKS = 1024
#: Most prepared launches kept (first in, first out).
MAX_PREPARED = 1024


def blocks_for(n: int) -> int:
    """Blocks of :data:`THREADS` threads that cover ``n`` work items (at least one).

    Examples
    --------
    >>> blocks_for(0), blocks_for(128), blocks_for(129)
    (1, 1, 2)
    """
    return max(1, math.ceil(n / THREADS))


def prepared_support() -> tuple[bool, str]:
    """Whether launches can skip numba-cuda's dispatcher after the first one (the internals they use exist)."""
    if simulator():
        return False, "the CUDA simulator launches through numba-cuda's dispatcher"
    try:
        from cuda.core import LaunchConfig, launch  # noqa: F401
        from numba.cuda.dispatcher import _Kernel
    except Exception as exc:
        return False, f"numba-cuda's launch internals are not where they were ({exc}); every launch is dispatched"
    if not all(hasattr(_Kernel, attr) for attr in ("_prepare_args", "launch")):
        return False, "this numba-cuda's kernels have no _prepare_args; every launch is dispatched"
    return True, "each kernel's arguments are marshalled once per set of arrays (numba-cuda's _prepare_args)"


class _Prepared:
    """One kernel with one set of arrays: the marshalled argument list, the cuda.core kernel and its config."""

    __slots__ = ("flat", "convert", "kernel", "config")

    def __init__(self, flat: list, convert: tuple, kernel, config):
        self.flat, self.convert, self.kernel, self.config = flat, convert, kernel, config


class Launcher:
    """Launches ``kernel[blocks, threads](*arrays, *scalars)``, preparing the arguments once per set of arrays.

    ``arrays`` are backend arrays that keep their device address while they live; ``scalars`` (the
    kernels' trailing arguments) are converted on every call. See the module docstring.

    Parameters
    ----------
    prepared
        Prepare launches where numba-cuda's internals allow it (:func:`prepared_support`).
    exact
        Compile kernels on their first launch under :func:`~cryofield.backends.cuda.exact.no_fma`.
    """

    def __init__(self, prepared: bool = True, exact: bool = False):
        supported, why = prepared_support()
        self.prepared, self.why = (supported, why) if prepared else (False, "turned off")
        self.exact = exact
        self._entries: dict = {}
        if self.prepared:
            from cuda.core import LaunchConfig, Stream, launch
            from numba.cuda._compat import CUDA_CORE_GE_1_0

            self._core_launch, self._stream = launch, Stream.from_handle(0)  # numba-cuda's default stream
            self._config_class, self._cooperative = LaunchConfig, ("is_cooperative" if CUDA_CORE_GE_1_0
                                                                   else "cooperative_launch")

    @property
    def stream(self):
        """The ``cuda.core`` stream prepared launches go to (numba-cuda's default stream)."""
        return self._stream

    def __call__(self, kernel, blocks: int | tuple, threads: int, arrays: tuple, scalars: tuple = (),
                 target=None) -> None:
        """Launch on the default stream, or into ``target`` (a ``cuda.core`` GraphBuilder being captured)."""
        if self.prepared:
            entry = self._entries.get((id(kernel), blocks, threads, *map(id, arrays)))
            if entry is not None:
                try:
                    self._core_launch(target or self._stream, entry.config, entry.kernel, *entry.flat,
                                      *[convert(x) for convert, x in zip(entry.convert, scalars)])
                    return
                except Exception as exc:
                    if target is not None:
                        raise
                    self.prepared, self.why = False, f"a prepared launch failed ({type(exc).__name__}: {exc})"
                    self._entries.clear()
        if target is not None:
            raise RuntimeError("a launch that is not prepared cannot be captured into a graph")
        with no_fma() if self.exact else contextlib.nullcontext():
            kernel[blocks, threads](*arrays, *scalars)
        if self.prepared:
            self._prepare(kernel, blocks, threads, arrays, scalars)

    def _config(self, blocks: int | tuple, threads: int):
        grid = (*blocks, 1, 1)[:3] if isinstance(blocks, tuple) else (blocks, 1, 1)
        return self._config_class(grid=grid, block=(threads, 1, 1), shmem_size=0,
                                  **{self._cooperative: False})

    def _prepare(self, kernel, blocks: int, threads: int, arrays: tuple, scalars: tuple) -> None:
        try:
            entry = _prepare(kernel, arrays, scalars, self._config(blocks, threads))
        except Exception as exc:  # an internal changed: stay on the dispatcher, say why
            self.prepared, self.why = False, f"preparing a launch failed ({type(exc).__name__}: {exc})"
            return
        if entry is None:
            return
        key = (id(kernel), blocks, threads, *map(id, arrays))
        if len(self._entries) >= MAX_PREPARED:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = entry
        for array in arrays:  # a freed array's id may be reused: drop the entry first
            weakref.finalize(array, self._entries.pop, key, None)

    def launches(self) -> int:
        """Prepared launches held."""
        return len(self._entries)


def _prepare(kernel, arrays: tuple, scalars: tuple, config) -> _Prepared | None:
    """The prepared launch of ``kernel`` on ``arrays`` (its overload already compiled), or None when this
    kernel cannot be launched that way (debug, cooperative, extensions, host arrays)."""
    argtypes = tuple(kernel.typeof_pyval(a) for a in (*arrays, *scalars))
    overload = kernel.overloads.get(argtypes)
    if overload is None or overload.debug or overload.cooperative or overload.extensions \
            or getattr(overload, "launch_config_sensitive", False) or getattr(kernel, "_launch_config_sensitive",
                                                                              False):
        return None
    flat, retr, convert = [], [], []
    types = overload.argument_types
    for ty, value in zip(types[:len(arrays)], arrays):
        overload._prepare_args(ty, value, 0, retr, flat)
    for ty, value in zip(types[len(arrays):], scalars):
        one: list = []
        overload._prepare_args(ty, value, 0, retr, one)
        if len(one) != 1 or not isinstance(one[0], ctypes._SimpleCData):
            return None
        convert.append(type(one[0]))
    if retr:  # something would be copied back after the launch: not a device array
        return None
    return _Prepared(flat, tuple(convert), overload._codelibrary.get_cufunc().kernel, config)
