"""Bad meshes and output paths: each is exit 2 with one line naming the file and key, no traceback, no output.

(The case-file classes, result-set names, YAML and resource limits are in ``test_integrity.py``.)
"""

from __future__ import annotations

import meshio
import numpy as np
import pytest

from cryofield.cli import main
from cryofield.mesh import write_mesh
from cryofield.mesh.generators import slab

CASE = """
mesh: {{file: {mesh}, units: mm, regions: {{tissue: 1}}, surfaces: {{{surfaces}}}}}
tissues: {{tissue: {{library: muscle}}}}
probes: [{{name: p, surface: {probe}}}]
protocol: [{{kind: freeze, duration: 2}}]
boundaries: [{{surface: xmax, type: fixed, temperature: 37}}]
"""
SURFACES = "xmin: 1, xmax: 2"


def good_mesh(tmp_path) -> meshio.Mesh:
    write_mesh(slab((4.0, 4.0, 4.0), (2, 2, 2), 1e-3), tmp_path / "good.msh", units="mm")
    return meshio.read(tmp_path / "good.msh")


def tetra(raw: meshio.Mesh) -> np.ndarray:
    return next(c.data for c in raw.cells if c.type == "tetra")


def with_nan(raw):
    raw.points[0, 0] = np.nan


def with_duplicate_node(raw):
    raw.points = np.vstack([raw.points, raw.points[:1]])
    tetra(raw)[0, 0] = len(raw.points) - 1


def with_node_out_of_range(raw):
    tetra(raw)[0, 0] = 10**6


def without_tetrahedra(raw):
    keep = [i for i, c in enumerate(raw.cells) if c.type != "tetra"]
    raw.cells = [raw.cells[i] for i in keep]
    raw.cell_data = {k: [v[i] for i in keep] for k, v in raw.cell_data.items()}


MESHES = {
    "non-finite coordinates": (with_nan, "non-finite coordinates"),
    "duplicate nodes": (with_duplicate_node, "duplicate node(s)"),
    "node index out of range": (with_node_out_of_range, "out of bounds"),
    "no tetrahedra": (without_tetrahedra, "no tetrahedra"),
}


def expect_refusal(tmp_path, capsys, text: str, message: str, key: str | None = None) -> None:
    (tmp_path / "case.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "case.yaml"), "-o", str(out), "--no-progress", "--no-render"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in err and (key is None or key in err), err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("kind", list(MESHES))
def test_a_broken_mesh_file_is_refused(tmp_path, capsys, kind):
    damage, message = MESHES[kind]
    raw = good_mesh(tmp_path)
    damage(raw)
    meshio.write(tmp_path / "bad.msh", raw, file_format="gmsh22", binary=False)
    expect_refusal(tmp_path, capsys, CASE.format(mesh="bad.msh", surfaces=SURFACES, probe="xmin"), message, "bad.msh")


def test_a_garbage_mesh_file_is_refused(tmp_path, capsys):
    (tmp_path / "bad.msh").write_bytes(b"\x00\x01garbage" * 50)
    expect_refusal(tmp_path, capsys, CASE.format(mesh="bad.msh", surfaces=SURFACES, probe="xmin"),
                   "cannot read mesh", "bad.msh")


def test_a_volume_tag_given_as_a_surface_names_the_dimension(tmp_path, capsys):
    good_mesh(tmp_path)
    expect_refusal(tmp_path, capsys, CASE.format(mesh="good.msh", surfaces="xmin: 1, xmax: 2, probe: 7",
                                                 probe="probe"), "not found among the mesh's triangles",
                   "mesh.surfaces.probe")


def test_an_interior_surface_given_as_a_probe_is_refused(tmp_path, capsys):
    raw = good_mesh(tmp_path)
    tets = tetra(raw)
    faces = np.sort(np.concatenate([tets[:, [1, 2, 3]], tets[:, [0, 3, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 1]]]),
                    axis=1)
    keys, counts = np.unique(faces, axis=0, return_counts=True)
    shared = keys[counts == 2][:3]  # faces shared by two tetrahedra: inside the block
    assert len(shared)
    raw.cells.append(meshio.CellBlock("triangle", shared))
    for name in raw.cell_data:
        raw.cell_data[name].append(np.full(len(shared), 9, dtype=raw.cell_data[name][0].dtype))
    meshio.write(tmp_path / "inner.msh", raw, file_format="gmsh22", binary=False)
    expect_refusal(tmp_path, capsys, CASE.format(mesh="inner.msh", surfaces="xmin: 1, xmax: 2, inner: 9",
                                                 probe="inner"), "inside the mesh, between two tetrahedra",
                   "probes.0.surface")


def test_an_output_path_that_is_a_file_is_refused(tmp_path, capsys):
    good_mesh(tmp_path)
    (tmp_path / "case.yaml").write_text(CASE.format(mesh="good.msh", surfaces=SURFACES, probe="xmin"))
    (tmp_path / "taken").write_text("a file")
    assert main(["run", str(tmp_path / "case.yaml"), "-o", str(tmp_path / "taken"), "--no-render"]) == 2
    assert "output directory" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "a file"


FIBRE_CASE = """
mesh: {generate: {kind: slab, size: [4, 4, 4], cells: [2, 2, 2]}, units: mm}
tissues: {tissue: {library: muscle}}
probes: [{name: p, surface: zmin}]
protocol: [{kind: freeze, duration: 1, temperature: -50}]
clinical: {CLINICAL}
"""


@pytest.mark.parametrize("clinical, key", [
    ("{complete_block_fraction: 0}", "clinical.complete_block_fraction"),
    ("{complete_block_fraction: 1.5}", "clinical.complete_block_fraction"),
    ("{fibre_levels_c: [-5, -20, -10]}", "clinical.fibre_levels_c"),
    ("{fibre_levels_c: [-20, -20]}", "clinical.fibre_levels_c"),
    ("{fibres: 0}", "clinical.fibres"),
    ("{injury_c: 5}", "clinical.injury_c"),
    ("{fibre_min_length_mm: -1}", "clinical.fibre_min_length_mm"),
])
def test_bad_fibre_reading_settings_name_their_key(tmp_path, capsys, clinical, key):
    """The fibre reading's settings (docs/physics.md §4): exit 2, the case file and the key named."""
    case = tmp_path / "case.yaml"
    case.write_text(FIBRE_CASE.replace("{CLINICAL}", clinical))
    assert main(["validate", str(case)]) == 2
    err = capsys.readouterr().err
    assert str(case) in err and key in err, err
