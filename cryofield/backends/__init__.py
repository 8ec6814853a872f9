"""Backend registry: one place that knows which backends exist and which one runs.

``cpu`` is always available. ``cuda`` needs a usable NVIDIA GPU (or ``NUMBA_ENABLE_CUDASIM=1``, the
Numba CUDA simulator, for tests): a driver, a device, and the JIT compiler's pieces, each checked by
:mod:`cryofield.backends.cuda_check`. ``auto`` picks ``cuda`` when it is usable, else ``cpu``, and says
which piece was missing.
"""

from __future__ import annotations

import importlib

from ..errors import BackendUnavailable
from .base import Backend, DeviceProblem

#: name -> "module:class" of each backend, imported on demand.
REGISTRY = {"cpu": "cryofield.backends.cpu:CpuBackend", "cuda": "cryofield.backends.cuda:CudaBackend"}


def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA backend can run here, and the device name or which piece is missing and why.

    The pieces (driver, device, NVVM, libdevice, NVRTC, a one-kernel test compile) are checked once per
    process by :func:`cryofield.backends.cuda_check.checks`.
    """
    from . import cuda_check

    missing = cuda_check.first_missing(cuda_check.checks())
    if missing is not None:
        return False, cuda_check.reason(missing)
    try:
        return True, importlib.import_module("cryofield.backends.cuda").device_description()
    except ModuleNotFoundError:
        return False, "this version of cryofield has no CUDA backend"
    except Exception as exc:
        return False, f"CUDA initialisation failed ({exc})"


def cuda_pieces() -> list:
    """Every piece the CUDA backend needs, with what was found (:class:`cryofield.backends.cuda_check.Piece`)."""
    from . import cuda_check

    return cuda_check.checks()


def available_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend with whether it is usable and a description."""
    from .cpu import CpuBackend

    return {"cpu": (True, CpuBackend().device_name), "cuda": cuda_status()}


def get_backend(name: str = "auto") -> Backend:
    """Instantiate a backend by name (``auto``, ``cpu`` or ``cuda``).

    The backend's ``chosen_by`` says why it runs: asked for by name, or what ``auto`` found.

    Raises
    ------
    BackendUnavailable
        When ``cuda`` is asked for explicitly and cannot run (never a silent fallback).
    """
    chosen_by = f"asked for as '{name}'"
    if name == "auto":
        ok, why = cuda_status()
        name = "cuda" if ok else "cpu"
        chosen_by = "picked by auto: a usable GPU" if ok else f"picked by auto: no cuda ({why})"
    if name not in REGISTRY:
        raise BackendUnavailable(f"unknown backend '{name}' (choose from auto, {', '.join(REGISTRY)})",
                                 key="solver.backend")
    if name == "cuda":
        ok, why = cuda_status()
        if not ok:
            raise BackendUnavailable(f"the cuda backend cannot run here: {why}", key="solver.backend")
    module, cls = REGISTRY[name].split(":")
    backend = getattr(importlib.import_module(module), cls)()
    backend.chosen_by = chosen_by
    return backend


__all__ = ["Backend", "DeviceProblem", "available_backends", "cuda_pieces", "cuda_status", "get_backend"]
