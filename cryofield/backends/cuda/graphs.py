"""CUDA graphs of whole RKL2 steps: captured once, replayed with one launch.

A step of ``s`` stages is ``2 s`` kernel launches whose arguments do not change from step to step
(:mod:`cryofield.backends.cuda.launch`). The second time a step with the same stage count and buffers
comes round, its launches are captured once (numba-cuda's prepared launches go into a ``cuda.core``
``GraphBuilder``) and from then on replayed with one ``cuGraphLaunch``. The first graph a backend builds
is checked against the plain launches of the same step (bit for bit) before it is used.

``CudaBackend(graphs=False)`` (or ``CRYOFIELD_CUDA_GRAPHS=0``) turns graphs off; they also need prepared
launches.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numba import cuda

from cryofield.backends.cuda.check import simulator
from cryofield.backends.cuda.launch import prepared_support

#: Most step graphs kept (first in, first out).
MAX_GRAPHS = 64


def graph_support() -> tuple[bool, str]:
    """Whether numba-cuda can capture launches into a CUDA graph here (cuda.core's GraphBuilder)."""
    if simulator():
        return False, "the CUDA simulator has no graphs"
    ok, why = prepared_support()
    if not ok:
        return False, f"graphs need prepared launches: {why}"
    try:
        from cuda.core import Device

        if not hasattr(Device, "create_graph_builder"):
            raise AttributeError("cuda.core.Device has no create_graph_builder")
    except Exception as exc:
        return False, f"cuda.core has no graph builder ({exc})"
    return True, "one CUDA graph per RKL2 step (stage count and buffers), replayed with one launch"


class StepGraphs:
    """CUDA graphs of whole RKL2 steps, keyed by the problem, the coefficient table and every stage's buffers.

    A step's launches are captured the second time the same key comes round; a key's graph is dropped
    when one of its arrays is freed. The first graph is checked against plain launches before use.

    Parameters
    ----------
    enabled
        Use graphs where supported (:func:`graph_support`).
    """

    def __init__(self, enabled: bool = True):
        supported, why = graph_support()
        self.enabled, self.why = (supported, why) if enabled else (False, "turned off")
        self.checked = False
        self._graphs: dict = {}
        self._seen: dict = {}
        self.built = self.replayed = 0

    def get(self, key):
        """The graph captured for ``key``, or None."""
        graph = self._graphs.get(key)
        if graph is not None:
            self.replayed += 1
        return graph

    def second_sighting(self, key) -> bool:
        """Count ``key``; True the second time it is seen (time to capture its graph)."""
        if len(self._seen) > 8 * MAX_GRAPHS:
            self._seen.clear()
        self._seen[key] = self._seen.get(key, 0) + 1
        return self._seen[key] == 2

    def add(self, key, graph, arrays) -> None:
        """Keep ``graph`` for ``key`` until one of ``arrays`` (everything it launches with) is freed."""
        if len(self._graphs) >= MAX_GRAPHS:
            self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = graph
        self.built += 1
        for array in arrays:
            weakref.finalize(array, self._graphs.pop, key, None)

    def disable(self, why: str) -> None:
        """Stop using graphs, saying why (for the backend's diagnostics)."""
        self.enabled, self.why = False, why
        self._graphs.clear()

    def capture(self, key, record: Callable[[Any], None], outputs: Sequence, stream, arrays: Sequence) -> None:
        """Capture the launches ``record(builder)`` makes into a graph kept for ``key`` (see :meth:`add`).

        The step has just run with plain launches, so ``outputs`` (device arrays the launches write) hold
        its results: the first graph is replayed on ``stream`` and must leave the same numbers in them. A
        failed capture or check turns graphs off (:meth:`disable`) instead of failing the run.
        """
        try:
            from cuda.core import Device

            device = Device(cuda.get_current_device().id)
            device.set_current()
            builder = device.create_graph_builder()
            builder.begin_building()
            try:
                record(builder)
            finally:
                builder.end_building()
            graph = builder.complete()
            if not self.checked:
                expected = [a.copy_to_host() for a in outputs]
                graph.launch(stream)
                got = [a.copy_to_host() for a in outputs]
                if not all(np.array_equal(a, b) for a, b in zip(expected, got)):
                    self.disable("a captured step gave other numbers than its plain launches")
                    return
                self.checked = True
        except Exception as exc:
            self.disable(f"capturing a step failed ({type(exc).__name__}: {exc})")
            return
        self.add(key, graph, arrays)
