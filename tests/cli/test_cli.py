"""The command line end to end, and its refusal of bad input (exit 2, a clear message, no output)."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import meshio
import numpy as np
import pytest

from cryofield.cli import main
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab

GOOD_CASE = """
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
  - {kind: freeze, duration: 4}
boundaries:
  - {surface: far, type: fixed, temperature: 37}
  - {surface: skin, type: convection}
outputs: {snapshot_interval: 4, metrics_interval: 1, fields: [temperature, liquid_fraction]}
"""


def make_case(tmp_path: Path, text: str = GOOD_CASE, mesh=None) -> Path:
    mesh = mesh if mesh is not None else slab((8.0, 4.0, 4.0), (8, 4, 4), 1e-3)
    write_mesh(mesh, tmp_path / "block.msh", units="mm")
    path = tmp_path / "case.yaml"
    path.write_text(text)
    return path


def test_run_end_to_end(tmp_path):
    case = make_case(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "cryofield", "run", str(case), "-o", str(out), "--backend",
                           "cpu", "--no-progress"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "muscle" in proc.stdout and "DOF-steps/s" in proc.stdout
    h5 = out / "small.h5"
    with h5py.File(h5) as f:
        assert f.attrs["complete"] and f.attrs["backend"] == "cpu"
        assert "cryofield_version" in f.attrs and "device" in f.attrs
        n = f["mesh/points"].shape[0]
        times = f["snapshots/time"][()]
        np.testing.assert_allclose(times, [0, 4, 6, 8, 12])  # every 4 s and every phase end
        T = f["snapshots/temperature/000004"][()]
        assert T.shape == (n,) and T.min() == pytest.approx(-70.0)
        assert f["snapshots/liquid_fraction/000004"].shape == (n,)
        assert f["fields/min_temperature"][()].min() == pytest.approx(-70.0)
        assert f["fields/time_below_m20C"][()].max() > 0
        below20, below40 = f["fields/time_below_m20C"][()], f["fields/time_below_m40C"][()]
        assert np.all(below40 <= below20 + 1e-12) and below20.max() <= 12.0 + 1e-9
        assert below40.max() >= 10.0 - 1e-9  # the probe surface is at -70 °C for the 10 s of freezing
        assert f["metrics/volume_below"].shape == (13, 3, 1)
        vol = f["metrics/volume_below"][()]
        assert np.all(vol[:, 0] >= vol[:, 1]) and np.all(vol[:, 1] >= vol[:, 2])  # -1 °C ice contains -20 °C
        assert f["metrics/probe_temperature"][6, 0] == pytest.approx(-70.0)
        assert "kind: freeze" in f["case"][()].decode() and "block.msh" in f["case_source"][()].decode()
        assert f["timings"].attrs["operator_applications"] > 0
    with meshio.xdmf.TimeSeriesReader(out / "small.xdmf") as reader:
        points, cells = reader.read_points_cells()
        assert len(points) == n and cells[0].type == "tetra"
        t, point_data, _ = reader.read_data(4)
        assert t == pytest.approx(12.0)
        np.testing.assert_allclose(point_data["temperature"], T)
        assert set(point_data) >= {"temperature", "liquid_fraction", "min_temperature", "time_below_m20C"}
    summary = json.loads((out / "small.json").read_text())
    assert summary["regions"]["muscle"]["min_temperature_C"] == pytest.approx(-70.0)
    assert summary["regions"]["muscle"]["max_volume_below_mm3"]["-1"] > 0
    assert summary["throughput"]["dof_steps_per_s"] > 0
    assert not list(out.glob(".*partial"))


def test_validate_and_info(tmp_path, capsys):
    case = make_case(tmp_path)
    assert main(["validate", str(case)]) == 0
    assert "valid" in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "backend cpu: available" in out and "backend cuda" in out


def degenerate_mesh():
    m = slab((8.0, 4.0, 4.0), (8, 4, 4), 1e-3)
    a, b, c, _ = m.tets[10]
    m.points = np.vstack([m.points, (m.points[a] + m.points[b]) / 2])  # a fourth node on the edge a-b
    m.tets[10] = [a, b, c, len(m.points) - 1]
    return m


BAD = {
    "bad_yaml": (GOOD_CASE.replace("units: mm", "units: [mm"), None, "malformed YAML"),
    "unknown_key": (GOOD_CASE.replace("units: mm", "units: mm\n  colour: red"), None, "mesh.colour: unknown key"),
    "wrong_type": (GOOD_CASE.replace("duration: 6,", "duration: six,"), None, "protocol.0.duration"),
    "mm_mesh_declared_m": (GOOD_CASE.replace("units: mm", "units: m"), slab((80.0, 40, 40), (4, 2, 2), 1.0),
                           "mesh.units"),
    "degenerate_element": (GOOD_CASE, degenerate_mesh(), "degenerate"),
    "missing_region": (GOOD_CASE.replace("muscle: {library: muscle}", "muscle: {library: muscle}\n  fat: "
                                         "{library: fat}"), None, "tissues.fat: no region named 'fat'"),
    "missing_probe_tag": (GOOD_CASE.replace("surface: probe}", "surface: tip_surface}"), None,
                          "probes.0.surface: no surface named 'tip_surface'"),
    "negative_duration": (GOOD_CASE.replace("duration: 2}", "duration: -2}"), None, "protocol.1.duration"),
    "unknown_tissue": (GOOD_CASE.replace("library: muscle", "library: muscel"), None, "unknown tissue 'muscel'"),
    "conductivity_units": (GOOD_CASE.replace("{library: muscle}", "{library: muscle, conductivity: 490}"), None,
                           "tissues.muscle.conductivity"),
    "unstable_settings": (GOOD_CASE + "solver: {stages: 2, max_dt: 5}\n", None, "unstable settings"),
    "missing_tag_in_mesh": (GOOD_CASE.replace("far: 2,", "far: 9,"), None, "mesh.surfaces.far"),
    "solidus_above_liquidus": (GOOD_CASE.replace("{library: muscle}", "{library: muscle, solidus: 0}"), None,
                               "solidus"),
    "warm_freeze": (GOOD_CASE.replace("temperature: -70}", "temperature: 5}"), None, "below 0 °C"),
    "missing_mesh_file": (GOOD_CASE.replace("block.msh", "nothere.msh"), None, "mesh file not found"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_exits_2_with_message_and_no_output(tmp_path, capsys, name):
    text, mesh, message = BAD[name]
    case = make_case(tmp_path, text, mesh)
    out = tmp_path / "out"
    code = main(["run", str(case), "-o", str(out), "--backend", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err, err
    assert "case.yaml" in err or "block.msh" in err
    assert not out.exists()


def test_unwritable_output_dir(tmp_path, capsys):
    case = make_case(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert main(["run", str(case), "-o", str(blocker / "out"), "--no-progress"]) == 2
    assert "not writable" in capsys.readouterr().err
    assert not (blocker.parent / "out").exists()


def test_cuda_without_gpu_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("cryofield.backends.cuda_status", lambda: (False, "no CUDA GPU or driver found"))
    case = make_case(tmp_path)
    assert main(["run", str(case), "-o", str(tmp_path / "o"), "--backend", "cuda", "--no-progress"]) == 2
    assert "cuda backend cannot run here" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
