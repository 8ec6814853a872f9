"""Backend registry: one place that knows which backends exist and which one runs.

``cpu`` is always available. ``cuda`` needs a usable NVIDIA GPU (or ``NUMBA_ENABLE_CUDASIM=1``, the
Numba CUDA simulator, for tests): a driver, a device, and the JIT compiler's pieces, each checked by
:mod:`cryofield.backends.cuda.check`. ``auto`` picks ``cuda`` when it is usable, else ``cpu``, and says
which piece was missing.

:data:`BACKENDS` is the one list of backend names: the command line's ``--backend`` choices, a case's
``solver.backend`` and a sweep's ``backend`` read :data:`BACKEND_CHOICES`. Importing this module loads no
backend and no Numba, so they can.

Examples
--------
>>> BACKEND_CHOICES
('auto', 'cpu', 'cuda')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from cryofield.errors import BackendUnavailable

if TYPE_CHECKING:
    from cryofield.backends.base import Backend, DeviceProblem
    from cryofield.backends.cuda.check import Piece

#: name -> "module:Class" of each backend, imported on first use (:func:`backend_class`).
BACKENDS: dict[str, str] = {"cpu": "cryofield.backends.cpu:CpuBackend",
                            "cuda": "cryofield.backends.cuda.backend:CudaBackend"}
#: What a case, a sweep or the command line may ask for: a backend by name, or ``auto``.
BACKEND_CHOICES: tuple[str, ...] = ("auto", *BACKENDS)


def __getattr__(name: str):
    """:class:`Backend` and :class:`DeviceProblem` on first use (PEP 562): they import Numba, and the names
    of the registry are read where Numba is not needed (the command line's parser, the case schema)."""
    if name in ("Backend", "DeviceProblem"):
        from cryofield.backends import base

        value = globals()[name] = getattr(base, name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_class(name: str) -> type[Backend]:
    """The class of the registered backend ``name`` (a key of :data:`BACKENDS`), its module imported now."""
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def cuda_status() -> tuple[bool, str]:
    """Whether the CUDA backend can run here, and the device name or which piece is missing and why.

    The pieces (driver, device, NVVM, libdevice, NVRTC, a one-kernel test compile) are checked once per
    process by :func:`cryofield.backends.cuda.check.checks`.
    """
    from cryofield.backends.cuda import check

    missing = check.first_missing(check.checks())
    if missing is not None:
        return False, check.reason(missing)
    try:
        return True, importlib.import_module("cryofield.backends.cuda.backend").device_description()
    except ModuleNotFoundError:
        return False, "this version of cryofield has no CUDA backend"
    except Exception as exc:
        return False, f"CUDA initialisation failed ({exc})"


def cuda_pieces() -> list[Piece]:
    """Every piece the CUDA backend needs, with what was found (:class:`cryofield.backends.cuda.check.Piece`)."""
    from cryofield.backends.cuda import check

    return check.checks()


def available_backends() -> dict[str, tuple[bool, str]]:
    """Every registered backend with whether it is usable and a description."""
    return {name: cuda_status() if name == "cuda" else (True, backend_class(name)().device_name)
            for name in BACKENDS}


def get_backend(name: str = "auto") -> Backend:
    """Instantiate a backend by name (one of :data:`BACKEND_CHOICES`).

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
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend '{name}' (choose from {', '.join(BACKEND_CHOICES)})",
                                 key="solver.backend")
    if name == "cuda":
        ok, why = cuda_status()
        if not ok:
            raise BackendUnavailable(f"the cuda backend cannot run here: {why}", key="solver.backend")
    backend = backend_class(name)()
    backend.chosen_by = chosen_by
    return backend


__all__ = ["BACKENDS", "BACKEND_CHOICES", "Backend", "DeviceProblem", "available_backends", "backend_class",
           "cuda_pieces", "cuda_status", "get_backend"]
