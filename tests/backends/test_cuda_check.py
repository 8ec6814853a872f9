"""The CUDA pieces: each reported on its own, ``auto`` and ``--backend cuda`` name the missing one, and the
suite fails (does not skip) on a GPU machine without the CUDA compiler libraries."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cryofield.backends import cuda_status, get_backend
from cryofield.backends.cuda import check as cuda_check
from cryofield.backends.cuda.check import Piece
from cryofield.cli import main

REPO = Path(__file__).resolve().parents[2]
NAMES = ["numba-cuda", "driver", "device", "NVVM", "libdevice", "NVRTC", "nvJitLink", "test compile"]
TINY = """
name: tiny
mesh: {generate: {kind: slab, size: [3, 2, 2], cells: [3, 2, 2]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol: [{kind: freeze, duration: 0.5, temperature: -70}]
initial: {type: uniform, temperature: 37}
"""


def gpu_without(*missing: str) -> list[Piece]:
    """The pieces of a GPU machine on which ``missing`` are absent."""
    return [Piece(n, n not in missing, f"fake {n}", required=n != "nvJitLink") for n in NAMES]


def assert_every_piece(pieces: list[Piece]) -> None:
    """What a GPU machine must have: every required piece, the compiler's above all."""
    missing = [p for p in pieces if p.required and not p.ok]
    assert not missing, "a GPU is present but the cuda backend cannot run: " + "; ".join(
        cuda_check.reason(p) for p in missing)


def test_every_piece_is_reported_on_its_own():
    pieces = cuda_check.checks()
    if cuda_check.simulator():
        assert all(p.ok for p in pieces)
        return
    names = [p.name for p in pieces]
    assert names == NAMES or names == ["numba-cuda"]
    assert all(p.detail for p in pieces)
    ok, why = cuda_status()
    first = cuda_check.first_missing(pieces)
    assert ok == (first is None)
    if first is not None:
        assert why == cuda_check.reason(first) and why.startswith(f"{first.name} missing: ")


def test_info_prints_each_piece(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cuda backend needs:" in out
    for piece in cuda_check.checks():
        assert f"  {piece.name}: " in out


def test_auto_names_the_missing_piece(monkeypatch):
    monkeypatch.setattr(cuda_check, "checks", lambda refresh=False: gpu_without("NVRTC", "test compile"))
    backend = get_backend("auto")
    assert backend.name == "cpu"
    assert backend.chosen_by == "picked by auto: no cuda (NVRTC missing: fake NVRTC)"
    monkeypatch.setattr(cuda_check, "checks", lambda refresh=False: gpu_without("driver", "device", "NVVM"))
    assert get_backend("auto").chosen_by == "picked by auto: no cuda (driver missing: fake driver)"


def test_backend_cuda_exits_2_naming_the_piece(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cuda_check, "checks", lambda refresh=False: gpu_without("libdevice", "test compile"))
    case = tmp_path / "tiny.yaml"
    case.write_text(TINY)
    assert main(["run", str(case), "-o", str(tmp_path / "out"), "--backend", "cuda", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the cuda backend cannot run here: libdevice missing: fake libdevice" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_optional_piece_does_not_stop_cuda():
    pieces = gpu_without("nvJitLink")
    assert cuda_check.first_missing(pieces) is None
    assert_every_piece(pieces)


def test_run_summary_records_the_pieces(tmp_path):
    from cryofield.config.case import load_case
    from cryofield.run.runner import run_case

    case = tmp_path / "tiny.yaml"
    case.write_text(TINY)
    summary = run_case(load_case(case), tmp_path / "out", backend="cpu", progress=False).summary
    recorded = summary["backend_diagnostics"]["cuda_pieces"]
    assert list(recorded) == [p.name for p in cuda_check.checks()]
    assert all(set(v) == {"ok", "detail", "required"} for v in recorded.values())


def test_gpu_present_needs_driver_and_device_only():
    if not cuda_check.simulator():  # under the simulator no GPU is ever present
        assert cuda_check.gpu_present(gpu_without("NVVM", "libdevice", "NVRTC", "test compile"))
    assert not cuda_check.gpu_present(gpu_without("driver", "device"))
    assert not cuda_check.gpu_present(gpu_without("device"))
    assert [p.name for p in cuda_check.compiler_missing(gpu_without("NVRTC"))] == ["NVRTC"]
    with pytest.raises(AssertionError, match="NVVM missing: fake NVVM"):
        assert_every_piece(gpu_without("NVVM", "test compile"))


@pytest.mark.device
def test_gpu_machine_has_every_cuda_piece():
    """Runs wherever a GPU and its driver are (conftest): fails when the CUDA compiler libraries are missing."""
    assert_every_piece(cuda_check.checks())


@pytest.mark.skipif(cuda_check.simulator(), reason="the simulator stands in for a GPU")
def test_suite_fails_on_a_gpu_machine_without_the_compiler(tmp_path):
    """A whole pytest session on a (faked) GPU machine whose NVRTC is missing: the device test runs and fails."""
    plugin = tmp_path / "fake_gpu_without_nvrtc.py"
    plugin.write_text(textwrap.dedent(f"""
        from cryofield.backends.cuda import check as cuda_check
        from cryofield.backends.cuda.check import Piece
        NAMES = {NAMES!r}
        pieces = [Piece(n, n not in ("NVRTC", "test compile"), "fake " + n, required=n != "nvJitLink") for n in NAMES]
        cuda_check.checks = lambda refresh=False: pieces
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", plugin.stem,
                           "tests/backends/test_cuda_check.py::test_gpu_machine_has_every_cuda_piece"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 failed" in proc.stdout and "NVRTC missing: fake NVRTC" in proc.stdout


def _kernel_signatures(dtype) -> dict:
    """Argument types of every CUDA kernel for ``dtype`` storage (shapes do not matter to the compiler)."""
    import numpy as np
    from numba import int64, typeof

    def a(shape, dt=dtype):
        return typeof(np.zeros(shape, dt))

    i4, n, e, scalar = np.int32, 10, 20, typeof(dtype(1.0))
    mats = (a((6, 2, 3)), a((2, 2), i4))
    layout = (int64,) * 4  # n, ne or nb ..., the layout scalars
    u1 = np.uint8
    return {
        "element_flux": (a(n), a((e, 4), i4), a((e, 6)), a(e, i4), *mats, a(4 * e), a(2, i4), int64, *layout, int64),
        "node_rate": (a(n), a(4 * e), a(n + 1, np.int64), a(4 * e, i4), a((5, n)), a(n, i4), a(n, u1), mats[0], a(2),
                      a(n), *layout, int64),
        "node_stage": (a(n), a(4 * e), a(n + 1, np.int64), a(4 * e, i4), a((5, n)), a(n, i4), a(n, u1), *mats, a(2),
                       a((64, 2, 5)), a(2, i4), *(a(n),) * 7, int64, *layout, int64),
        "temperature": (a(n), a(n, i4), *mats, a(n), *(int64,) * 4),
        "combine": (*(a(n),) * 7, a(n, i4), *mats, *(scalar,) * 5, *(int64,) * 4),
        "track": (a(n), a(n), a(n), a(2), a((2, n)), a(2), *(int64,) * 3),
        "commit": (a(2, i4), a(2, u1), *(a(n),) * 8, *(int64,) * 3),
        "step_change": (a(n), a(n), a(n), a(2, i4), a(1024, np.float64), *(int64,) * 3),
        "lane_out": (a(n), a(n), int64, int64),
        "lane_in": (a(n), a(n), int64, int64),
    }


@pytest.mark.skipif(cuda_check.simulator() or cuda_check.first_missing(
    [p for p in cuda_check.checks() if p.name in ("NVVM", "libdevice", "NVRTC")]) is not None,
    reason="needs the CUDA compiler libraries (NVVM, libdevice, NVRTC); no GPU needed")
def test_every_kernel_compiles_and_the_exact_mode_has_no_fma(monkeypatch):
    """Every CUDA kernel through the real NVVM in both precisions; FMA contracted by default, none in exact mode."""
    import re
    import types

    import numpy as np
    from numba import cuda

    from cryofield.backends.cuda.exact import no_fma
    from cryofield.backends.cuda.kernels import KERNEL_FUNCTIONS

    if not cuda_check.gpu_present(cuda_check.checks()):  # device functions are typed for the current GPU's cc
        monkeypatch.setattr("numba.cuda.dispatcher.get_current_device",
                            lambda: types.SimpleNamespace(compute_capability=(9, 0)))
    contracted = 0
    for dtype in (np.float64, np.float32):
        for name, sig in _kernel_signatures(dtype).items():
            ptx, _ = cuda.compile_ptx(KERNEL_FUNCTIONS[name], sig, cc=(9, 0))
            with no_fma():
                exact, _ = cuda.compile_ptx(KERNEL_FUNCTIONS[name], sig, cc=(9, 0))
            contracted += len(re.findall(r"\bfma\.rn\.f(32|64)", ptx))
            assert not re.findall(r"\bfma\.rn\.f(32|64)", exact), f"{name} ({dtype.__name__}) has FMA in exact mode"
    assert contracted > 0  # the default really contracts: the exact mode changes something
