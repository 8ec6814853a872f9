"""What the CUDA backend needs, checked piece by piece, each with what was found or why it is missing.

numba-cuda compiles every kernel at run time: Numba's LLVM IR goes through NVVM (with the libdevice
bitcode) to PTX, NVRTC and nvJitLink serve the compile and link steps, and the NVIDIA driver loads and
runs the result. ``pip install numba-cuda`` brings none of the compiler libraries; they come from
numba-cuda's ``cu12`` / ``cu13`` extras, which cryofield's ``cuda12`` / ``cuda13`` extras pull in
(``pip install -e '.[cuda12]'`` for a driver that supports CUDA 12, ``'.[cuda13]'`` for CUDA 13;
``nvidia-smi`` prints the highest CUDA version the driver supports). A machine with a GPU but without
them used to fall back to the CPU silently; :func:`checks` says which piece is missing instead.

The pieces, in the order :func:`cryofield.backends.cuda_status` reports the first missing one:

``numba-cuda``
    the package imports (its version);
``driver``
    the NVIDIA driver library loads (the CUDA version it supports; the kernel module's version on Linux);
``device``
    at least one GPU (name and compute capability of device 0);
``NVVM``
    libNVVM loads (its version and path);
``libdevice``
    the libdevice bitcode file (its path);
``NVRTC``
    libNVRTC loads (its version);
``nvJitLink``
    optional: without it numba-cuda links without LTO;
``test compile``
    a one-kernel test: compiled to PTX, and where a GPU is present also compiled for it, launched, and
    its result checked.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) every piece reports ``simulator``.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

try:
    from numba import cuda
except Exception as exc:  # reported by check_numba_cuda
    cuda, _IMPORT_ERROR = None, exc

#: The install hint of a missing compiler piece when the driver's CUDA version is not known.
INSTALL_HINT = ("install cryofield with its CUDA compiler libraries: pip install -e '.[cuda12]' for a driver that "
                "supports CUDA 12, '.[cuda13]' for CUDA 13 (nvidia-smi shows the driver's CUDA version)")
#: Pieces the JIT compiler needs (as opposed to the driver and the GPU).
COMPILER_PIECES = ("NVVM", "libdevice", "NVRTC", "test compile")


@dataclass(frozen=True)
class Piece:
    """One thing the CUDA backend needs: whether it is there, and what was found or why not."""

    name: str
    ok: bool
    detail: str
    required: bool = True

    def line(self) -> str:
        state = "ok" if self.ok else ("missing" if self.required else "absent (optional)")
        return f"{self.name}: {state} ({self.detail})"

    def as_dict(self) -> dict:
        return {"ok": self.ok, "detail": self.detail, "required": self.required}


def simulator() -> bool:
    """Whether the Numba CUDA simulator is on (it must be set before numba.cuda is first imported)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def install_hint(cuda_major: int | None) -> str:
    """How to install the compiler pieces for a driver that supports CUDA ``cuda_major`` (None: unknown)."""
    if cuda_major in (12, 13):
        return f"install cryofield with its CUDA compiler libraries: pip install -e '.[cuda{cuda_major}]'"
    return INSTALL_HINT


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    missing = re.match(r'Failure finding "([^"]+)"', text)
    if missing:  # cuda.pathfinder repeats the names of every place it looked
        return f"{missing.group(1)} not found"
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def check_numba_cuda() -> Piece:
    if cuda is None:
        return Piece("numba-cuda", False, f"numba.cuda cannot be imported ({_short(_IMPORT_ERROR)})")
    try:
        from importlib.metadata import version

        found = f"numba-cuda {version('numba-cuda')}"
    except Exception:
        found = "numba.cuda imports"
    return Piece("numba-cuda", True, found + (", simulator" if simulator() else ""))


def _kernel_module_version() -> str | None:
    """The NVIDIA kernel module's version (e.g. 570.124.06) on Linux, if readable."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for [^ ]+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def check_driver() -> Piece:
    from numba.cuda.cudadrv.driver import driver

    try:
        available = driver.is_available
    except Exception as exc:
        return Piece("driver", False, f"no NVIDIA driver ({_short(exc)})")
    if not available:
        why = " ".join((driver.initialization_error or "the NVIDIA driver did not initialise").split())
        return Piece("driver", False, why)
    major, minor = driver.get_version()
    module = _kernel_module_version()
    return Piece("driver", True, f"supports CUDA {major}.{minor}" + (f", kernel module {module}" if module else ""))


def check_device() -> Piece:
    from numba.cuda.cudadrv.driver import driver

    try:
        count = driver.get_device_count()
        if count < 1:
            return Piece("device", False, "the driver reports no GPU")
        dev = driver.get_device(0)
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        major, minor = dev.compute_capability
    except Exception as exc:
        return Piece("device", False, f"cannot query the GPU ({_short(exc)})")
    more = f", {count} GPUs" if count > 1 else ""
    return Piece("device", True, f"{name}, compute capability {major}.{minor}{more}")


def _library_path(name: str) -> str:
    try:
        from cuda import pathfinder

        return f", {pathfinder.load_nvidia_dynamic_lib(name).abs_path}"
    except Exception:
        return ""


def check_nvvm(hint: str = INSTALL_HINT) -> Piece:
    try:
        from numba.cuda.cudadrv import nvvm

        major, minor = nvvm.NVVM().get_version()
    except Exception as exc:
        return Piece("NVVM", False, f"libNVVM cannot be loaded ({_short(exc)}); {hint}")
    return Piece("NVVM", True, f"libNVVM {major}.{minor}{_library_path('nvvm')}")


def check_libdevice(hint: str = INSTALL_HINT) -> Piece:
    try:
        from numba.cuda.cudadrv import libs

        path = libs.get_libdevice()
    except Exception as exc:
        return Piece("libdevice", False, f"lookup failed ({_short(exc)}); {hint}")
    if not path or not Path(path).is_file():
        return Piece("libdevice", False, f"not found ({path or 'no path'}); {hint}")
    return Piece("libdevice", True, str(path))


def check_nvrtc(hint: str = INSTALL_HINT) -> Piece:
    try:
        from cuda.bindings import nvrtc

        err, major, minor = nvrtc.nvrtcVersion()
        if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
            raise RuntimeError(f"nvrtcVersion returned {err}")
    except Exception as exc:
        return Piece("NVRTC", False, f"libNVRTC cannot be loaded ({_short(exc)}); {hint}")
    return Piece("NVRTC", True, f"NVRTC {major}.{minor}{_library_path('nvrtc')}")


def check_nvjitlink() -> Piece:
    try:
        from cuda import pathfinder

        path = pathfinder.load_nvidia_dynamic_lib("nvJitLink").abs_path
    except Exception as exc:
        return Piece("nvJitLink", False, f"not found, kernels are linked without LTO ({_short(exc)})", required=False)
    return Piece("nvJitLink", True, str(path), required=False)


def _test_kernel(a, b, c, out):
    """out = a b + c: the one-kernel test."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i] + c[i]


def check_test_compile(device: Piece) -> Piece:
    """Compile a one-kernel test to PTX; with a GPU also build it for the device, launch it and check it."""
    import numpy as np
    from numba import float64

    kernel = _test_kernel
    try:
        ptx, _ = cuda.compile_ptx(kernel, (float64[:], float64[:], float64[:], float64[:]), cc=(7, 5))
        if ".entry" not in ptx:
            raise RuntimeError("no kernel entry in the PTX")
    except Exception as exc:
        return Piece("test compile", False, f"a one-kernel test does not compile ({_short(exc)})")
    if not device.ok:
        return Piece("test compile", True, "a one-kernel test compiles to PTX (no GPU to run it)")
    try:
        a = np.arange(256, dtype=np.float64)
        out = cuda.device_array_like(a)
        with warnings.catch_warnings():  # a two-block grid is meant: no low-occupancy warning
            warnings.simplefilter("ignore")
            cuda.jit(kernel)[2, 128](cuda.to_device(a), cuda.to_device(a), cuda.to_device(a), out)
        if not np.array_equal(out.copy_to_host(), a * a + a):
            raise RuntimeError("the test kernel computed a wrong result")
    except Exception as exc:
        return Piece("test compile", False, f"a one-kernel test compiles but does not run on the GPU "
                                            f"({_short(exc)})")
    return Piece("test compile", True, "a one-kernel test compiles, runs on the GPU and is right")


def _simulated() -> list[Piece]:
    names = ("driver", "device", "NVVM", "libdevice", "NVRTC", "nvJitLink", "test compile")
    return [check_numba_cuda()] + [Piece(n, True, "simulator", required=n != "nvJitLink") for n in names]


_cache: list[Piece] | None = None


def checks(refresh: bool = False) -> list[Piece]:
    """Every piece, checked once per process (``refresh`` checks again)."""
    global _cache
    if _cache is not None and not refresh:
        return _cache
    numba_cuda = check_numba_cuda()
    if not numba_cuda.ok:
        pieces = [numba_cuda]
    elif simulator():
        pieces = _simulated()
    else:
        driver = check_driver()
        device = check_device() if driver.ok else Piece("device", False, "not checked: no driver")
        supports = re.search(r"supports CUDA (\d+)\.", driver.detail) if driver.ok else None
        hint = install_hint(int(supports.group(1)) if supports else None)
        nvvm, libdevice, nvrtc = check_nvvm(hint), check_libdevice(hint), check_nvrtc(hint)
        if nvvm.ok and libdevice.ok and nvrtc.ok:
            test = check_test_compile(device)
        else:
            missing = ", ".join(p.name for p in (nvvm, libdevice, nvrtc) if not p.ok)
            test = Piece("test compile", False, f"not run: {missing} missing")
        pieces = [numba_cuda, driver, device, nvvm, libdevice, nvrtc, check_nvjitlink(), test]
    _cache = pieces
    return pieces


def first_missing(pieces: list[Piece]) -> Piece | None:
    """The first required piece that is missing (the reason the CUDA backend cannot run), or None."""
    return next((p for p in pieces if p.required and not p.ok), None)


def gpu_present(pieces: list[Piece]) -> bool:
    """A real GPU and its driver are here (whatever the compiler pieces say); False under the simulator."""
    found = {p.name: p.ok for p in pieces}
    return not simulator() and found.get("driver", False) and found.get("device", False)


def compiler_missing(pieces: list[Piece]) -> list[Piece]:
    """The compiler pieces that are missing."""
    return [p for p in pieces if p.name in COMPILER_PIECES and not p.ok]


def reason(piece: Piece) -> str:
    """``piece`` as the reason the CUDA backend cannot run."""
    return f"{piece.name} missing: {piece.detail}"


def as_dict(pieces: list[Piece]) -> dict:
    """The pieces as a JSON-able mapping (for the run summary)."""
    return {p.name: p.as_dict() for p in pieces}
