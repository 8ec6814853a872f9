"""Result integrity and safe paths: a result set is replaced whole or not at all, concurrent runs never corrupt
each other, nothing is written outside ``-o``, and whatever can be refused is refused before the run."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from cryofield.cli import main
from cryofield.config import resources
from cryofield.config.case import load_case, parse_case
from cryofield.errors import InputError
from cryofield.io import read_result
from cryofield.io.resultset import OutputLock, ResultSetError, check_set
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab

CASE = """
name: small
mesh:
  file: block.msh
  units: mm
  regions: {muscle: 1}
  surfaces: {probe: 1, far: 2, skin: 6}
tissues:
  muscle: {library: muscle}
probes:
  - {name: tip, surface: probe}
protocol:
  - {kind: freeze, duration: 6, temperature: -70}
  - {kind: passive_thaw, duration: 2}
boundaries:
  - {surface: far, type: fixed, temperature: 37}
  - {surface: skin, type: convection}
outputs: {snapshot_interval: 4, metrics_interval: 1}
"""

#: A generated slab that takes a few seconds, so that concurrent runs overlap.
SLOW_CASE = """
name: small
mesh: {generate: {kind: slab, size: [8, 4, 4], cells: [24, 12, 12]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol:
  - {kind: freeze, duration: 60, temperature: -70}
  - {kind: passive_thaw, duration: 30}
boundaries: [{surface: xmax, type: fixed, temperature: 37}]
outputs: {snapshot_interval: 5, metrics_interval: 1}
solver: {max_dt: 0.5}
"""

RUN = ["--backend", "cpu", "--no-progress"]


def make_case(tmp_path: Path, text: str = CASE, name: str = "case.yaml") -> Path:
    write_mesh(slab((8.0, 4.0, 4.0), (8, 4, 4), 1e-3), tmp_path / "block.msh", units="mm")
    path = tmp_path / name
    path.write_text(text)
    return path


def snapshot(directory: Path) -> dict[str, str]:
    """Every entry of ``directory`` (recursively) with the SHA-256 of its content."""
    out = {}
    for path in sorted(directory.rglob("*")):
        rel = str(path.relative_to(directory))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def cli(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cryofield", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    """A directory holding one complete set of ``small`` with its pictures (the 'previous' set of the tests)."""
    work = tmp_path_factory.mktemp("published")
    case = make_case(work)
    assert main(["run", str(case), "-o", str(work / "out"), *RUN]) == 0
    return work


@pytest.fixture
def previous(published, tmp_path) -> tuple[Path, Path]:
    """(case file, output directory) with a copy of the published set."""
    shutil.copytree(published, tmp_path, dirs_exist_ok=True)
    return tmp_path / "case.yaml", tmp_path / "out"


# The published set and its manifest


def test_a_run_publishes_one_set_with_its_manifest(published):
    out = published / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["small.h5", "small.json", "small.manifest.json", "small.xdmf", "small_3d.png",
                     "small_slice.png", "small_timeseries.png"]  # no staging directory, no lock left
    manifest = check_set(out, "small")
    assert sorted(manifest["files"]) == [n for n in names if n != "small.manifest.json"]
    with h5py.File(out / "small.h5") as f:
        assert f.attrs["run_id"] == manifest["run_id"] and f.attrs["complete"]
    assert json.loads((out / "small.json").read_text())["run_id"] == manifest["run_id"]
    assert manifest["cryofield_version"] and manifest["created"] and manifest["complete"] is True
    assert read_result(out / "small.h5").manifest["run_id"] == manifest["run_id"]
    assert (out / "small.xdmf").read_text().count("small.h5:") > 0  # relative to the set, not the staging dir


def test_a_new_run_replaces_the_whole_set(previous, capsys):
    case, out = previous
    before = check_set(out, "small")["run_id"]
    assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 0
    manifest = check_set(out, "small")
    assert manifest["run_id"] != before
    # the previous run's pictures describe another run: they went with it
    assert sorted(p.name for p in out.iterdir()) == ["small.h5", "small.json", "small.manifest.json", "small.xdmf"]


# Concurrent runs


def test_two_concurrent_runs_leave_one_complete_set_or_a_clear_refusal(tmp_path):
    case = tmp_path / "case.yaml"
    case.write_text(SLOW_CASE)
    out = tmp_path / "out"
    assert cli("run", case, "-o", out, *RUN, "--no-render").returncode == 0  # a good previous set
    procs = [subprocess.Popen([sys.executable, "-m", "cryofield", "run", str(case), "-o", str(out), *RUN,
                               "--no-render"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    codes = sorted(code for code, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, err in results:
        if code == 2:
            assert f"another run is writing {out / 'small'}" in err and "pid" in err, err
    check_set(out, "small")
    assert read_result(out / "small.h5").attrs["complete"]
    assert sorted(p.name for p in out.iterdir()) == ["small.h5", "small.json", "small.manifest.json", "small.xdmf"]


def test_a_second_run_while_one_is_writing_exits_2_at_once(tmp_path):
    case = tmp_path / "case.yaml"
    case.write_text(SLOW_CASE)
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "cryofield", "run", str(case), "-o", str(out), *RUN,
                              "--no-render"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".small.lock").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        second = cli("run", case, "-o", out, *RUN, "--no-render")
        running = first.poll() is None
    finally:
        assert first.wait(timeout=600) == 0, first.stderr.read()
        first.stderr.close()
    if running:  # the first one was still writing when the second one started
        assert second.returncode == 2, second.stderr
        assert f"another run is writing {out / 'small'} (pid {first.pid})" in second.stderr
    check_set(out, "small")
    assert not (out / ".small.lock").exists()


def test_a_lock_held_elsewhere_refuses_and_a_stale_one_is_broken(tmp_path, capsys):
    case = make_case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out, "small"):
        assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 2
        assert f"another run is writing {out / 'small'} (pid {os.getpid()})" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == []
    (out / ".small.lock").write_text("999999999\n")  # left by a process that died: nobody holds its flock
    assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 0
    check_set(out, "small")
    assert not (out / ".small.lock").exists()


def test_stale_staging_directories_of_the_name_are_removed(previous):
    case, out = previous
    stale = out / ".small.20240101T000000-1-0123abcd.partial"
    other = out / ".small.x.20240101T000000-1-0123abcd.partial"  # belongs to a run named small.x
    stale.mkdir()
    other.mkdir()
    (stale / "small.h5").write_bytes(b"half")
    assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 0
    assert not stale.exists() and other.exists()


# A full disk at each stage of writing


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


STAGES = {
    "h5_snapshot": "cryofield.io.results.ResultWriter.write_snapshot",
    "h5_finish": "cryofield.io.results.ResultWriter.finish",
    "xdmf": "cryofield.run.runner.write_xdmf",
    "json": "cryofield.run.runner.write_file",
    "picture": "cryofield.viz.render._save",
    "manifest": "cryofield.io.resultset.write_file",
    "fsync": "cryofield.io.resultset._fsync",
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_full_disk_at_any_stage_leaves_the_previous_set_intact(previous, monkeypatch, capsys, stage):
    case, out = previous
    before = snapshot(out)
    monkeypatch.setattr(STAGES[stage], _enospc)
    args = [] if stage == "picture" else ["--no-render"]
    assert main(["run", str(case), "-o", str(out), *RUN, *args]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert snapshot(out) == before  # nothing new, nothing lost, no staging directory, no lock
    monkeypatch.undo()
    check_set(out, "small")


def test_a_failed_rename_while_publishing_restores_the_previous_set(previous, monkeypatch, capsys):
    case, out = previous
    before = snapshot(out)
    real, failed = os.replace, []

    def failing(src, dst, *args, **kwargs):
        commit = Path(dst) == out / "small.manifest.json" and Path(src).parent.name.endswith(".partial")
        if commit and not failed:  # at the commit point, with every file already moved
            failed.append(src)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 1
    monkeypatch.undo()
    assert failed and "Input/output error" in capsys.readouterr().err
    assert snapshot(out) == before
    check_set(out, "small")


# Readers check the manifest


def test_readers_refuse_a_mixed_or_modified_set(previous, tmp_path, capsys):
    case, out = previous
    other = tmp_path / "other"
    assert main(["run", str(case), "-o", str(other), *RUN, "--no-render"]) == 0
    good = (out / "small.h5").read_bytes()

    shutil.copy(other / "small.h5", out / "small.h5")  # another run's h5 beside this set's manifest
    with pytest.raises(ResultSetError, match="the set is mixed"):
        read_result(out / "small.h5")
    assert main(["render", str(out / "small.h5"), "--size", "320x240"]) == 1  # a corrupt result
    assert "the set is mixed" in capsys.readouterr().err

    (out / "small.h5").write_bytes(good)
    (out / "small.json").write_text((out / "small.json").read_text() + " ")
    with pytest.raises(ResultSetError, match="small.json does not match its manifest"):
        check_set(out, "small")
    read_result(out / "small.h5")  # the h5 itself is still the one its manifest names

    manifest = json.loads((out / "small.manifest.json").read_text())
    manifest["files"]["small.h5"]["sha256"] = "0" * 64
    (out / "small.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultSetError, match="SHA-256 differs"):
        read_result(out / "small.h5")

    manifest["complete"] = False  # what a publication interrupted by a crash leaves
    (out / "small.manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultSetError, match="incomplete.*interrupted"):
        read_result(out / "small.h5")
    assert main(["render", str(out / "small.h5")]) == 1
    assert "incomplete" in capsys.readouterr().err

    (out / "small.manifest.json").write_text("[1, 2")
    with pytest.raises(ResultSetError, match="not a readable result-set manifest"):
        read_result(out / "small.h5")

    moved = tmp_path / "elsewhere" / "small.h5"  # an h5 on its own is read on its own
    moved.parent.mkdir()
    moved.write_bytes(good)
    assert read_result(moved).manifest is None


def test_render_into_the_set_adds_its_pictures_to_the_manifest(previous, capsys):
    _, out = previous
    run_id = check_set(out, "small")["run_id"]
    assert main(["render", str(out / "small.h5"), "--time", "4", "--size", "320x240"]) in (0, 1)
    manifest = check_set(out, "small")
    assert manifest["run_id"] == run_id and "updated" in manifest
    assert {"small_slice_t4s.png", "small_timeseries.png", "small_3d.png"} <= set(manifest["files"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# Names and paths


BAD_NAMES = ["../x", "/tmp/x", "", ".hidden", "a" * 101, "a/b", "x.manifest", "sp ace", "nul\0", "né"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_case_names_exit_2_before_anything_is_written(tmp_path, capsys, name):
    case = make_case(tmp_path, CASE.replace("name: small", f"name: {json.dumps(name)}"))
    before = snapshot(tmp_path)
    assert main(["run", str(case), "-o", str(tmp_path / "out"), *RUN]) == 2
    err = capsys.readouterr().err
    assert "case.yaml: name:" in err and "becomes the output file names" in err, err
    assert len(err) < 600
    assert snapshot(tmp_path) == before


def test_the_default_name_is_the_file_stem_made_safe(tmp_path):
    case = make_case(tmp_path, CASE.replace("name: small\n", ""), name="my case (v2).yaml")
    assert load_case(case).name == "my_case__v2_"
    assert parse_case(CASE.replace("name: small\n", ""), source="../../etc.yaml").name == "etc"


@pytest.mark.parametrize("kind", ["directory", "dangling_link", "fifo"])
def test_an_output_name_that_cannot_be_replaced_is_refused_before_the_run(tmp_path, capsys, kind):
    case = make_case(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "small.h5"
    if kind == "directory":
        target.mkdir()
    elif kind == "dangling_link":
        target.symlink_to(tmp_path / "nowhere.h5")
    else:
        os.mkfifo(target)
    before = sorted(p.name for p in out.iterdir())
    t0 = time.perf_counter()
    assert main(["run", str(case), "-o", str(out), *RUN]) == 2
    assert time.perf_counter() - t0 < 5  # refused before any computation
    err = capsys.readouterr().err
    assert str(target) in err and "-o/--output" in err, err
    assert sorted(p.name for p in out.iterdir()) == before
    assert not (tmp_path / "nowhere.h5").exists()


def test_a_link_to_a_file_is_replaced_not_written_through(previous, tmp_path):
    case, out = previous
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    (out / "small.json").unlink()
    (out / "small.json").symlink_to(victim)
    assert main(["run", str(case), "-o", str(out), *RUN, "--no-render"]) == 0
    assert victim.read_text() == "keep me" and not (out / "small.json").is_symlink()
    check_set(out, "small")


# YAML and other input refused before anything is written


def deep(n: int) -> str:
    return "x: " + "[" * n + "]" * n + "\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

GENERATED = """
mesh: {generate: {kind: slab, size: [8, 8, 8], cells: [8, 8, 8]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: tip, surface: xmin}]
protocol: [{kind: freeze, duration: 6}]
boundaries: [{surface: xmax, type: fixed, temperature: 37}]
outputs: {snapshot_interval: 100000, metrics_interval: 10000}
"""

BAD_INPUT = {
    "duplicate_key": (CASE + "tissues: {}\n", "key 'tissues' given twice (first at line 8)"),
    "nested_duplicate_key": (CASE.replace("muscle: {library: muscle}", "muscle: {library: muscle, library: fat}"),
                             "key 'library' given twice"),
    "deep_nesting": (CASE + deep(5000), "nested deeper than 32 levels"),
    "alias_bomb": (CASE + BOMB, "aliases are expanded"),
    "infinite_duration": (CASE.replace("duration: 2}", "duration: .inf}"), "protocol.1.duration"),
    "nan_duration": (CASE.replace("duration: 2}", "duration: .nan}"), "protocol.1.duration"),
    "nan_temperature": (CASE.replace("temperature: 37}", "temperature: .nan}"), "boundaries.0.temperature"),
    "huge_input_in_message": (CASE.replace("units: mm", "units: " + "m" * 100_000), "mesh.units"),
    "tiny_snapshot_interval": (CASE.replace("snapshot_interval: 4", "snapshot_interval: 1e-12"), "outputs:"),
    "huge_generated_mesh": (GENERATED.replace("cells: [8, 8, 8]", "cells: [100000, 100000, 100000]"),
                            "mesh.generate: the requested mesh would have about 1e+15 nodes"),
    # an RKL2 setting needing a thousand stages per step for 1.7e4 steps
    "work_beyond_the_limit": (GENERATED.replace("cells: [8, 8, 8]", "cells: [20, 20, 20]")
                              .replace("duration: 6", "duration: 1000000")
                              + "solver: {stages: 1000, max_dt: 60}\n", "solver: the run needs at least"),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_exits_2_naming_the_file_and_key_and_writes_nothing(tmp_path, capsys, name):
    text, message = BAD_INPUT[name]
    case = make_case(tmp_path, text)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["run", str(case), "-o", str(out), *RUN]) == 2
    assert time.perf_counter() - t0 < 60
    err = capsys.readouterr().err
    assert message in err and "case.yaml" in err, err
    assert len(err) < 2500
    assert not out.exists()


def test_force_runs_beyond_the_work_limit(tmp_path, monkeypatch, capsys):
    case = make_case(tmp_path)
    monkeypatch.setattr(resources, "WORK_LIMIT", 10.0)
    assert main(["run", str(case), "-o", str(tmp_path / "out"), *RUN, "--no-render"]) == 2
    err = capsys.readouterr().err
    assert "node-applications" in err and "above the limit of 10" in err and "--force" in err
    assert main(["validate", str(case)]) == 2
    assert main(["run", str(case), "-o", str(tmp_path / "out"), *RUN, "--no-render", "--force"]) == 0


def test_validate_prints_the_estimate(tmp_path, capsys):
    assert main(["validate", str(make_case(tmp_path))]) == 0
    assert "node-applications" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["not_utf8", "directory", "char_device", "fifo", "too_large"])
def test_case_files_that_are_not_text_files_are_bad_input(tmp_path, capsys, kind):
    path = tmp_path / "case.yaml"
    if kind == "not_utf8":
        make_case(tmp_path, CASE.replace("small", "sm\xe4ll"))
        path.write_bytes(CASE.replace("small", "sm\xe4ll").encode("latin-1"))
        message = "not UTF-8 text: byte 0xe4 at line 2"
    elif kind == "directory":
        path.mkdir()
        message = "regular file"
    elif kind == "char_device":
        path = Path("/dev/null")
        message = "regular file"
    elif kind == "fifo":
        os.mkfifo(path)
        message = "regular file"
    else:
        path.write_text(CASE + "#" * (2 << 20))
        message = "larger than 1 MiB"
    assert main(["run", str(path), "-o", str(tmp_path / "out"), *RUN]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sidecar, message", [
    ('{"centerlines": {"muscle": [[0, 0], [1, 1]]}}', "centerlines.muscle.0: malformed mesh metadata"),
    ('{"centerlines": {"muscle": [[0, 0, 0], [1, NaN, 0]]}}', "centerlines.muscle.1"),
    ('{"probes": {"tip": {"tip": [0, 0, 0], "axis": [0, 0, 0]}}}', "probes.tip.axis"),
    ('[1, 2, 3]', "(top level)"),
    ('{"centerlines": ', "cannot read the mesh metadata"),
])
def test_a_malformed_mesh_sidecar_is_refused_before_the_run(tmp_path, capsys, sidecar, message):
    case = make_case(tmp_path)
    (tmp_path / "block.meta.json").write_text(sidecar)
    assert main(["run", str(case), "-o", str(tmp_path / "out"), *RUN]) == 2
    err = capsys.readouterr().err
    assert "block.meta.json" in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_input_errors_are_bounded():
    assert len(str(InputError("x" * 10**6, source="s" * 10**4, key="k"))) < 3000
