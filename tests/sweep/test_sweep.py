"""Sweeps on Dask: a grid on a local cluster, a killed worker, resumption, refused sweep files, SLURM and
dask-cuda configuration, the designs and the uncertainty (2 cores, no GPU, no cluster)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from cryofield.cli import main
from cryofield.errors import InputError
from cryofield.outcomes.fibres import verdict
from cryofield.sweep.design import ROWS, design_points
from cryofield.sweep.execute import local_cluster, run_sweep, slurm_cluster, slurm_kwargs
from cryofield.sweep.schema import DESIGNS, LocalClusterSpec, SweepSpec, load_sweep, parse_sweep
from cryofield.sweep.table import read_table
from cryofield.sweep.uncertainty import distribution, probabilities
from cryofield.sweep.variants import expand
from cryofield.sweep.worker import outcomes

pytest.importorskip("distributed")

#: A nerve 20 mm long frozen from one end: the lesion grows with the freeze's length and coldness.
SLAB = """
name: slab
mesh:
  generate: {kind: slab, size: [20, 2, 2], cells: [40, 2, 2]}
  units: mm
tissues:
  tissue: {library: nerve}
probes:
  - {name: cold_face, surface: xmin}
protocol:
  - {kind: freeze, duration: 60, temperature: -70}
initial: {type: uniform, temperature: 37}
boundaries:
  - {surface: xmax, type: fixed, temperature: 37}
outputs: {snapshot_interval: 30, metrics_interval: 5}
"""

GRID = """
base: slab.yaml
axes:
  - {path: protocol.0.duration, values: [30, 60, 120]}
  - {path: protocol.0.temperature, values: [-40, -70]}
backend: cpu
"""


def write(tmp_path: Path, sweep: str, case: str = SLAB) -> Path:
    (tmp_path / "slab.yaml").write_text(case)
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep)
    return path


def test_grid_on_a_local_cluster_matches_single_runs_and_resumes(tmp_path, capsys):
    path = write(tmp_path, GRID + "cluster: {kind: local, workers: 2}\n")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["sweep", str(path), "-o", str(out), "--no-progress"]) == 0
    first_wall = time.perf_counter() - t0
    rows = read_table(out)
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert [(r["protocol.0.duration"], r["protocol.0.temperature"]) for r in rows] == [
        (30, -40), (30, -70), (60, -40), (60, -70), (120, -40), (120, -70)]
    assert all(r["run"] == 1 and r["attempts"] == 1 and r["solver_s"] > 0 and r["backend"] == "cpu" for r in rows)
    assert [r["ensemble"] for r in rows] == [3] * 6  # one mesh: two ensembles of three, one per worker
    lesion = {(r["protocol.0.duration"], r["protocol.0.temperature"]): r["lesion_whole_mm"] for r in rows}
    assert lesion[(30, -40)] < lesion[(30, -70)] < lesion[(120, -70)]  # longer and colder freezes reach further
    assert lesion[(30, -40)] < lesion[(60, -40)] < lesion[(120, -40)]
    assert not rows[0]["durable_block"] and rows[5]["durable_block"]  # 4 mm at -20 °C
    assert rows[5]["durable_block_mm"] == 4.0 and (out / "results.csv").read_text().count("\n") == 7

    for i in (1, 4):  # the same case on its own with `cryofield run`
        single = tmp_path / f"single{i}"
        assert main(["run", str(out / "variants" / rows[i]["key"] / "case.yaml"), "-o", str(single), "--no-render",
                     "--no-progress", "--backend", "cpu"]) == 0
        clinical = json.loads((single / "slab.json").read_text())["clinical"]["nerves"]["tissue"]
        assert rows[i]["nerve.tissue.min_temperature_C"] == pytest.approx(clinical["min_temperature_C"], abs=1e-9)
        assert rows[i]["nerve.tissue.lesion_whole_m20C_mm"] == pytest.approx(
            clinical["lesion_length"]["-20"]["whole_section_mm"], abs=1e-9)
        assert rows[i]["nerve.tissue.durable_block"] == clinical["durable_block"]

    capsys.readouterr()
    t0 = time.perf_counter()
    assert main(["sweep", str(path), "-o", str(out), "--no-progress"]) == 0  # again: nothing left to run
    assert "0 run now, 6 already finished" in capsys.readouterr().out
    again = read_table(out)
    assert [(r["run"], r["wall_s"], r["solver_s"], r["finished_at"]) for r in again] == [
        (r["run"], r["wall_s"], r["solver_s"], r["finished_at"]) for r in rows]  # no solver ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["ran"] == 0 and summary["skipped"] == 6
    assert time.perf_counter() - t0 < first_wall  # and no cluster was started

    assert main(["sweep-report", str(out)]) == 0
    pictures = sorted(p.name for p in (out / "pictures").iterdir())
    assert pictures == ["heatmap_protocol_0_duration__protocol_0_temperature.png", "outcome_vs_axes.png",
                        "temperatures_vs_axes.png"]


def test_a_killed_worker_is_retried_and_a_bad_variant_fails_alone(tmp_path):
    """Each variant takes a few seconds; the worker running the first one is killed (SIGKILL) mid-run."""
    slow = SLAB.replace("duration: 60", "duration: 120")
    path = write(tmp_path, """
base: slab.yaml
design: zip
axes:
  - {path: protocol.0.temperature, values: [-70, -60, -50, -40]}
  - {path: solver.stages, values: [null, null, null, 2]}   # 2 stages cannot take dt = 50 s: refused when it runs
  - {path: solver.max_dt, values: [0.005, 0.005, 0.005, 50]}
backend: cpu
retries: 2
""", slow)
    sweep = load_sweep(path)
    out = tmp_path / "out"
    result = []
    with local_cluster(LocalClusterSpec(workers=2)) as (cluster, _), __import__("distributed").Client(cluster) as c:
        runner = threading.Thread(target=lambda: result.append(run_sweep(sweep, out, client=c, progress=False)))
        runner.start()
        pids = set(c.run(os.getpid).values())
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline:  # a variant that started and has not finished
            for attempts in out.glob("variants/*/.attempts"):
                if "stages: 2" in (attempts.parent / "case.yaml").read_text():
                    continue  # the bad variant: it fails by its input, in the ensemble with a good one
                if not (attempts.parent / "row.json").exists():
                    pid = int(attempts.read_text().split()[-1].rsplit(":", 1)[1])
                    if pid in pids:
                        time.sleep(1.0)  # well into its run
                        if not (attempts.parent / "row.json").exists():
                            os.kill(pid, signal.SIGKILL)
                            killed = attempts.parent.name
                        break
            time.sleep(0.05)
        runner.join(120)
    assert killed is not None and not runner.is_alive()
    rows = {r["key"]: r for r in read_table(out)}
    assert len(rows) == 4
    assert rows[killed]["status"] == "ok" and rows[killed]["attempts"] == 2, rows[killed]
    assert int(rows[killed]["worker"].rsplit(":", 1)[1]) != pid  # finished by another worker process
    by_t = {r["protocol.0.temperature"]: r for r in rows.values()}
    assert [by_t[t]["status"] for t in (-70, -60, -50)] == ["ok"] * 3
    bad = by_t[-40]
    assert bad["status"] == "failed" and bad["error_key"] == "solver.stages" and "unstable" in bad["error"]
    assert not result[0].complete


def test_variants_are_grouped_into_ensembles_by_the_axes_that_change_the_mesh(cases_dir):
    from cryofield.sweep.execute import ensemble_jobs

    sweep = load_sweep(cases_dir / "sweep_gon_gap.yaml")  # gap (meshed into the phantom) x freeze length
    variants = expand(sweep)
    tasks = [{"key": v.key} for v in variants]
    gap = {v.key: v.params["gap_mm"] for v in variants}
    jobs = ensemble_jobs(sweep, variants, tasks, slots=1)
    assert sorted(len(j) for j in jobs) == [4] * 4 and all(len({gap[t["key"]] for t in j}) == 1 for j in jobs)
    assert [len(j) for j in ensemble_jobs(sweep, variants, tasks, slots=2)] == [2] * 8  # every worker has work
    sweep.spec.ensemble_size = 1
    assert [len(j) for j in ensemble_jobs(sweep, variants, tasks, slots=1)] == [1] * 16
    assert [a.may_change_mesh for a in sweep.spec.axes] == [True, False]


def test_bad_axis_path_and_out_of_range_value_exit_2_naming_the_axis(tmp_path, capsys):
    bad_path = write(tmp_path, GRID.replace("protocol.0.temperature", "protocol.0.temprature"))
    assert main(["sweep", str(bad_path), "-o", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err
    assert "axes.1.path" in err and "protocol.0.temprature" in err and "no key 'temprature'" in err

    perfusion = "  - {path: tissues.tissue.perfusion, values: [0.001, 5]}"
    out_of_range = write(tmp_path, GRID.replace("backend: cpu", perfusion))
    assert main(["sweep", str(out_of_range), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "axes.2" in err and "tissues.tissue.perfusion" in err and "6 of 12 variant(s)" in err
    assert "variant 1 (" in err and "less than or equal to 0.5" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()  # nothing ran

    for text, key in [(GRID + "colour: red\n", "colour"), (GRID.replace("values: [30, 60, 120]", "values: []"),
                                                             "axes.0.values"),
                      (GRID + "design: lhs\n", "(top level)")]:
        assert main(["sweep", str(write(tmp_path, text)), "-o", str(tmp_path / "o3")]) == 2
        assert key in capsys.readouterr().err


def test_paths_reach_defaults_the_base_case_leaves_out(tmp_path):
    sweep = parse_sweep("""
base:
  mesh: {phantom: {preset: coarse}}
  probes: [{name: p, placement: {gauge: 18G, active_length: 8, target: {nerve: gon},
            approach: {from: superior, angle: 15}}}]
  protocol: [{kind: freeze, duration: 60}]
axes:
  - {path: mesh.phantom.anatomy.skin_thickness, values: [1.5, 2.5]}
  - {path: tissues.skin.perfusion, values: [0.001]}
  - {path: probes.0.placement.target.gap, values: [0.3]}
""", source=str(tmp_path / "s.yaml"), base_dir=tmp_path)
    variants = expand(sweep)
    assert [v.case.mesh.phantom.anatomy.skin_thickness for v in variants] == [1.5, 2.5]
    assert variants[0].case.tissues["skin"].perfusion == 0.001 and variants[0].case.tissues["skin"].library == "skin"
    assert variants[0].case.probes[0].placement.target.gap == 0.3
    assert variants[0].key != variants[1].key and len(variants[0].key) == 16


def test_every_design_the_schema_accepts_has_rows():
    assert sorted(ROWS) == sorted(DESIGNS)


def test_sampled_designs_are_seeded_bounded_and_stratified():
    spec = SweepSpec.model_validate({"base": {}, "design": "lhs", "samples": 40, "seed": 3, "axes": [
        {"path": "a", "distribution": {"kind": "truncated_normal", "mean": 1.0, "std": 1.0, "low": 0.5, "high": 2}},
        {"path": "b", "distribution": {"kind": "lognormal", "median": 2e-3, "sigma": 0.3}},
        {"path": "c", "values": ["18G", "20G"]},
        {"path": "d", "distribution": {"kind": "uniform", "low": 0, "high": 10}, "integer": True}]})
    points = design_points(spec)
    assert points == design_points(spec)  # the same seed, the same variants
    a = np.array([p["a"] for p in points])
    assert a.min() >= 0.5 and a.max() <= 2.0
    b = np.array([p["b"] for p in points])
    assert b.min() > 0 and 1.5e-3 < np.median(b) < 2.6e-3
    assert {p["c"] for p in points} == {"18G", "20G"} and all(isinstance(p["d"], int) for p in points)
    from scipy import stats

    cdf = stats.truncnorm.cdf(a, -0.5, 1.0, loc=1.0, scale=1.0)  # a Latin hypercube: one point per 1/40 of the CDF
    assert sorted(np.floor(cdf * 40).astype(int).clip(0, 39)) == list(range(40))
    rnd = design_points(spec.model_copy(update={"design": "random", "seed": 4}))
    assert rnd != points and len(rnd) == 40


def test_uncertainty_reports_probabilities_with_intervals():
    rows = [{"status": "ok", "durable_block": i < 30, "skin_froze": i < 2, "artery_froze": False}
            for i in range(40)] + [{"status": "failed"}]
    p = probabilities(rows, 0.95, "wilson")
    assert p["durable_block"]["k"] == 30 and p["durable_block"]["n"] == 40
    assert p["durable_block"]["low"] < 0.75 < p["durable_block"]["high"]
    assert p["skin_or_artery_froze"]["k"] == 2
    exact = probabilities(rows, 0.95, "clopper-pearson")["durable_block"]
    assert exact["high"] - exact["low"] > p["durable_block"]["high"] - p["durable_block"]["low"]


def test_the_fibre_verdict_becomes_columns_a_probability_and_a_distribution():
    """A run's fibre reading (per nerve: injured fraction, verdict, fraction per level) gives the sweep table's
    columns; over the variants, the probability of a complete block and the spread of the injured fraction."""
    def summary(fraction: float) -> dict:
        fibres = {"injured_fraction": fraction, "verdict": verdict(fraction, 0.9),
                  "injured_fraction_by_level": {"-10": min(1.0, fraction + 0.1), "-20": fraction}}
        nerve = {"min_temperature_C": -30.0, "lesion_length": {"-20": {"whole_section_mm": 0.0, "any_part_mm": 4.0}},
                 "durable_block": False, "target": True, "fibres": fibres}
        return {"timings_s": {}, "backend": "cpu", "device": "-", "nodes": 1, "time_step": {"steps": 1},
                "total_volume_below_mm3": {}, "clinical": {"thresholds_C": [-20.0], "durable_block_mm": 4.0,
                                                           "nerves": {"gon": nerve}}}

    rows = [{"status": "ok"} | outcomes(summary(f)) for f in (0.95, 0.5, 0.0, 1.0)]
    assert [r["complete_block"] for r in rows] == [True, False, False, True]
    assert [r["partial_block"] for r in rows] == [True, True, False, True]
    assert rows[1]["nerve.gon.verdict"] == "partial" and rows[1]["nerve.gon.injured_fraction_m10C"] == 0.6
    assert probabilities(rows)["complete_block"]["k"] == 2
    spread = distribution(rows)
    assert spread["n"] == 4 and spread["quantiles"]["0.5"] == 0.725 and list(probabilities(rows))[0] == "complete_block"


def test_slurm_configuration_and_job_script(tmp_path, capsys):
    cfg = {"kind": "slurm", "queue": "gpu", "account": "neuro", "cores": 8, "memory": "16GB",
           "walltime": "02:00:00", "processes": 4, "jobs": 3, "job_extra_directives": ["--gres=gpu:1"],
           "job_script_prologue": ["module load cuda"], "job_name": "cf"}
    spec = SweepSpec.model_validate({"base": {}, "axes": [{"path": "a", "values": [1]}], "cluster": cfg}).cluster
    kwargs = slurm_kwargs(spec)
    assert kwargs["cores"] == 4 and kwargs["processes"] == 4 and kwargs["job_cpu"] == 8  # 1 dask thread per worker
    with slurm_cluster(spec) as cluster:
        script = cluster.job_script()
    for line in ["#SBATCH -J cf", "#SBATCH -p gpu", "#SBATCH -A neuro", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=15G", "#SBATCH -t 02:00:00", "#SBATCH --gres=gpu:1", "module load cuda",
                 "--nworkers 4", "--nthreads 1"]:
        assert line in script, line
    for bad, key in [({"processes": 3}, "cluster"), ({"walltime": "two hours"}, "cluster.walltime"),
                     ({"memory": "lots"}, "cluster.memory"), ({"partition": "x"}, "cluster.partition")]:
        with pytest.raises(InputError) as err:
            parse_sweep(yaml.safe_dump({"base": {}, "axes": [{"path": "a", "values": [1]}], "cluster": cfg | bad}))
        assert err.value.key == key

    path = write(tmp_path, GRID + "cluster: " + json.dumps(cfg) + "\n")
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --gres=gpu:1" in out and "6 valid variant(s)" in out


def test_local_cuda_needs_dask_cuda_and_says_so(tmp_path, monkeypatch, capsys):
    with pytest.raises(InputError) as err:
        parse_sweep(GRID + "cluster: {kind: local-cuda, devices: [0, 0]}\n")
    assert err.value.key == "cluster.devices"
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # as on a machine without it
    path = write(tmp_path, GRID + "cluster: {kind: local-cuda, devices: [0, 1]}\n")
    assert main(["sweep", str(path), "-o", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cluster.kind" in err and "needs the dask-cuda package" in err and "pip install dask-cuda" in err


def test_concurrent_requests_for_one_phantom_mesh_build_it_once(tmp_path, monkeypatch):
    from cryofield.config.meshspec import PhantomSpec
    from cryofield.mesh import phantom
    from cryofield.mesh.generators import slab

    monkeypatch.setenv("CRYOFIELD_CACHE", str(tmp_path / "cache"))
    builds = []

    def slow_build(spec, poses, threads=0):
        builds.append(threading.get_ident())
        time.sleep(0.5)
        mesh = slab((2.0, 2.0, 2.0), (2, 2, 2), 1e-3)
        mesh.metadata = {"phantom": {"hash": "x"}}
        return mesh

    monkeypatch.setattr(phantom, "build_mesh", slow_build)
    got = []
    threads = [threading.Thread(target=lambda: got.append(phantom.phantom_mesh(PhantomSpec(), {})[1]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and sorted(got) == [False, True, True]


def test_ctrl_c_stops_cleanly_and_the_same_command_continues(tmp_path):
    import subprocess

    slow = SLAB.replace("duration: 60", "duration: 120") + "solver: {max_dt: 0.01}\n"
    path = write(tmp_path, """
base: slab.yaml
axes:
  - {path: protocol.0.temperature, values: [-70, -60, -50, -40]}
backend: cpu
cluster: {kind: local, workers: 2}
""", slow)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "cryofield", "sweep", str(path), "-o", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120

    def finished_now() -> int:
        try:
            return sum(r["status"] == "ok" for r in read_table(out))
        except OSError:  # not written yet
            return 0

    while not finished_now() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    assert "interrupted: the finished variants are kept" in stderr and "Traceback" not in stderr
    rows = read_table(out)
    finished = [r for r in rows if r["status"] == "ok"]
    assert len(rows) == 4 and 1 <= len(finished) < 4
    for r in finished:  # what finished is complete
        assert (out / "variants" / r["key"] / "slab.h5").is_file()
    assert main(["sweep", str(path), "-o", str(out), "--no-progress"]) == 0
    again = read_table(out)
    assert all(r["status"] == "ok" for r in again)
    assert {r["key"]: r["finished_at"] for r in finished}.items() <= {r["key"]: r["finished_at"] for r in again}.items()


def test_the_shipped_sweeps_are_valid(cases_dir, tmp_path, capsys):
    for name, n in (("sweep_gon_gap", 16), ("sweep_gon_uncertainty", 32)):
        assert main(["sweep", str(cases_dir / f"{name}.yaml"), "-o", str(tmp_path / name), "--dry-run"]) == 0
        assert f"dry run: {n} valid variant(s)" in capsys.readouterr().out


def test_gmsh_meshes_in_a_worker_thread():
    """A sweep's worker runs each case in a thread, where Gmsh cannot install its Ctrl-C handler."""
    from cryofield.mesh.generators import sphere_octant_shell

    got = []
    t = threading.Thread(target=lambda: got.append(sphere_octant_shell(1.0, 3.0, 0.8, 1.5, 1e-3)))
    t.start()
    t.join()
    assert got and got[0].n_tets > 0
