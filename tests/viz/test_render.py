"""Pictures of results: every image exists at the requested size, is not blank, shows the isotherm colours
where the solution is frozen; the plots carry the expected series; headless failures are clear."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cryofield.cli import main
from cryofield.config.case import load_case
from cryofield.errors import InputError
from cryofield.mesh import write_mesh
from cryofield.mesh.checks import check_mesh
from cryofield.mesh.generators import sphere_octant_shell
from cryofield.model.roles import ROLES
from cryofield.run import plan as run_plan
from cryofield.run import runner
from cryofield.viz import headless
from cryofield.viz.data import VizResult
from cryofield.viz.geometry import nerve_centrelines, ultrasound_plane, unique_rows
from cryofield.viz.plots import FIBRES_AXIS, ICEBALL_PANELS, PANELS, nerve_figure, timeseries_figure
from cryofield.viz.roles import STYLES, isotherm_colours, level_label
from cryofield.viz.slice import SliceView

SIZE = (480, 360)
NERVE_Y, NERVE_Z, NERVE_R = 1.1e-3, 0.8e-3, 0.4e-3  # the nerve runs along x, 1.36 mm from the probe's centre

SHELL_CASE = """
name: shell
mesh: {file: shell.msh, units: mm, regions: {skin: 1, muscle: 2, nerve: 3},
       surfaces: {probe: 1, outer: 2, symmetry: 3}}
tissues:
  skin: {library: skin}
  muscle: {library: muscle}
  nerve: {library: nerve}
probes: [{name: tip, surface: probe}]
protocol:
  - {kind: freeze, duration: 20, temperature: -80}
  - {kind: passive_thaw, duration: 10}
  - {kind: freeze, duration: 20, temperature: -80}
  - {kind: passive_thaw, duration: 10}
initial: {type: basal}
boundaries:
  - {surface: outer, type: convection, heat_transfer_coefficient: 8, temperature: 22}
outputs: {snapshot_interval: 10, metrics_interval: 2}
"""


def shell_mesh():
    """An octant of tissue around a 1 mm ball probe: skin outside 7 mm, a nerve along x, muscle elsewhere;
    the metadata give the nerve's centreline and a needle pose, as the phantom's do."""
    mesh = sphere_octant_shell(1.0, 8.0, 0.35, 1.0, 1e-3)
    centroid = mesh.points[mesh.tets].mean(axis=1)
    radius = np.linalg.norm(centroid, axis=1)
    tags = np.full(len(centroid), 2)
    tags[radius > 7e-3] = 1
    tags[(np.hypot(centroid[:, 1] - NERVE_Y, centroid[:, 2] - NERVE_Z) < NERVE_R) & (radius <= 7e-3)] = 3
    mesh.tet_tags = tags
    mesh.regions = {"skin": 1, "muscle": 2, "nerve": 3}
    mesh.surfaces = {"probe": 1, "outer": 2, "symmetry": 3}  # no surface named skin: the skin region says where
    axis = np.array([1.0, 1.0, 1.0]) / np.sqrt(3)
    mesh.metadata = {"probes": {"tip": {"tip": (axis * 1e-3).tolist(), "axis": axis.tolist(), "diameter": 0.4e-3,
                                        "active_length": 0.0}},
                     "centerlines": {"nerve": [[0.0, NERVE_Y, NERVE_Z], [6.5e-3, NERVE_Y, NERVE_Z]]}}
    return mesh


@pytest.fixture(scope="module")
def shell_result(tmp_path_factory) -> Path:
    """The shell case run through the API, the mesh metadata carried as a generator would carry them."""
    work = tmp_path_factory.mktemp("shell")
    mesh = shell_mesh()
    write_mesh(mesh, work / "shell.msh", units="mm")
    (work / "case.yaml").write_text(SHELL_CASE)
    case = load_case(work / "case.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_plan, "mesh_of", lambda c, **kw: check_mesh(shell_mesh(), "m"))
        report = runner.run_case(case, work / "out", backend="cpu", progress=False)
    moved = tmp_path_factory.mktemp("moved") / "shell.h5"  # results render without the case or the mesh file
    shutil.copy(report.paths["h5"], moved)
    shutil.rmtree(work)
    return moved


@pytest.fixture(scope="module")
def vr(shell_result) -> VizResult:
    return VizResult.open(shell_result)


def rgb(colour) -> np.ndarray:
    return np.round(np.asarray(colour) * 255)


def sample_temperature(vr: VizResult, points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Temperature at points by VTK's own probe filter (independent of the slice's cut), NaN outside."""
    import pyvista as pv

    grid = pv.UnstructuredGrid({pv.CellType.TETRA: vr.tets}, vr.points)
    grid.point_data["T"] = T
    probed = pv.PolyData(points).sample(grid)
    return np.where(probed.point_data["vtkValidPointMask"].astype(bool), probed.point_data["T"], np.nan)


def assert_picture(path: Path, size=SIZE) -> np.ndarray:
    assert path.is_file(), path
    image = np.asarray(Image.open(path).convert("RGB"))
    assert (image.shape[1], image.shape[0]) == size
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50, f"{path} looks blank"
    return image


def test_render_command_writes_every_picture(shell_result, tmp_path, capsys):
    out = tmp_path / "pics"
    assert main(["render", str(shell_result), "-o", str(out), "--size", f"{SIZE[0]}x{SIZE[1]}"]) == 0
    printed = capsys.readouterr().out
    for name in ("shell_3d.png", "shell_slice.png", "shell_timeseries.png"):
        assert_picture(out / name)
        assert name in printed
    assert main(["render", str(shell_result), "-o", str(out), "--time", "20", "--size", "400x300"]) == 0
    assert_picture(out / "shell_3d_t20s.png", (400, 300))
    assert_picture(out / "shell_slice_t20s.png", (400, 300))


def test_plane_contains_probe_axis_and_nerve_with_skin_up(vr):
    plane = ultrasound_plane(vr)
    axis = np.ones(3) / np.sqrt(3)
    tip = axis * 1e-3
    nearest_nerve_point = np.array([tip[0], NERVE_Y, NERVE_Z])  # the nerve runs along x
    assert abs(plane.normal @ axis) < 1e-9
    assert abs(plane.normal @ (nearest_nerve_point - tip)) < 1e-9
    np.testing.assert_allclose(plane.origin, tip)
    assert plane.e_v @ axis > 0.5  # the skin (outwards along the needle here) is up
    assert "probe 'tip'" in plane.reason and "nearest point of nerve" in plane.reason


def clear_of_drawn_lines(points: np.ndarray) -> np.ndarray:
    """Points away from what the slice draws over the ice: the needle, the probe's outline, the nerve's outline
    (the nerve is the tetrahedra whose centroid is within NERVE_R of its axis, so its outline wanders)."""
    axis = np.ones(3) / np.sqrt(3)
    along = points @ axis
    off_needle = np.linalg.norm(points - np.outer(along, axis), axis=1) > 0.3e-3
    to_nerve = np.hypot(points[:, 1] - NERVE_Y, points[:, 2] - NERVE_Z)
    return (off_needle | (along < 1e-3)) & (np.linalg.norm(points, axis=1) > 1.2e-3) & (to_nerve > NERVE_R + 0.5e-3)


def test_slice_shows_isotherm_colours_where_the_solution_is_frozen(vr, tmp_path):
    view = SliceView(vr, SIZE)
    index = vr.default_snapshot()
    path = tmp_path / "slice.png"
    view.show(index).savefig(path, dpi=100)
    image = assert_picture(path)
    u, v = np.meshgrid(np.linspace(-3e-3, 6e-3, 40), np.linspace(-3e-3, 6e-3, 40))
    points = view.plane.to_space(np.column_stack([u.ravel(), v.ravel()]))
    T = sample_temperature(vr, points, vr.temperature(index))
    colours = isotherm_colours(vr.levels)
    levels = np.array(vr.levels)  # warmest first
    margin = np.min(np.abs(T[:, None] - levels[None, :]), axis=1) > 2.0  # clear of the contour lines
    pixels = view.to_pixel(points)
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < SIZE[0]) & (pixels[:, 1] >= 0) & (pixels[:, 1] < SIZE[1])
    chosen = np.flatnonzero(~np.isnan(T) & margin & inside & clear_of_drawn_lines(points))
    ice_hits, ice_total, warm_hits, warm_total = 0, 0, 0, 0
    for k in chosen:
        got = image[int(pixels[k, 1]), int(pixels[k, 0])].astype(float)
        is_ice_colour = [np.abs(got - rgb(colours[level])).max() <= 8 for level in levels]
        if T[k] <= levels[0]:
            band = levels[levels >= T[k]].min()  # the coldest level at or above T
            ice_total += 1
            ice_hits += is_ice_colour[list(levels).index(band)]
        else:
            warm_total += 1
            warm_hits += not any(is_ice_colour)
    assert ice_total >= 15 and warm_total >= 15
    assert ice_hits >= 0.9 * ice_total, (ice_hits, ice_total)
    assert warm_hits >= 0.9 * warm_total, (warm_hits, warm_total)


def bluish(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    cols = np.clip(pixels[:, 0].astype(int), 0, image.shape[1] - 1)
    rows = np.clip(pixels[:, 1].astype(int), 0, image.shape[0] - 1)
    colour = image[rows, cols].astype(int)
    return colour[:, 2] - colour[:, :2].max(axis=1) > 20  # blue above red and green: only the ice is


def test_3d_view_shows_ice_colours_at_frozen_points(vr, tmp_path):
    from cryofield.viz.scene import Scene3D, scene_figure

    scene = Scene3D(vr, SIZE)
    try:
        index = vr.default_snapshot()
        T = vr.temperature(index)
        nerve = vr.region_nodes[vr.regions_with("nerve")[0]]
        probe = np.unique(vr.probe_surfaces["tip"])
        frozen = np.setdiff1d(np.flatnonzero(T <= -20.0), np.concatenate([nerve, probe]))
        assert len(frozen) >= 20
        path = tmp_path / "3d.png"
        scene_figure(scene, index).savefig(path, dpi=100)
        end = assert_picture(path)
        pixels = scene.world_to_pixel(vr.points[frozen])
        scene_figure(scene, 0).savefig(tmp_path / "start.png", dpi=100)
        start = assert_picture(tmp_path / "start.png")
    finally:
        scene.close()
    # the ice is seen where the solution says it is (but for what the opaque nerve hides), not before the freeze
    assert bluish(end, pixels).mean() >= 0.6
    assert bluish(start, pixels).mean() <= 0.05


def test_plots_carry_the_expected_series(vr):
    fig = timeseries_figure(vr, SIZE)
    panels = {ax.get_title(loc="left"): ax for ax in fig.axes if ax.get_title(loc="left")}
    assert set(panels) == set(PANELS) | set(ICEBALL_PANELS)  # the phantom's needle has a pose: its ice ball
    shape = vr.result.iceball["tip"]
    widths = [ln for ln in panels[ICEBALL_PANELS[0]].get_lines() if ln.get_linestyle() == "-"]
    np.testing.assert_allclose(widths[0].get_ydata(), shape["width_mm"][:, 0])
    assert shape["width_mm"][-1].max() > 0 and shape["length_mm"][-1].max() > shape["width_mm"][-1].max() / 3
    metrics = vr.result.metrics
    t = metrics["time"]

    def line(panel: str, label: str):
        lines = {ln.get_label(): ln for ln in panels[panel].get_lines()}
        assert label in lines, (panel, list(lines))
        return lines[label]

    for k, level in enumerate(vr.levels):
        ice = line("Ice volume", level_label(level))
        np.testing.assert_allclose(ice.get_xdata(), t)
        np.testing.assert_allclose(ice.get_ydata(), metrics["volume_below"][:, k, :].sum(axis=1) * 1e9)
    names = vr.result.region_names
    nerve = line("Nerve minimum temperature", "nerve")
    np.testing.assert_allclose(nerve.get_ydata(), metrics["region_min_temperature"][:, names.index("nerve")])
    skin = line("Skin (and artery) minimum temperature", "skin")
    np.testing.assert_allclose(skin.get_ydata(), metrics["region_min_temperature"][:, names.index("skin")])
    # the safety sentence of the summary, word for word (print, JSON and picture say the same)
    assert f"skin: {vr.clinical['skin']['reading']}" in "\n".join(txt.get_text() for txt in fig.texts)
    np.testing.assert_allclose(line("Probe temperature", "tip").get_ydata(), metrics["probe_temperature"][:, 0])
    assert {ln.get_label() for ln in panels["Minimum temperature by region"].get_lines()} == set(names)
    # the nerve's frozen lengths, against a brute-force scan along it: every 10 µm along x, cut the nerve's
    # tetrahedra with the plane across it and see whether any or all of the section is at or below -20 °C
    nerve_tets = vr.tets[vr.result.region_id == names.index("nerve")]
    edges = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    xa, xb = vr.points[nerve_tets[:, edges[:, 0]], 0], vr.points[nerve_tets[:, edges[:, 1]], 0]  # (K, 6)
    scan = np.arange(0.005e-3, 8e-3, 0.01e-3)[:, None, None]
    cut = (xa - scan) * (xb - scan) < 0  # (X, K, 6): edges the section crosses
    w = np.where(cut, (scan - xa) / np.where(xb != xa, xb - xa, 1.0), 0.0)
    any_part, whole = [], []
    for i in range(len(vr.snapshot_times)):
        T = vr.temperature(i)[nerve_tets]
        ta, tb = T[:, edges[:, 0]], T[:, edges[:, 1]]
        section = ta + w * (tb - ta)
        coldest = np.where(cut, section, np.inf).min(axis=(1, 2))
        warmest = np.where(cut, section, -np.inf).max(axis=(1, 2))
        any_part.append(np.sum(coldest <= -20.0) * 0.01)
        whole.append(np.sum(np.isfinite(warmest) & (warmest <= -20.0)) * 0.01)
    np.testing.assert_allclose(line("Nerve length at ≤ −20 °C", "nerve: any part").get_ydata(), any_part, atol=0.02)
    np.testing.assert_allclose(line("Nerve length at ≤ −20 °C", "nerve: whole cross-section").get_ydata(), whole,
                               atol=0.02)
    np.testing.assert_allclose(line("Nerve length at ≤ −20 °C", "nerve: any part").get_xdata(), vr.snapshot_times)
    assert max(any_part) > 1.0 and max(whole) > 0.1  # the case does freeze a length of the nerve, some wholly
    for ax in panels.values():  # every protocol phase shaded
        assert len(ax.patches) == len(vr.protocol.kinds)


def test_slice_animation_has_every_snapshot(shell_result, tmp_path):
    from cryofield.viz import render_result

    rendered = render_result(shell_result, tmp_path, size=(320, 240), animate="slice", animation="gif")
    gif = rendered.paths["animation"]
    assert gif.name == "shell_slice.gif"
    vr = VizResult.open(shell_result)
    ice = rgb(isotherm_colours(vr.levels)[-1.0])
    with Image.open(gif) as image:
        assert image.size == (320, 240)
        assert image.n_frames == len(vr.snapshot_times)
        ice_pixels = []
        for i in (0, vr.default_snapshot()):
            image.seek(i)
            frame = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
            ice_pixels.append(np.sum(np.abs(frame - ice).max(axis=1) <= 8))
    assert ice_pixels[1] > ice_pixels[0] + 100, ice_pixels  # beyond the legend's patch, ice only at the end


def test_mp4_animation_of_3d_view(shell_result, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from cryofield.viz import render_result

    rendered = render_result(shell_result, tmp_path, size=(320, 240), animate="3d", animation="mp4")
    assert rendered.paths["animation"].suffix == ".mp4" and rendered.paths["animation"].stat().st_size > 1000


def test_mp4_without_imageio_ffmpeg_is_bad_input(shell_result, tmp_path, monkeypatch):
    monkeypatch.setattr("cryofield.viz.animate.has_mp4", lambda: False)
    from cryofield.viz import render_result

    with pytest.raises(InputError, match="imageio-ffmpeg"):
        render_result(shell_result, tmp_path, animate="slice", animation="mp4")


@pytest.mark.parametrize("args, message, code", [
    (["missing.h5"], "result file not found", 2),
    (["{h5}", "--time", "1000"], "outside the run", 2),
    (["{foreign}"], "not a readable, complete cryofield result", 1),
    (["{truncated}"], "not a readable, complete cryofield result", 1),
])
def test_render_bad_input_exits_2_and_a_corrupt_result_1(shell_result, tmp_path, capsys, args, message, code):
    foreign = tmp_path / "foreign.h5"
    foreign.write_bytes(b"not hdf5")
    truncated = tmp_path / "truncated.h5"
    data = Path(shell_result).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    argv = ["render", *[a.format(h5=shell_result, foreign=foreign, truncated=truncated) for a in args], "-o",
            str(tmp_path / "o")]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list((tmp_path / "o").glob("*.png")) if (tmp_path / "o").exists() else True


def test_no_opengl_gives_a_clear_message_and_the_other_pictures(shell_result, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(headless, "_chosen", None)
    monkeypatch.setattr(headless, "_candidates", lambda: ["vtkNoSuchRenderWindow"])
    assert main(["render", str(shell_result), "-o", str(tmp_path), "--size", "320x240"]) == 1
    err = capsys.readouterr().err
    assert "cannot render 3D pictures off screen" in err and "vtkNoSuchRenderWindow" in err
    assert (tmp_path / "shell_slice.png").is_file() and (tmp_path / "shell_timeseries.png").is_file()
    assert not (tmp_path / "shell_3d.png").exists()


SLAB_CASE = """
name: slab
mesh: {file: block.msh, units: mm, regions: {block: 1}, surfaces: {probe: 1, far: 2, skin: 6}}
tissues:
  block: {library: muscle}
probes: [{name: tip, surface: probe}]
protocol:
  - {kind: freeze, duration: 6, temperature: -70}
  - {kind: passive_thaw, duration: 2}
boundaries:
  - {surface: far, type: fixed, temperature: 37}
  - {surface: skin, type: convection}
outputs: {snapshot_interval: 4, metrics_interval: 1}
"""


def slab_case(tmp_path: Path) -> Path:
    from cryofield.mesh.generators import slab

    write_mesh(slab((8.0, 4.0, 4.0), (8, 4, 4), 1e-3), tmp_path / "block.msh", units="mm")
    (tmp_path / "case.yaml").write_text(SLAB_CASE)
    return tmp_path / "case.yaml"


def test_run_draws_pictures_unless_told_not_to(tmp_path, capsys):
    case = slab_case(tmp_path)
    assert main(["run", str(case), "-o", str(tmp_path / "a"), "--no-progress", "--no-render"]) == 0
    assert not list((tmp_path / "a").glob("*.png"))
    assert main(["run", str(case), "-o", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "slab_slice.png" in capsys.readouterr().out
    for name in ("slab_3d.png", "slab_slice.png", "slab_timeseries.png"):
        assert_picture(tmp_path / "b" / name, (1200, 900))


def test_picture_failure_after_a_run_is_a_warning(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr("cryofield.viz.render.timeseries_figure", broken)
    assert main(["run", str(slab_case(tmp_path)), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "warning: no pictures" in err and "the plotting library broke" in err and "cryofield render" in err
    assert VizResult.open(tmp_path / "out" / "slab.h5").result.attrs["complete"]


def test_pictures_read_the_stored_roles_and_centrelines(vr):
    """Roles and centrelines come from the result's role table, not from the case text or names."""
    table = vr.result.roles
    assert vr.roles == [table.roles[name] for name in vr.result.region_names] == ["skin", "muscle", "nerve"]
    assert table.centreline_source == {"nerve": "mesh"}
    given = shell_mesh().metadata["centerlines"]["nerve"]
    np.testing.assert_array_equal(nerve_centrelines(vr)["nerve"], given)
    assert vr.thresholds == table.thresholds
    assert set(STYLES) == set(ROLES)


def test_unique_rows_packed_and_general_agree():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 50, (400, 3))
    rows = np.concatenate([rows, rows[:100, ::-1]])  # the same faces again, nodes in another order
    packed = unique_rows(rows, 50)
    general = unique_rows(rows, 2**40)  # too many nodes to pack three indices into an int64
    for a, b in zip(packed, general):
        np.testing.assert_array_equal(a, b)
    first, inverse, counts = packed
    np.testing.assert_array_equal(np.sort(rows[first[inverse]], axis=1), np.sort(rows, axis=1))
    assert counts.sum() == len(rows) and counts.max() >= 2


def test_a_result_of_the_previous_format_still_reads_with_the_same_clinical_reading(shell_result, vr, tmp_path):
    """Format 3 stores the clinical inputs beside the role table (one source for the summary and the pictures);
    a format-2 file, without them, still reads, its inputs derived from its stored case as they were then."""
    import h5py

    stored = vr.result.clinical_inputs
    assert set(stored.liquidus) == {"skin", "muscle", "nerve"} and stored.targets is None
    old = tmp_path / "old.h5"
    shutil.copy(shell_result, old)
    with h5py.File(old, "r+") as f:
        del f["roles"].attrs["liquidus"], f["roles"].attrs["targets"]
        f.attrs["format_version"] = 2
    previous = VizResult.open(old)
    assert previous.result.clinical_inputs == stored
    assert previous.clinical == vr.clinical and vr.clinical is not None


FIBRE_ARRAYS = ("u_mm", "v_mm", "min_temperature", "coldest_mm", "grade")


def test_fibres_hold_each_nerve_reading_with_consistent_shapes(vr):
    fibres = vr.fibres
    assert set(fibres) == {"nerve"}
    nerve = fibres["nerve"]
    k = len(nerve["u_mm"])
    assert k > 100 and all(nerve[name].shape == (k,) for name in FIBRE_ARRAYS)
    levels = nerve["levels"]
    assert list(levels) == sorted(levels, reverse=True) and vr.thresholds.injury_c in levels
    assert nerve["length_below_mm"].shape == (len(levels), k) and nerve["injury_c"] == vr.thresholds.injury_c
    assert set(np.unique(nerve["grade"])) <= {0, 1, 2, 3}
    time, fraction = nerve["time"], nerve["injured_fraction"]
    assert time.shape == fraction.shape and len(time) >= 2 and np.all(np.diff(time) > 0)
    assert np.all((fraction >= 0) & (fraction <= 1)) and np.all(np.diff(fraction) >= 0)  # injured so far
    summary = nerve["summary"]
    assert summary["verdict"] in {"complete", "partial", "none"} and 0 <= summary["injured_fraction"] <= 1
    assert summary["fibres"] == k


def fibre_section(fig) -> object | None:
    """The cross-section panel of a nerve picture: the axes titled with the fibres' verdict, if any."""
    found = [ax for ax in fig.axes if "of fibres at ≤" in ax.get_title(loc="left")]
    assert len(found) <= 1
    return found[0] if found else None


def test_nerve_picture_shows_the_fibres_across_the_nerve(vr, tmp_path):
    fig = nerve_figure(vr, SIZE)
    section = fibre_section(fig)
    assert section is not None
    nerve, summary = vr.fibres["nerve"], vr.fibres["nerve"]["summary"]
    block = {"complete": "complete block", "partial": "partial block", "none": "no block"}[summary["verdict"]]
    assert section.get_title(loc="left") == (f"nerve: {block}\n{100 * summary['injured_fraction']:.0f} % of fibres "
                                             "at ≤ −20 °C")
    dots = section.collections[0]
    np.testing.assert_allclose(dots.get_offsets(), np.column_stack([nerve["u_mm"], nerve["v_mm"]]))
    np.testing.assert_allclose(dots.get_array(), nerve["min_temperature"])
    assert section.get_aspect() == 1.0
    assert [ax.get_ylabel() for ax in section.child_axes] == ["fibre minimum °C"]  # its colour bar, inset
    crossed = [c for c in nerve["levels"] if nerve["min_temperature"].min() < c < nerve["min_temperature"].max()]
    assert crossed and [float(v) for v in section.collections[1].levels] == sorted(crossed)  # the levels' contours
    fig.savefig(tmp_path / "nerve.png", dpi=100)
    assert_picture(tmp_path / "nerve.png")


def test_time_series_show_the_fibres_injured_over_time(vr):
    fig = timeseries_figure(vr, SIZE)
    right = [ax for ax in fig.axes if ax.get_ylabel() == FIBRES_AXIS]
    assert len(right) == 1 and right[0].get_ylim() == (0.0, 100.0)
    nerve = vr.fibres["nerve"]
    line = {ln.get_label(): ln for ln in right[0].get_lines()}["nerve: fibres injured (%)"]
    np.testing.assert_allclose(line.get_xdata(), nerve["time"])
    np.testing.assert_allclose(line.get_ydata(), 100 * nerve["injured_fraction"])
    length = next(ax for ax in fig.axes if ax.get_title(loc="left") == "Nerve length at ≤ −20 °C")
    assert "nerve: fibres injured (%)" in [t.get_text() for t in length.get_legend().get_texts()]


def test_a_result_without_fibres_still_draws_every_picture(shell_result, tmp_path):
    import h5py

    old = tmp_path / "old.h5"
    shutil.copy(shell_result, old)
    with h5py.File(old, "r+") as f:
        del f["clinical_fibres"]
    previous = VizResult.open(old)
    assert previous.fibres == {} and previous.nerve_profiles
    nerve = nerve_figure(previous, SIZE)
    assert nerve is not None and fibre_section(nerve) is None
    series = timeseries_figure(previous, SIZE)
    assert not [ax for ax in series.axes if ax.get_ylabel() == FIBRES_AXIS]
    for name, fig in (("nerve.png", nerve), ("timeseries.png", series)):
        fig.savefig(tmp_path / name, dpi=100)
        assert_picture(tmp_path / name)
