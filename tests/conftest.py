"""Shared fixtures and the device/nodevice markers (one suite for CPU, CUDA simulator and real GPUs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cryofield.backends.cuda import check as cuda_check

REPO = Path(__file__).resolve().parents[1]
CASES = REPO / "cases"


#: Every piece the cuda backend needs (driver, device, NVVM, libdevice, NVRTC, a test compile), checked once.
CUDA_PIECES = cuda_check.checks()
#: A real GPU and its driver are here (not the simulator). The ``device`` tests then run whatever else is
#: missing, so a GPU machine without the CUDA compiler libraries FAILS the suite instead of skipping the GPU.
HAS_GPU = cuda_check.gpu_present(CUDA_PIECES)


def pytest_report_header(config):
    missing = [p.name for p in CUDA_PIECES if p.required and not p.ok]
    state = "a GPU is present" if HAS_GPU else "the simulator" if cuda_check.simulator() else "no GPU"
    return [f"cuda: {state}; missing pieces: {', '.join(missing) or 'none'} (cryofield info lists them)"]


def pytest_collection_modifyitems(config, items):
    skip_device = pytest.mark.skip(reason="needs a real CUDA GPU")
    skip_nodevice = pytest.mark.skip(reason="runs only without a real GPU")
    for item in items:
        if "device" in item.keywords and not HAS_GPU:
            item.add_marker(skip_device)
        if "nodevice" in item.keywords and HAS_GPU:
            item.add_marker(skip_nodevice)


@pytest.fixture
def cases_dir() -> Path:
    return CASES


@pytest.fixture
def under_simulator(request):
    """``run(module, call)``: evaluate ``module.call`` (a test module's function call, returning something
    JSON-able) in a fresh interpreter under the Numba CUDA simulator, and return its value.

    A subprocess, because ``NUMBA_ENABLE_CUDASIM`` must be set before ``numba.cuda`` is first imported and
    the rest of the suite must not see the simulator.
    """
    def run(module: str, call: str, timeout: int = 900):
        folder = str(request.path.parent)  # the calling test's folder, where ``module`` is
        script = (f"import json, sys; sys.path[:0] = [{folder!r}, {str(REPO)!r}]; import {module} as m; "
                  f"print(json.dumps(m.{call}))")
        env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run
