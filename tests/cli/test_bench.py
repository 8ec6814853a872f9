"""``cryofield bench``: the comparison with a baseline, the result file, the command's wiring, the peer.

No heavy suite runs here: a stub suite stands in for the real ones where the command is exercised.
"""

import copy
import json
import sys
import types

import numpy as np
import pytest

from benchmarks import suites
from benchmarks.common import metadata
from benchmarks.compare import IncomparableError, compare, failures, figure, judge
from cryofield.cli import benchmarks_command, main
from cryofield.errors import InputError


def result(mode="quick", backend="cpu", **figures):
    """A result file's content with one verification record holding ``figures`` (name -> (value, kind))."""
    meta = {"mode": mode, "backend": backend}
    record = {"id": "study", "figures": {k: figure(v, kind) for k, (v, kind) in figures.items()}}
    return {"format": suites.FORMAT, "meta": meta, "suites": {"verification": {"records": [record]}}}


BASE = {"L2 error": (1.0e-3, "error"), "L2 order": (2.0, "order"), "fraction of copy bw": (0.5, "ratio"),
        "operator applications": (1000, "work")}


def test_equal_figures_pass():
    findings = compare(result(**BASE), result(**BASE))
    assert len(findings) == len(BASE) and not failures(findings)


@pytest.mark.parametrize("name, value", [("L2 error", 1.2e-3), ("L2 order", 1.8), ("fraction of copy bw", 0.3),
                                         ("operator applications", 1200), ("L2 error", float("nan"))])
def test_a_worse_figure_is_flagged(name, value):
    now = dict(BASE, **{name: (value, BASE[name][1])})
    bad = failures(compare(result(**now), result(**BASE)))
    assert [f.figure for f in bad] == [name]


@pytest.mark.parametrize("name, value", [("L2 error", 1.05e-3), ("L2 error", 1e-5), ("L2 order", 1.95),
                                         ("fraction of copy bw", 0.4), ("operator applications", 900)])
def test_changes_within_tolerance_or_better_pass(name, value):
    now = dict(BASE, **{name: (value, BASE[name][1])})
    assert not failures(compare(result(**now), result(**BASE)))


def test_judge_states_the_limit():
    assert judge("error", 1.0, 1.2) == ("regressed", "at most 1.1")
    assert judge("order", 2.0, 1.95)[0] == "ok"


def test_missing_figure_fails_and_new_figure_is_only_reported():
    now = {k: v for k, v in BASE.items() if k != "L2 order"} | {"H1 order": (1.0, "order")}
    findings = compare(result(**now), result(**BASE))
    assert [(f.figure, f.verdict) for f in failures(findings)] == [("L2 order", "missing")]
    assert ("H1 order", "new") in [(f.figure, f.verdict) for f in findings]


def test_speed_figures_are_not_compared_across_backends():
    now = dict(BASE, **{"fraction of copy bw": (0.01, "ratio")})
    findings = compare(result(backend="cuda", **now), result(**BASE))
    assert not failures(findings)
    assert {f.figure for f in findings if f.verdict == "skipped"} == {"fraction of copy bw", "operator applications"}


def test_another_mode_cannot_be_compared():
    with pytest.raises(IncomparableError, match="quick"):
        compare(result(mode="full", **BASE), result(**BASE))


def test_metadata_names_machine_backend_versions_and_revision():
    meta = metadata("cpu", quick=True)
    assert meta["backend"] == "cpu" and meta["mode"] == "quick"
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["cpu"]
    assert meta["versions"]["cryofield"] and meta["versions"]["numpy"] == np.__version__
    assert len(meta["git"]["commit"]) == 40 or meta["git"]["commit"] == "unknown"


@pytest.fixture
def stub_suite(monkeypatch):
    """Replace the verification suite by a stub whose one error figure the test sets."""
    module = types.ModuleType("stub_suite")
    module.error = 1e-3
    module.run = lambda quick, backend: {"records": [{"id": "stub",
                                                      "figures": {"error": figure(module.error, "error")}}]}
    module.tables = lambda res: "| stub |"
    monkeypatch.setitem(sys.modules, "stub_suite", module)
    monkeypatch.setitem(suites.SUITES, "verification", "stub_suite")
    return module


def test_command_writes_json_and_exits_1_on_regression(stub_suite, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert suites.cli(["verification", "--quick", "-o", str(baseline)]) == 0
    data = json.loads(baseline.read_text())
    assert {"machine", "backend", "versions", "git"} <= set(data["meta"])
    assert data["suites"]["verification"]["records"][0]["figures"]["error"]["value"] == 1e-3
    assert suites.cli(["verification", "--quick", "-o", str(tmp_path / "same.json"), "--compare",
                 str(baseline)]) == 0
    stub_suite.error = 2e-3
    assert suites.cli(["verification", "--quick", "-o", str(tmp_path / "worse.json"), "--compare",
                 str(baseline)]) == 1
    assert "regressed: verification / stub / error: 0.001 -> 0.002" in capsys.readouterr().err


def test_command_refuses_a_baseline_of_another_mode(stub_suite, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    suites.cli(["verification", "--quick", "-o", str(baseline)])
    full = copy.deepcopy(json.loads(baseline.read_text()))
    full["meta"]["mode"] = "full"
    baseline.write_text(json.dumps(full))
    assert suites.cli(["verification", "--quick", "-o", str(tmp_path / "x.json"), "--compare", str(baseline)]) == 2
    assert "full mode" in capsys.readouterr().err


def test_without_a_checkout_the_command_says_so(tmp_path):
    with pytest.raises(InputError, match="pip install -e"):
        benchmarks_command(tmp_path)


def test_cryofield_bench_hands_every_argument_to_the_checkouts_benchmarks(capfd):
    assert main(["bench", "--help"]) == 0
    assert "--compare" in capfd.readouterr().out
    assert main(["bench", "nosuchsuite"]) == 2
    assert "invalid choice" in capfd.readouterr().err


def test_peer_matches_the_neumann_closed_form_and_cryofield():
    """The scikit-fem peer on a coarse Neumann slab: front within 4 % of the closed form, as cryofield's."""
    pytest.importorskip("skfem")
    from benchmarks.common import temperatures_at
    from benchmarks.peers.skfem_enthalpy import EnthalpyPeer
    from benchmarks.verification import NEUMANN_CASE, fill_case, neumann_front_exact
    from cryofield.fem.closed_forms import planar_front_position

    case = fill_case(NEUMANN_CASE, n=100)
    exact = neumann_front_exact(case, [90.0])[0]
    peer = EnthalpyPeer(case)
    (T_peer,) = peer.run(0.5, [90.0])
    problem, (T_ours,), _ = temperatures_at(case, [90.0])
    x_peer = planar_front_position(peer.mesh.points, T_peer, -1.0)
    x_ours = planar_front_position(problem.mesh.points, T_ours, -1.0)
    assert abs(x_peer / exact - 1) < 0.04 and abs(x_peer / x_ours - 1) < 0.02
    assert peer.stats.halvings == 0 and peer.stats.steps == 180


def test_radial_reference_converges_at_second_order():
    """The 1-D reference of the time-stepping suite: the -40 °C radius at 90 s on halved grids converges at
    order ~2 (the phase-change front itself moves in node-sized jerks, so its radius converges unevenly)."""
    from benchmarks.radial import radial_reference

    cells = [50, 100, 200, 400]
    radii = [radial_reference(n, [90.0], [-40.0])[0, 0] for n in cells]
    changes = [abs(radii[j + 1] - radii[j]) for j in range(len(cells) - 1)]
    order = -np.polyfit(np.log(cells[1:]), np.log(changes), 1)[0]
    assert 1.6 < order < 2.6, (order, changes)


def test_graded_sphere_mesh_matches_the_radial_reference():
    """cryofield on the quick graded sphere lies within 1.5 % of the 1-D reference, and tighter steps do not
    move it: the error is the mesh's, which the suite's finer mesh brings below 0.5 %."""
    from benchmarks.common import input_order, temperatures_at, with_steps
    from benchmarks.radial import TIMES, equivalent_radii, graded_sphere_case, isotherm_error, radial_reference
    from cryofield.mesh.sources import mesh_of

    reference = radial_reference(238)
    case = graded_sphere_case(0.2, 2.0)
    mesh = mesh_of(case)
    errors = []
    for setting in [(2.0, 10.0), (0.5, 2.5)]:
        problem, temps, _ = temperatures_at(with_steps(case, *setting), TIMES)
        errors.append(isotherm_error(equivalent_radii(mesh.points, mesh.tets, input_order(problem, temps)),
                                     reference))
    assert errors[0] < 0.015 and abs(errors[0] - errors[1]) < 1e-3, errors
