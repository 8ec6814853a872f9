"""The CUDA backend's prepared launches and step-graph bookkeeping, without a GPU.

A stand-in dispatcher records what would be launched; its overload marshals arguments with numba-cuda's
own ``_Kernel._prepare_args``, on ``DeviceNDArray`` objects over fake device addresses. The real launches
and graphs run in the device tests (tests/backends/test_cuda.py).
"""

from __future__ import annotations

import ctypes
import gc
import types

import numpy as np
import pytest

from cryofield.backends.cuda import check as cuda_check

pytestmark = pytest.mark.skipif(cuda_check.simulator(), reason="the simulator launches through the dispatcher")


class _Memory:
    def __init__(self, address: int):
        self.device_ctypes_pointer = ctypes.c_void_p(address)


def device_array(n: int, address: int, dtype=np.float64):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray((n,), (np.dtype(dtype).itemsize,), dtype, gpu_data=_Memory(address))


class FakeDispatcher:
    """Types arguments as numba-cuda does; ``[blocks, threads](*args)`` records a dispatched launch."""

    def __init__(self):
        from numba.cuda.dispatcher import _Kernel
        from numba.cuda.typing.typeof import Purpose, typeof

        self._typeof, self.dispatched, self.overloads = (lambda v: typeof(v, Purpose.argument)), [], {}
        self._prepare = _Kernel._prepare_args

    def typeof_pyval(self, value):
        return self._typeof(value)

    def __getitem__(self, config):
        def launch(*args):
            argtypes = tuple(self.typeof_pyval(a) for a in args)
            overload = types.SimpleNamespace(debug=False, cooperative=False, extensions=[], argument_types=argtypes,
                                             _codelibrary=types.SimpleNamespace(
                                                 get_cufunc=lambda: types.SimpleNamespace(kernel="cufunc")))
            overload._prepare_args = types.MethodType(self._prepare, overload)
            self.overloads[argtypes] = overload
            self.dispatched.append((config, args))

        return launch

    def marshal(self, args) -> list:
        """The argument list numba-cuda's _Kernel.launch would hand to cuda.core.launch."""
        flat, retr = [], []
        overload = self.overloads[tuple(self.typeof_pyval(a) for a in args)]
        for ty, value in zip(overload.argument_types, args):
            overload._prepare_args(ty, value, 0, retr, flat)
        return flat


def test_second_launch_is_prepared_with_what_numba_cuda_would_pass():
    from cryofield.backends.cuda.launch import Launcher

    launcher = Launcher()
    assert launcher.prepared, launcher.why
    launched = []
    launcher._core_launch = lambda stream, config, kernel, *args: launched.append((stream, config, kernel, args))
    kernel = FakeDispatcher()
    a, b = device_array(100, 1 << 40), device_array(100, 2 << 40)
    launcher(kernel, 4, 32, (a, b), (np.float64(0.25), 3))
    assert len(kernel.dispatched) == 1 and not launched and launcher.launches() == 1
    launcher(kernel, 4, 32, (a, b), (np.float64(0.5), 7))
    assert len(kernel.dispatched) == 1 and len(launched) == 1
    stream, config, cufunc, args = launched[0]
    assert stream is launcher._stream and cufunc == "cufunc" and config.grid == (4, 1, 1) and config.block == (32, 1, 1)
    expected = kernel.marshal((a, b, np.float64(0.5), 7))
    assert len(args) == len(expected)
    for got, want in zip(args, expected):
        assert (got.value, type(got)) == (want.value, type(want)) if isinstance(want, ctypes._SimpleCData) else \
            got == want
    # another configuration or another array is another launch
    launcher(kernel, 8, 32, (a, b), (np.float64(0.5), 7))
    launcher(kernel, 4, 32, (b, a), (np.float64(0.5), 7))
    assert len(kernel.dispatched) == 3 and launcher.launches() == 3


def test_a_freed_array_drops_its_prepared_launches():
    from cryofield.backends.cuda.launch import Launcher

    launcher = Launcher()
    launcher._core_launch = lambda *args: None
    kernel = FakeDispatcher()
    keep = device_array(10, 3 << 40)
    temporary = device_array(10, 4 << 40)
    launcher(kernel, 1, 32, (keep, temporary))
    launcher(kernel, 1, 32, (keep, keep))
    assert launcher.launches() == 2
    kernel.dispatched.clear()  # the stand-in's record of launches
    del temporary
    gc.collect()
    assert launcher.launches() == 1  # its id may now be reused by another array: never launched with a stale address


def test_a_failing_prepared_launch_falls_back_to_the_dispatcher():
    from cryofield.backends.cuda.launch import Launcher

    launcher = Launcher()

    def broken(*args):
        raise TypeError("cuda.core changed")

    launcher._core_launch = broken
    kernel = FakeDispatcher()
    a = device_array(10, 5 << 40)
    launcher(kernel, 1, 32, (a,))
    launcher(kernel, 1, 32, (a,))
    assert len(kernel.dispatched) == 2 and not launcher.prepared and "cuda.core changed" in launcher.why


def test_step_graphs_are_captured_on_the_second_sighting_and_dropped_with_their_arrays():
    from cryofield.backends.cuda.graphs import StepGraphs

    graphs = StepGraphs()
    graphs.enabled = True
    a, b = device_array(10, 6 << 40), device_array(10, 7 << 40)
    key = (id(a), id(b))
    assert not graphs.second_sighting(key) and graphs.second_sighting(key) and not graphs.second_sighting(key)
    graphs.add(key, "graph", [a, b])
    assert graphs.get(key) == "graph" and graphs.replayed == 1
    del b
    gc.collect()
    assert graphs.get(key) is None
    graphs.disable("a test")
    assert not graphs.enabled and graphs.why == "a test"


def test_backend_switches_and_exact_mode_support_are_reported():
    from cryofield.backends.cuda.exact import exact_support
    from cryofield.backends.cuda.graphs import StepGraphs, graph_support
    from cryofield.backends.cuda.launch import Launcher

    ok, why = exact_support()
    assert ok and "fma=0" in why
    ok, why = graph_support()
    assert ok and "graph" in why
    assert Launcher(prepared=False).why == "turned off"
    assert not StepGraphs(enabled=False).enabled
