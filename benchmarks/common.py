"""What the suites share: run metadata, timing, markdown tables, figures, and running a case to given times."""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numba
import numpy as np

from cryofield.backends import get_backend
from cryofield.config.case import Case
from cryofield.model.schedule import build_schedule
from cryofield.problem.assemble import Problem
from cryofield.run.driver import Timeline, drive
from cryofield.run.observers.temperature import TemperatureRecorder
from cryofield.run.plan import prepare
from cryofield.timestepping.control import StepStats
from cryofield.version import __version__

REPO = Path(__file__).resolve().parents[1]
Result = TypeVar("Result")

#: Blood of the verification set (docs/physics.md §3): rho_b c_b = 3.6e6 J/m³/K, so the generic tissue has m = 60 1/m.
GENERIC_BLOOD = "blood: {density: 1000, specific_heat: 3600, arterial_temperature: 37}"


def machine() -> dict:
    """Facts about this machine that a reader needs to judge the timings."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return {"cpu": model, "cores": os.cpu_count(), "threads": numba.get_num_threads(),
            "memory_GiB": round(memory / 2**30, 1), "platform": platform.platform(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def versions() -> dict:
    """Versions of Python, cryofield and the libraries the suites use (None when not installed)."""
    out = {"python": platform.python_version(), "cryofield": __version__}
    for name in ("numpy", "scipy", "numba", "pyamg", "skfem", "meshio", "gmsh"):
        try:
            out[name] = getattr(importlib.import_module(name), "__version__", "unknown")
        except ImportError:
            out[name] = None
    return out


def git_revision(root: Path = REPO) -> dict:
    """The checkout's commit and whether it has uncommitted changes (``unknown`` outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def metadata(backend: str, quick: bool) -> dict:
    """Everything a result file says about where and how it was made."""
    device = get_backend(backend)
    return {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": "quick" if quick else "full",
            "backend": device.name, "device": device.device_name, "machine": machine(), "versions": versions(),
            "git": git_revision(), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}


def median_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each of ``fns`` over ``repeats`` rounds, after one untimed call of each.

    Each round calls every function once, in turn, so that a change of the machine's load during the
    measurement falls on all of them alike.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return [statistics.median(samples) for samples in times]


def timed(fn: Callable[[], Result], repeats: int, long_run: float = 10.0) -> tuple[float, Result]:
    """Median wall time of ``fn`` and its last result: ``repeats`` calls, or one when it takes over ``long_run`` s."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if times[0] > long_run:
            break
    return statistics.median(times), result


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run the enclosed code with ``n`` Numba threads (at most those available), then restore the count."""
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table; floats are printed as given (format them first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def temperatures_at(case: Case, times: list[float], backend: str = "cpu",
                    initial: Callable[[np.ndarray], np.ndarray] | None = None
                    ) -> tuple[Problem, list[np.ndarray], StepStats]:
    """Drive ``case`` from its initial state and return the nodal temperature at each of ``times`` (s).

    The run's own driver (no result files); protocol switches happen at their times. Without a protocol
    the base boundary conditions hold throughout (e.g. a flux surface). ``initial``, a function of the
    node coordinates (m), replaces the case's initial state.
    """
    plan = prepare(case)
    # stop only at the requested times and the phase switches (each stop shortens a step)
    timeline = Timeline(plan.timeline.phases, build_schedule(case.protocol, None, None, times, end=max(times)))
    T0 = None if initial is None else initial(plan.problem.mesh.points)
    recorder = TemperatureRecorder(times)
    run = drive(timeline, plan.stepper(backend, T0), [recorder])
    return plan.problem, recorder.fields(), run.stepper.stats


def input_order(problem, temps: list[np.ndarray]) -> list[np.ndarray]:
    """cryofield's temperatures back in the mesh's input node order (the peer's order)."""
    inverse = np.argsort(problem.original_index)
    return [T[inverse] for T in temps]


def with_steps(case: Case, max_dt: float, max_change: float) -> Case:
    """``case`` with other step controls."""
    return case.model_copy(update={"solver": case.solver.model_copy(update={"max_dt": max_dt,
                                                                              "max_change": max_change})})
