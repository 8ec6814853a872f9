"""Ensembles: B variants of one mesh stepped together give each variant's single-run numbers, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from cryofield.backends import get_backend
from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.run.ensemble import drive_ensemble, run_ensemble, split_for_memory
from cryofield.run.plan import prepare
from cryofield.run.runner import run_case
from cryofield.timestepping.stepper import Ensemble

BASE = """
name: v{b}
mesh:
  generate: {{kind: slab, size: [4, 3, 3], cells: [{cells}, 3, 3]}}
  units: mm
tissues: {{tissue: {{library: muscle, perfusion: {perf}, conductivity: {k}}}}}
probes: [{{name: tip, surface: xmin, {probe}}}]
protocol: [{{kind: freeze, duration: {d1}, temperature: {Tp}}}, {{kind: passive_thaw, duration: {d2}}}]
initial: {{type: uniform, temperature: {T0}}}
boundaries:
  - {{surface: xmax, type: fixed, temperature: 37}}
  - {{surface: zmax, type: convection, heat_transfer_coefficient: {h}, temperature: 22}}
outputs: {{snapshot_interval: 1, metrics_interval: 0.5}}
solver: {{max_dt: 0.5, precision: {precision}, tolerance: {tol}}}
"""
#: Four variants that differ in tissue properties, probe model and setting, protocol lengths, a boundary
#: coefficient, the initial state and the step control (two with a local error tolerance): their phase
#: switches fall at different times.
VARIANTS = [dict(perf=5e-4, k=0.5, probe="", d1=1.5, Tp=-70, d2=0.5, T0=37, h=10, tol=0.02),
            dict(perf=2e-3, k=0.45, probe="model: convective, heat_transfer_coefficient: 3000", d1=1.0, Tp=-50,
                 d2=1.5, T0=36, h=20, tol="null"),
            dict(perf=1e-3, k=0.55, probe="", d1=2.0, Tp=-90, d2=0.3, T0=37, h=5, tol=0.1),
            dict(perf=0.0, k=0.5, probe="", d1=0.7, Tp=-60, d2=1.0, T0=35, h=10, tol="null")]
COMPARED = ("fields", "metrics", "snapshots")


def _cases(precision: str = "float64", cells: int = 5) -> list:
    return [parse_case(BASE.format(b=b, precision=precision, cells=cells, **v)) for b, v in enumerate(VARIANTS)]


def _arrays(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[0] in COMPARED:
                out[name] = obj[()]
        f.visititems(visit)
    return out


def differences_from_alone(out_dir, backend: str, variant_fastest: bool = True, precision: str = "float64",
                           cells: int = 5) -> dict:
    """Run the four variants as one ensemble and each alone on ``backend``; the largest difference of every
    compared dataset (K, s, m³), and the step counts both ways."""
    out_dir = Path(out_dir)
    cases = _cases(precision, cells)
    report = run_ensemble(cases, [out_dir / "ensemble"] * len(cases), backend=backend,
                          variant_fastest=variant_fastest)
    record = {"sizes": report.sizes, "datasets": 0, "max_difference": 0.0, "steps": [], "steps_alone": [],
              "variants": []}
    for case, result in zip(cases, report.results):
        if isinstance(result, BaseException):
            raise result
        alone = run_case(case, out_dir / "alone", backend=backend, progress=False)
        together, single = _arrays(result.paths["h5"]), _arrays(alone.paths["h5"])
        assert together.keys() == single.keys(), (sorted(together), sorted(single))
        record["datasets"] += len(single)
        for name in single:
            record["max_difference"] = max(record["max_difference"],
                                           float(np.abs(np.asarray(together[name], float)
                                                        - np.asarray(single[name], float)).max()))
        summary = json.loads(result.paths["json"].read_text())
        record["steps"].append(summary["time_step"]["steps"])
        record["steps_alone"].append(alone.summary["time_step"]["steps"])
        record["variants"].append(summary["ensemble"]["variants"])
    return record


def _check(record: dict) -> None:
    assert record["sizes"] == [len(VARIANTS)] and record["variants"] == [len(VARIANTS)] * len(VARIANTS)
    assert record["datasets"] > 40
    # stated tolerance 1e-9 K (or s, m³); the arithmetic and the step decisions are the same: 0 expected
    assert record["max_difference"] <= 1e-9, record
    assert record["steps"] == record["steps_alone"] and len(set(record["steps"])) > 1


@pytest.mark.parametrize("variant_fastest", [True, False])
def test_four_variants_equal_four_single_runs_on_the_cpu(tmp_path, variant_fastest):
    _check(differences_from_alone(tmp_path, "cpu", variant_fastest))


def test_float32_ensemble_equals_single_runs(tmp_path):
    _check(differences_from_alone(tmp_path, "cpu", True, "float32"))


@pytest.mark.nodevice
def test_four_variants_equal_four_single_runs_under_the_cuda_simulator(tmp_path, under_simulator):
    _check(under_simulator("test_ensemble", f"differences_from_alone({str(tmp_path)!r}, 'cuda', cells=2)"))


@pytest.mark.device
@pytest.mark.parametrize("variant_fastest", [True, False])
def test_four_variants_equal_four_single_runs_on_the_gpu(tmp_path, variant_fastest):
    _check(differences_from_alone(tmp_path, "cuda", variant_fastest))


def test_the_variants_really_differ_and_take_their_own_steps(tmp_path):
    cases = _cases()
    report = run_ensemble(cases, [tmp_path] * len(cases), backend="cpu")
    steps = [r.summary["time_step"]["steps"] for r in report.results]
    minima = [r.summary["probes"]["tip"]["min_temperature_C"] for r in report.results]
    assert len(set(steps)) > 1 and len(set(np.round(minima, 3))) == len(cases)
    assert report.variant_steps == sum(steps) and report.variant_steps_per_s > 0


def test_a_variant_on_another_mesh_or_bad_input_fails_alone(tmp_path):
    cases = _cases()
    other = parse_case(BASE.format(b=9, precision="float64", cells=4, **VARIANTS[0]))
    bad = parse_case(BASE.format(b=8, precision="float64", cells=5, **VARIANTS[0]).replace("max_dt: 0.5",
                                                                                          "max_dt: 0.5, stages: 2"))
    alone = parse_case(BASE.format(b=7, precision="float64", cells=5, **VARIANTS[0]).replace(
        "max_dt: 0.5", "max_dt: 0.5, scheme: multirate"))
    report = run_ensemble([*cases[:2], other, bad, alone], [tmp_path] * 5, backend="cpu")
    assert isinstance(report.results[2], InputError) and report.results[2].key == "mesh"
    assert isinstance(report.results[3], InputError) and report.results[3].key == "solver.stages"
    assert isinstance(report.results[4], InputError) and report.results[4].key == "solver.scheme"
    assert all(not isinstance(r, BaseException) for r in report.results[:2])
    assert not any((tmp_path / f"v{b}.h5").exists() for b in (7, 8, 9))


def test_a_blow_up_fails_its_variant_only():
    plans = [prepare(c) for c in _cases()[:3]]
    ensemble = Ensemble(get_backend("cpu"), [p.problem for p in plans],
                        [p.problem.enthalpy(p.initial_temperature()) for p in plans], [p.control() for p in plans])
    ensemble.lanes[1].control.blow_up_change = 1e-6  # any change is "impossible" for variant 1

    def run(lane, end):
        yield end, None
        return lane.t

    results = drive_ensemble(ensemble, [run(lane, 1.0) for lane in ensemble.lanes])
    assert results[0] == pytest.approx(1.0) and results[2] == pytest.approx(1.0)
    assert "blew up" in str(results[1])


def test_memory_split_covers_every_variant_with_a_message():
    sizes, why = split_for_memory(256, 54_000, 8, 2e9)
    assert sum(sizes) == 256 and max(sizes) - min(sizes) <= 1 and len(sizes) > 1
    assert "split into" in why
    assert split_for_memory(8, 54_000, 8, 64e9) == ([8], None)


def test_an_ensemble_too_big_for_memory_is_split(tmp_path, monkeypatch):
    import cryofield.run.ensemble as ens

    cases = _cases()
    n = prepare(cases[0]).problem.n_nodes
    monkeypatch.setattr(ens, "available_bytes", lambda backend: 2.5 * ens.ensemble_bytes(n, 1, 8) / 0.8)
    report = run_ensemble(cases, [tmp_path] * len(cases), backend="cpu")
    assert report.sizes == [2, 2] and "split into 2 ensembles" in report.notes[0]
    assert all(not isinstance(r, BaseException) for r in report.results)


def test_the_ensemble_command_runs_case_files_together(tmp_path, capsys):
    from cryofield.cli import main

    paths = []
    for b, v in enumerate(VARIANTS[:2]):
        path = tmp_path / f"v{b}.yaml"
        path.write_text(BASE.format(b=b, precision="float64", cells=5, **v))
        paths.append(str(path))
    assert main(["ensemble", *paths, "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "2 case(s) in 1 ensemble(s) of 2" in out and (tmp_path / "out" / "v0.h5").is_file()
    assert (tmp_path / "out" / "v1.manifest.json").is_file()
    # the same name twice, or a bad case: exit 2, nothing written
    assert main(["ensemble", paths[0], paths[0], "-o", str(tmp_path / "twice")]) == 2
    assert "two cases are named 'v0'" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.format(b=9, precision="float64", cells=5, **VARIANTS[0]).replace("max_dt", "max_dtt"))
    assert main(["ensemble", paths[0], str(bad), "-o", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "twice").exists() and not (tmp_path / "bad").exists()
