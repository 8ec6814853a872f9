"""Shared fixtures and the device/nodevice markers (one suite for CPU, CUDA simulator and real GPUs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CASES = REPO / "cases"


def _real_gpu() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from numba import cuda

        return cuda.is_available()
    except Exception:
        return False


HAS_GPU = _real_gpu()


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
