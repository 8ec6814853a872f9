"""The package face: what a script imports from ``cryofield`` (load a case, run it, read its result)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cryofield

CASE = """
name: api
mesh: {generate: {kind: slab, size: [4, 4, 4], cells: [3, 3, 3]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: p, surface: zmin}]
protocol: [{kind: freeze, duration: 2, temperature: -50}]
initial: {type: uniform, temperature: 37}
outputs: {snapshot_interval: 1, metrics_interval: 1}
"""


def test_a_script_loads_runs_and_reads_a_case_through_the_package(tmp_path):
    (tmp_path / "case.yaml").write_text(CASE)
    case = cryofield.load_case(tmp_path / "case.yaml")
    report = cryofield.run_case(case, tmp_path / "out", backend="cpu", progress=False)
    result = cryofield.read_result(report.paths["h5"])
    assert isinstance(report, cryofield.RunReport) and isinstance(case, cryofield.Case)
    assert result.fields["min_temperature"].min() == pytest.approx(report.summary["probes"]["p"]["min_temperature_C"])
    assert result.attrs["cryofield_version"] == cryofield.__version__


def test_importing_the_package_loads_no_solver_library():
    """``import cryofield`` is light: Numba, pydantic and the plotting libraries load on first use."""
    code = ("import sys, cryofield; heavy = {'numba', 'pydantic', 'pyvista', 'matplotlib', 'h5py'} & set(sys.modules);"
            " print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_an_unknown_name_is_an_attribute_error():
    try:
        cryofield.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
