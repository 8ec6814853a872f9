"""The axisymmetric mode: r-z P1 triangles with r-weighted coefficients through the same kernels and outputs.

Checked three ways: the geometry of revolution exactly (volumes, lumped masses, areas, the volume inside
an isotherm), steady radial conduction against the logarithmic closed form at second order, and the
transient ice ball of one needle and of two coaxial needles against the 3-D (quarter) solver on the same
problem. The CUDA kernels run the triangle branch too, against the CPU at 1e-9 K (under the simulator
without a GPU).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cryofield.config.case import parse_case
from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.fem.metrics import corner_radii, volumes_below
from cryofield.mesh import Mesh
from cryofield.mesh.checks import check_mesh
from cryofield.run.driver import drive
from cryofield.run.observers.iceball import IceBallRecorder
from cryofield.run.observers.metrics import MetricsRecorder
from cryofield.run.plan import prepare

CASE = """
name: NAME
mesh:
  generate:
    kind: probe_in_medium
    shape: cylinder
    radius: 8
    height: 16
    symmetry: SYMMETRY
    needles: NEEDLES
    size_at_probe: SAP
    size_far: SF
    grading: 6
  units: mm
tissues: {medium: {library: agar}}
probes: PROBES
protocol: [{kind: freeze, duration: 20, temperature: {table: [[0, 0], [5, -120], [20, -150]]}}]
initial: {type: uniform, temperature: 22}
boundaries: [{surface: side, type: fixed, temperature: 22}]
outputs: {snapshot_interval: 10, metrics_interval: 5, isotherms: [0, -20]}
solver: {max_dt: 1.0}
"""
ONE = ("[{name: probe, diameter: 1.5, active_length: 6, tip: 5}]", "[{name: probe, surface: probe_active}]")
COAXIAL = ("[{name: upper, diameter: 1.5, active_length: 3, tip: 10}, "
           "{name: lower, diameter: 1.5, active_length: 3, tip: 6, entry: bottom}]",
           "[{name: upper, surface: upper_active}, {name: lower, surface: lower_active}]")


def case_text(symmetry: str, needles: tuple[str, str], size_at_probe: float, size_far: float,
              name: str = "medium") -> str:
    return (CASE.replace("SYMMETRY", symmetry).replace("NEEDLES", needles[0]).replace("PROBES", needles[1])
            .replace("SAP", str(size_at_probe)).replace("SF", str(size_far)).replace("NAME", name))


def annulus(r0: float, r1: float, height: float, nr: int, nz: int) -> Mesh:
    """A structured r-z mesh of the ring r0 <= r <= r1, 0 <= z <= height (m): surfaces inner, outer, bottom, top."""
    r, z = np.meshgrid(np.linspace(r0, r1, nr + 1), np.linspace(0.0, height, nz + 1), indexing="ij")
    points = np.stack([r.ravel(), np.zeros(r.size), z.ravel()], axis=1)
    node = np.arange(r.size).reshape(r.shape)
    a, b, c, d = node[:-1, :-1].ravel(), node[1:, :-1].ravel(), node[1:, 1:].ravel(), node[:-1, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    sides = {"inner": np.stack([node[0, :-1], node[0, 1:]], 1), "outer": np.stack([node[-1, :-1], node[-1, 1:]], 1),
             "bottom": np.stack([node[:-1, 0], node[1:, 0]], 1), "top": np.stack([node[:-1, -1], node[1:, -1]], 1)}
    facets = np.concatenate(list(sides.values()))
    tags = np.repeat(np.arange(1, 5), [len(s) for s in sides.values()])
    return Mesh(points, tris, np.ones(len(tris), np.int64), facets, tags, {"ring": 1},
                {name: i for i, name in enumerate(sides, start=1)}, source="annulus")


def test_the_ring_s_volume_mass_areas_and_isotherm_volumes_are_those_of_the_solid():
    r0, r1, h = 1e-3, 5e-3, 4e-3
    mesh = check_mesh(annulus(r0, r1, h, 7, 3), "m")
    volume = np.pi * (r1**2 - r0**2) * h
    assert fem.cell_volumes(mesh.points, mesh.tets).sum() == pytest.approx(volume, rel=1e-12)
    assert fem.lumped_volumes(mesh.points, mesh.tets, mesh.n_nodes).sum() == pytest.approx(volume, rel=1e-12)
    for name, area in (("inner", 2 * np.pi * r0 * h), ("outer", 2 * np.pi * r1 * h),
                       ("top", np.pi * (r1**2 - r0**2))):
        facets = mesh.surface_facets(name)
        assert fem.facet_areas(mesh.points, facets).sum() == pytest.approx(area, rel=1e-12)
        assert fem.lumped_facet_areas(mesh.points, facets, mesh.n_nodes).sum() == pytest.approx(area, rel=1e-12)
    # T = r is linear, so P1 holds it exactly and the volume where T <= c is exactly pi (c² - r0²) h
    T, c = mesh.points[:, 0] * 1e3, 2.7
    below = volumes_below(T, mesh.tets, fem.cell_volumes(mesh.points, mesh.tets), np.zeros(mesh.n_tets, int), 1,
                          [c], corner_radii(mesh.points, mesh.tets))
    assert below[0, 0] == pytest.approx(np.pi * ((c * 1e-3) ** 2 - r0**2) * h, rel=1e-12)


def test_steady_radial_conduction_converges_to_the_logarithm_at_second_order():
    r0, r1, t0, t1 = 1e-3, 6e-3, -50.0, 37.0
    exact = lambda r: t0 + (t1 - t0) * np.log(r / r0) / np.log(r1 / r0)  # noqa: E731
    sizes, errors = [], []
    for n in (4, 8, 16, 32):
        mesh = annulus(r0, r1, 2e-3, n, max(n // 2, 1))
        K = fem.stiffness_matrix(mesh.tets, fem.edge_coefficients(mesh.points, mesh.tets), np.ones(mesh.n_tets),
                                 mesh.n_nodes).tocsr()
        r = mesh.points[:, 0]
        fixed = np.isclose(r, r0) | np.isclose(r, r1)
        T = np.where(np.isclose(r, r0), t0, t1)
        free = ~fixed
        rhs = -K[free][:, fixed] @ T[fixed]
        from scipy.sparse.linalg import spsolve

        T[free] = spsolve(K[free][:, free].tocsc(), rhs)
        sizes.append((r1 - r0) / n)
        errors.append(np.abs(T - exact(r)).max())
    order = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert errors[-1] < 0.05 and 1.8 < order < 2.3, (errors, order)


def ice_ball(symmetry: str, needles: tuple[str, str], size_at_probe: float, size_far: float) -> dict:
    """Final width, length, reach beyond the tip of each probe (mm) and frozen volumes (mm³, whole solid)."""
    plan = prepare(parse_case(case_text(symmetry, needles, size_at_probe, size_far)))
    shape, metrics = IceBallRecorder(plan.problem, [0.0, -20.0]), MetricsRecorder(plan.problem, [0.0, -20.0])
    drive(plan.timeline, plan.stepper("cpu"), [shape, metrics])
    whole = 4.0 if symmetry == "quarter" else 1.0
    out = {"volume": metrics.arrays()["volume_below"][-1, :, 0] * 1e9 * whole, "nodes": plan.problem.n_nodes}
    for name, series in shape.arrays().items():
        out[name] = {k: series[f"{k}_mm"][-1] for k in ("width", "length", "beyond_tip")}
    return out


@pytest.mark.parametrize("needles", [ONE, COAXIAL], ids=["one needle", "two coaxial needles"])
def test_the_axisymmetric_ice_ball_matches_the_3d_solver(needles):
    """The same freeze in 3-D (quarter) and axisymmetric: ice-ball shape within 3 %, 0 °C volume within 4 %.

    The r-z mesh is finer (it costs a fraction of the 3-D one); the remaining difference is the 3-D mesh's
    discretisation error (see the axisymmetric figures in benchmarks/README.md).
    """
    solid, plane = ice_ball("quarter", needles, 0.15, 1.0), ice_ball("axisymmetric", needles, 0.05, 0.5)
    assert plane["nodes"] < solid["nodes"]
    for probe in [p for p in solid if p not in ("volume", "nodes")]:
        for key in ("width", "length"):
            assert plane[probe][key] == pytest.approx(solid[probe][key], rel=0.03), (probe, key)
        assert plane[probe]["beyond_tip"] == pytest.approx(solid[probe]["beyond_tip"], abs=0.15)
    assert plane["volume"][0] == pytest.approx(solid["volume"][0], rel=0.04)


def test_an_axisymmetric_run_publishes_a_triangle_result_and_its_section(tmp_path):
    from cryofield.io import read_result
    from cryofield.run.runner import run_case

    report = run_case(parse_case(case_text("axisymmetric", ONE, 0.2, 1.5, "ring")), tmp_path, pictures=True,
                      progress=False)
    result = read_result(report.paths["h5"])
    assert result.tets.shape[1] == 3 and np.all(result.surfaces["probe_active"].shape[1] == 2)
    assert 'TopologyType="Triangle"' in report.paths["xdmf"].read_text()
    summary = json.loads(report.paths["json"].read_text())
    assert summary["axisymmetric"] is True and summary["iceball_mm"]["probe"]["0"]["width"] > 1.5
    assert "slice" in report.pictures and "timeseries" in report.pictures and not report.picture_problems


@pytest.mark.parametrize("change, key", [
    ("shape: cylinder\n    radius: 8", "shape: block\n    size: [16, 16]"),
    ("[{name: probe, diameter: 1.5, active_length: 6, tip: 5}]",
     "[{name: probe, diameter: 1.5, active_length: 6, tip: 5, position: [1, 0]}]"),
    ("[{name: probe, diameter: 1.5, active_length: 6, tip: 5}]",
     "[{name: probe, diameter: 1.5, active_length: 6, tip: 5}, "
     "{name: other, diameter: 1.5, active_length: 2, tip: 7, entry: bottom}]"),
])
def test_impossible_axisymmetric_media_are_refused(change, key):
    text = case_text("axisymmetric", ONE, 0.2, 1.5).replace(change, key)
    with pytest.raises(InputError) as err:
        parse_case(text)
    assert "mesh.generate" in str(err.value)


def test_a_mesh_off_the_half_plane_is_refused():
    mesh = annulus(1e-3, 5e-3, 4e-3, 3, 2)
    mesh.points[0, 1] = 1e-4
    with pytest.raises(InputError, match="off the r-z half plane"):
        check_mesh(mesh, "m")


TINY = (0.6, 2.0)  # a coarse r-z mesh: the simulator runs a Python thread per item


def backend_differences() -> dict:
    """The tiny axisymmetric freeze on the CPU and on CUDA: the largest differences of every field (K)."""
    from cryofield.io import read_result
    from cryofield.run.runner import run_case

    case = parse_case(case_text("axisymmetric", ONE, *TINY, "tiny").replace("duration: 20", "duration: 2"))
    with tempfile.TemporaryDirectory() as tmp:  # snapshots are read from the files: compare before they go
        results = {b: read_result(run_case(case, Path(tmp) / b, backend=b, progress=False).paths["h5"])
                   for b in ("cpu", "cuda")}
        cpu, gpu = results["cpu"], results["cuda"]
        n = len(cpu.snapshot_times)
        return {"nodes": int(len(cpu.points)), "snapshots": n,
                "temperature_K": max(float(np.abs(cpu.snapshot(k) - gpu.snapshot(k)).max()) for k in range(n)),
                "fields": max(float(np.abs(cpu.fields[k] - gpu.fields[k]).max()) for k in cpu.fields),
                "min_C": float(cpu.fields["min_temperature"].min())}


def check_backends(record: dict) -> None:
    assert record["snapshots"] >= 2 and record["min_C"] < -20.0
    assert record["temperature_K"] <= 1e-9 and record["fields"] <= 1e-9, record


@pytest.mark.device
def test_the_triangle_kernels_agree_on_gpu():
    check_backends(backend_differences())


@pytest.mark.nodevice
def test_the_triangle_kernels_agree_under_simulator(under_simulator):
    check_backends(under_simulator("test_axisymmetric", "backend_differences()"))


def test_the_validation_cases_are_valid_and_their_open_inputs_vary_as_the_suite_says():
    import yaml

    from benchmarks.validation import CASES, EXPERIMENTS, variant

    names = {e.case for e in EXPERIMENTS} | {e.reference for e in EXPERIMENTS if e.reference}
    assert len({e.source.split(",")[0].split(" (")[0] for e in EXPERIMENTS}) >= 2
    for name in names:
        assert parse_case((CASES / f"{name}.yaml").read_text()).mesh.generate.symmetry == "axisymmetric"
    text = variant("littrup2009_2.4mm", "quarter", (0.3, 3.0), baseline=39.0, probe_c=-100.0)
    case, data = parse_case(text), yaml.safe_load(text)
    assert case.mesh.generate.symmetry == "quarter" and case.mesh.generate.size_at_probe == 0.3
    assert data["initial"]["temperature"] == 39.0 and data["protocol"][0]["temperature"]["table"][0][1] == 39.0
    assert data["protocol"][0]["temperature"]["table"][-1][1] == -100.0
    assert {bc["temperature"] for bc in data["boundaries"] if bc["type"] == "fixed"} == {39.0}
