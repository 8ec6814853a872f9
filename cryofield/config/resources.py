"""What a run will cost, estimated before it starts: memory, operator applications and output size.

A run is refused (bad input, exit 2) when an estimate exceeds what this machine has or the work limit,
with the estimate in the message; ``cryofield run --force`` runs it anyway. The estimates are deliberately
simple and on the low side (they refuse what clearly cannot finish, not what might be tight):

* memory: :data:`BYTES_PER_NODE` per mesh node (measured: problem assembly, the stepper's state and scratch
  arrays, the dose fields; about six tetrahedra per node) plus :data:`BYTES_PER_OUTPUT` per output time
  (the timeline's segments and the metric rows), against the memory available now (``MemAvailable``);
* work: nodes x steps x operator applications per step, where steps is at least duration / largest step
  (and one per output time) and RKL2 needs :func:`~cryofield.timestepping.rkl2.rkl2_stages` applications per step
  of the largest step; refused above :data:`WORK_LIMIT` node-applications (what that means in wall time
  at the measured throughputs: benchmarks/README.md, "Performance");
* output: the snapshots uncompressed (nodes x fields x 8 bytes each) against the free space of ``-o``.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

#: Memory (bytes) a run needs per mesh node, measured on generated slabs (see the module doc).
BYTES_PER_NODE = 4000
#: Memory (bytes) per output time: a timeline segment and a row of metrics.
BYTES_PER_OUTPUT = 1000
#: Memory (bytes) of the interpreter and the libraries before any mesh.
BASE_BYTES = 300e6
#: The most node-applications of the operator a run may need without ``--force``.
WORK_LIMIT = 1e11


def available_memory() -> float | None:
    """Bytes of memory available to a new allocation now (``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def free_disk(path: Path) -> float | None:
    """Free bytes on the file system that holds ``path`` (or its nearest existing ancestor)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return float(shutil.disk_usage(probe).free)
    except OSError:
        return None


def run_memory(nodes: float, outputs: float = 0.0) -> float:
    """Estimated peak memory (bytes) of a run on ``nodes`` nodes with ``outputs`` output times."""
    return BASE_BYTES + BYTES_PER_NODE * nodes + BYTES_PER_OUTPUT * outputs


def output_times(duration: float, n_phases: int, snapshot_interval: float, metrics_interval: float) -> tuple[
        float, float]:
    """(snapshots, output times) of a run, estimated without building its timeline (which could not fit)."""
    snapshots = duration / snapshot_interval + n_phases + 1
    return snapshots, snapshots + duration / metrics_interval


@dataclass(frozen=True)
class Estimate:
    """What a run is expected to need; :meth:`problems` says what exceeds the limits."""

    nodes: int
    snapshots: float
    outputs: float
    steps: float  # at least
    applications_per_step: int
    memory: float  # bytes
    output_bytes: float  # uncompressed snapshots
    available_memory: float | None
    free_disk: float | None

    @property
    def work(self) -> float:
        """Node-applications of the operator (nodes x steps x applications per step), at least."""
        return self.nodes * self.steps * self.applications_per_step

    def problems(self) -> list[tuple[str, str]]:
        """(case key, message) of each limit this run exceeds."""
        out = []
        if self.available_memory is not None and self.memory > self.available_memory:
            out.append(("mesh", f"the run needs about {gb(self.memory)} of memory ({self.nodes} nodes, "
                                f"{self.outputs:.3g} output times), but {gb(self.available_memory)} is available"))
        if self.work > WORK_LIMIT:
            out.append(("solver", f"the run needs at least {self.work:.3g} node-applications of the operator "
                                  f"({self.nodes} nodes x {self.steps:.3g} steps x {self.applications_per_step} per "
                                  f"step), above the limit of {WORK_LIMIT:.3g}"))
        if self.free_disk is not None and self.output_bytes > self.free_disk:
            out.append(("outputs.snapshot_interval", f"the snapshots need up to {gb(self.output_bytes)} "
                                                     f"({self.snapshots:.3g} snapshots), but the output "
                                                     f"directory has {gb(self.free_disk)} free"))
        return out

    def summary(self) -> str:
        """One line for ``cryofield validate``."""
        memory = f"memory about {gb(self.memory)}" + (f" of {gb(self.available_memory)} available"
                                                       if self.available_memory is not None else "")
        return (f"estimate: at least {self.work:.3g} node-applications (limit {WORK_LIMIT:.3g}), {memory}, "
                f"{self.snapshots:.3g} snapshots of up to {gb(self.output_bytes)}")


def gb(n: float) -> str:
    """Bytes in human units: ``gb(3e9)`` -> ``'3 GB'``."""
    if not math.isfinite(n):
        return f"{n} B"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"
