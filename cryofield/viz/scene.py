"""The 3D view: translucent tissue, opaque nerves and arteries, the probe, and the ice at one time.

The ice is drawn as closed bodies, one per isotherm: the part of the mesh at or below the level, cut
exactly from the P1 field. Its surface is the isotherm plus, where the ice reaches them, the mesh's
boundaries (skin, symmetry planes, the sides of the view box), so the ice colour covers every point the
solution says is frozen. The view is a cutaway box around the ice of the whole run, seen in parallel
projection (so one scale bar is true everywhere), skin up, the needle from the side.

VTK draws the scene; matplotlib adds the title, legend, scale bar and nerve summary, so the 3D view,
the slice and the plots share fonts and symbols.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from PIL import Image

from cryofield.model.roles import THRESHOLDS, Thresholds
from cryofield.viz.data import VizResult
from cryofield.viz.geometry import (
    NerveLength,
    Plane,
    centroids,
    probe_axis,
    skin_direction,
    ultrasound_plane,
    unique_rows,
)
from cryofield.viz.headless import ensure_render_context
from cryofield.viz.roles import (
    PROBE_COLOUR,
    SHAFT_COLOUR,
    STRUCTURES,
    STYLES,
    isotherm_colours,
    level_label,
    size_scale,
)

MM = 1e3  # the scene is built in millimetres
SUPERSAMPLE = 2  # rendered at twice the size and reduced: smooth edges where multisampling cannot be used

#: Opacity of the ice bodies, warmest (outermost) first: the ice edge is a veil, the core nearly solid.
ICE_OPACITY = (0.35, 0.5, 0.8)


def _theme():
    import pyvista as pv

    theme = pv.themes.DocumentTheme()
    theme.background = "white"
    theme.anti_aliasing = None
    theme.multi_samples = 0  # depth peeling (correct translucency) fails with multisampling on some drivers
    return theme


def nice_length(span: float) -> float:
    """A round length (1, 2 or 5 × 10^k) no longer than a fifth of ``span``.

    Examples
    --------
    >>> nice_length(37.0), nice_length(9.0)
    (5.0, 1.0)
    """
    target = span / 5.0
    power = 10.0 ** np.floor(np.log10(target))
    return float(max(m * power for m in (1.0, 2.0, 5.0) if m * power <= target))


class Scene3D:
    """An off-screen 3D scene of one result; :meth:`show` puts the ice of one snapshot in it.

    Parameters
    ----------
    vr
        The result.
    size
        Image width and height in pixels.
    plane
        The ultrasound plane the camera faces; by default :func:`cryofield.viz.geometry.ultrasound_plane`.

    Raises
    ------
    cryofield.viz.headless.RenderUnavailable
        When this machine cannot render off screen.
    """

    def __init__(self, vr: VizResult, size: tuple[int, int] = (1200, 900), plane: Plane | None = None):
        ensure_render_context()
        import pyvista as pv

        self.vr, self.size = vr, (int(size[0]), int(size[1]))
        self.plane: Plane = plane or ultrasound_plane(vr)
        self.lo, self.hi = vr.region_of_interest()
        self.grid = self._roi_grid(pv)
        self.colours = isotherm_colours(vr.levels)
        self.plotter = pv.Plotter(off_screen=True, theme=_theme(),
                                  window_size=[SUPERSAMPLE * self.size[0], SUPERSAMPLE * self.size[1]])
        self.plotter.enable_depth_peeling(number_of_peels=8, occlusion_ratio=0.1)  # stop when little changes
        self._add_tissue(pv)
        self._add_probes(pv)
        self._place_camera()

    def _roi_grid(self, pv):
        """The tetrahedra that reach into the view box (each within its own size of it), in mm.

        Surfaces drawn from them are then clipped exactly to the box, so the cutaway has straight edges.
        """
        vr = self.vr
        centre = centroids(vr.points, vr.tets)
        reach = np.max([np.linalg.norm(vr.points[vr.tets[:, k]] - centre, axis=1) for k in range(4)], axis=0)
        self.inside = np.all((centre >= self.lo - reach[:, None]) & (centre <= self.hi + reach[:, None]), axis=1)
        return pv.UnstructuredGrid({pv.CellType.TETRA: vr.tets[self.inside]}, vr.points * MM)

    @property
    def bounds_mm(self) -> tuple[float, ...]:
        """The view box (mm) as VTK bounds."""
        return tuple(np.column_stack([self.lo * MM, self.hi * MM]).ravel())

    def _add_tissue(self, pv) -> None:
        """Each region's visible faces, every face drawn once so coincident faces do not flicker."""
        vr = self.vr
        self.roles_shown: list[str] = []
        for r, faces in region_faces(vr.tets[self.inside], vr.result.region_id[self.inside], vr.roles).items():
            role = vr.roles[r]
            style = STYLES[role]
            opaque = role in STRUCTURES
            surface = pv.PolyData(vr.points * MM, np.hstack([np.full((len(faces), 1), 3), faces]).ravel())
            surface = surface.clean().clip_box(self.bounds_mm, invert=False)
            if surface.n_cells == 0:
                continue
            if role not in self.roles_shown:
                self.roles_shown.append(role)
            self.plotter.add_mesh(surface, color=style.colour, opacity=style.opacity, smooth_shading=opaque,
                                  split_sharp_edges=opaque, specular=0.3 if opaque else 0.0, render=False)

    def _add_probes(self, pv) -> None:
        vr = self.vr
        for name, triangles in vr.probe_surfaces.items():
            faces = np.hstack([np.full((len(triangles), 1), 3), triangles]).ravel()
            surface = pv.PolyData(vr.points * MM, faces).clean()
            actor = self.plotter.add_mesh(surface, color=PROBE_COLOUR, smooth_shading=True, specular=0.5,
                                          render=False)
            # The ice touching the probe shares its faces; pull the probe forward so it is not hidden by them.
            actor.mapper.SetRelativeCoincidentTopologyPolygonOffsetParameters(-4.0, -4.0)
            pose = vr.probe_pose(name)
            if pose is not None and pose.diameter > 0:
                self._add_shaft(pv, pose)

    def _add_shaft(self, pv, pose) -> None:
        """The insulated shaft, from the end of the active part out of the view box (it leaves the skin)."""
        start = (pose.tip + pose.axis * pose.active_length) * MM
        with np.errstate(divide="ignore", invalid="ignore"):
            exits = np.concatenate([(self.lo * MM - start) / pose.axis, (self.hi * MM - start) / pose.axis])
        length = float(np.min(exits[exits > 0], initial=10.0)) + 3.0
        shaft = pv.Cylinder(center=start + pose.axis * length / 2, direction=pose.axis, radius=pose.diameter * MM / 2,
                            height=length, resolution=32)
        self.plotter.add_mesh(shaft, color=SHAFT_COLOUR, smooth_shading=True, specular=0.6, render=False)

    def _place_camera(self) -> None:
        """Frame the view box tightly in parallel projection (the frame is its extent across the line of
        sight), looking along :meth:`_view_direction`."""
        towards_camera, up = self._view_direction()
        right = np.cross(up, towards_camera)
        corners = np.array(np.meshgrid(*zip(self.lo, self.hi), indexing="ij")).reshape(3, -1).T * MM
        across = np.column_stack([corners @ right, corners @ up])
        low, high = across.min(axis=0), across.max(axis=0)
        middle = (low + high) / 2
        depth = float(corners.mean(axis=0) @ towards_camera)
        focus = middle[0] * right + middle[1] * up + depth * towards_camera
        extent = float(np.linalg.norm(high - low))
        camera = self.plotter.camera
        camera.focal_point = focus
        camera.position = focus + towards_camera * 4.0 * extent
        camera.up = up
        self.plotter.enable_parallel_projection()
        aspect = self.size[0] / self.size[1]
        camera.parallel_scale = 1.06 * max((high - low)[1] / 2, (high - low)[0] / 2 / aspect)
        camera.clipping_range = (0.5 * extent, 8.0 * extent)

    def _view_direction(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors towards the camera and up: the skin up (else the slice's up), the needle seen from the
        side, from where the probe is in front of the nerve, turned 20° and raised 25° to show depth."""
        p = self.plane
        up = skin_direction(self.vr, p.origin)
        up = p.e_v if up is None else up
        axis = probe_axis(self.vr)[1]
        needle = axis - (axis @ up) * up
        side = np.cross(up, needle) if np.linalg.norm(needle) > 0.3 else p.normal - (p.normal @ up) * up
        side /= np.linalg.norm(side)
        if not self._probe_in_front_of_nerve(side):
            side = -side
        along = np.cross(side, up)
        turn, rise = np.radians(20.0), np.radians(25.0)
        towards_camera = np.cos(rise) * (np.cos(turn) * side + np.sin(turn) * along) + np.sin(rise) * up
        up = up - (up @ towards_camera) * towards_camera
        return towards_camera, up / np.linalg.norm(up)

    def _probe_in_front_of_nerve(self, direction: np.ndarray) -> bool:
        """Whether, seen from ``direction``, the probe is nearer than the nerves: then the ice ball is seen
        against the nerve rather than hidden behind it."""
        vr = self.vr
        nerves = [vr.region_nodes[r] for r in vr.regions_with("nerve")]
        probes = [np.unique(t) for t in vr.probe_surfaces.values()]
        if not nerves or not probes:
            return True
        near = np.concatenate(nerves)
        near = near[np.all((vr.points[near] >= self.lo) & (vr.points[near] <= self.hi), axis=1)]
        if len(near) == 0:
            return True
        probe_depth = vr.points[np.concatenate(probes)].mean(axis=0) @ direction
        return bool(probe_depth >= vr.points[near].mean(axis=0) @ direction)

    @property
    def pixels_per_mm(self) -> float:
        """Picture pixels per millimetre in any plane facing the camera (parallel projection)."""
        return self.size[1] / (2.0 * self.plotter.camera.parallel_scale)

    def show(self, index: int) -> None:
        """Put the ice of snapshot ``index`` into the scene."""
        self.grid.point_data["T"] = self.vr.temperature(index)
        for k, level in enumerate(self.vr.levels):
            body = self.grid.clip_scalar(scalars="T", value=level, invert=True)
            name = f"ice {level:g}"
            self.plotter.remove_actor(name, render=False)  # every render is costly on software OpenGL
            if body.n_cells == 0:
                continue
            surface = body.extract_surface(algorithm=None).clip_box(self.bounds_mm, invert=False)
            self.plotter.add_mesh(surface, color=self.colours[level], name=name,
                                  opacity=ICE_OPACITY[min(k, len(ICE_OPACITY) - 1)], smooth_shading=True,
                                  split_sharp_edges=True, render=False)

    def image(self) -> np.ndarray:
        """The current scene as an (H, W, 3) uint8 array of the requested size."""
        self.plotter.render()  # a screenshot renders only the first time; later ones would read a stale buffer
        big = np.asarray(self.plotter.screenshot(return_img=True))[..., :3]
        return np.asarray(Image.fromarray(big).resize(self.size, Image.Resampling.LANCZOS))

    def world_to_pixel(self, points_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixel column and row (from the top) where 3D points (m) appear in :meth:`image`."""
        renderer = self.plotter.renderer
        out = []
        for x in np.atleast_2d(points_m) * MM:
            renderer.SetWorldPoint(*x, 1.0)
            renderer.WorldToDisplay()
            col, row, _ = renderer.GetDisplayPoint()
            out.append((col / SUPERSAMPLE, self.size[1] - row / SUPERSAMPLE))
        return np.array(out)

    def close(self) -> None:
        self.plotter.close()


def region_faces(tets: np.ndarray, region: np.ndarray, roles: list[str]) -> dict[int, np.ndarray]:
    """The triangles to draw for each region: its whole boundary for the structures (nerves, arteries);
    for context tissue, its outer faces and each interface with other context tissue once, never the
    faces it shares with a structure (the structure's opaque surface is there)."""
    faces = np.concatenate([tets[:, [0, 1, 2]], tets[:, [0, 1, 3]], tets[:, [0, 2, 3]], tets[:, [1, 2, 3]]])
    owner = np.tile(region, 4)
    first, inverse, counts = unique_rows(faces, int(tets.max()) + 1)
    low = np.full(len(first), np.iinfo(np.int64).max)
    high = np.full(len(first), -1)
    np.minimum.at(low, inverse, owner)
    np.maximum.at(high, inverse, owner)
    structure = np.array([role in STRUCTURES for role in roles])
    out = {}
    for r in np.unique(region):
        if structure[r]:
            mine = ((low == r) | (high == r)) & ((counts == 1) | (low != high))
        else:
            other = np.where(low == r, high, low)
            mine = (low == r) & ((counts == 1) | ((high != r) & ~structure[other]))
        if mine.any():
            out[int(r)] = faces[first[mine]]
    return out


def scene_figure(scene: Scene3D, index: int, nerve_length: NerveLength | None = None) -> Figure:
    """The 3D picture of snapshot ``index``: the scene with title, legend, scale bar and nerve summary.

    The rendered image fills the figure pixel for pixel, so :meth:`Scene3D.world_to_pixel` holds on it.
    """
    vr = scene.vr
    scene.show(index)
    width, height = scene.size
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(scene.image(), interpolation="none", aspect="auto", extent=(0, width, height, 0))
    ax.set_axis_off()
    f = size_scale(scene.size)
    ax.text(0.015, 0.985, f"{vr.name}: {vr.describe_time(index)}", transform=ax.transAxes, va="top", fontsize=13 * f)
    ax.text(0.015, 0.94, "3D view; the ice at or below each isotherm is drawn as a solid", transform=ax.transAxes,
            va="top", fontsize=9 * f, color="0.35")
    ax.legend(handles=legend_handles(scene.roles_shown, vr.levels, scene.colours, f, vr.thresholds),
              loc="upper right", fontsize=9 * f, framealpha=0.9)
    _add_scale_bar(ax, scene.pixels_per_mm, width, height, f)
    summary = nerve_summary(vr, vr.temperature(index), nerve_length or NerveLength(vr), (scene.lo, scene.hi))
    if summary:
        ax.text(0.985, 0.02, summary, transform=ax.transAxes, ha="right", va="bottom", fontsize=9 * f,
                bbox={"facecolor": "white", "edgecolor": "0.7", "alpha": 0.85, "linewidth": 0.8 * f})
    return fig


def legend_handles(roles: list[str], levels: list[float], colours: dict[float, tuple], scale: float = 1.0,
                   thresholds: Thresholds = THRESHOLDS) -> list:
    """Legend entries: each tissue role in view, the probe, and the isotherms."""
    handles = [Patch(facecolor=STYLES[r].colour, alpha=1.0 if r in STRUCTURES else 0.45, edgecolor="0.4",
                     label=STYLES[r].label) for r in roles]
    handles.append(Line2D([], [], color=PROBE_COLOUR, lw=4 * scale, label="cryoprobe"))
    handles += [Patch(facecolor=colours[level], edgecolor="0.3", label=level_label(level, thresholds))
                for level in levels]
    return handles


def _add_scale_bar(ax, pixels_per_mm: float, width: int, height: int, scale: float) -> None:
    length = nice_length(width / pixels_per_mm)
    x0, y0 = 0.03 * width, 0.95 * height
    ax.plot([x0, x0 + length * pixels_per_mm], [y0, y0], color="black", lw=3 * scale, solid_capstyle="butt")
    ax.text(x0 + length * pixels_per_mm / 2, y0 - 8 * scale, f"{length:g} mm", ha="center", va="bottom",
            fontsize=10 * scale)


def nerve_summary(vr: VizResult, T: np.ndarray, nerve_length: NerveLength, box=None) -> str:
    """One line per nerve (those with a node in ``box``, a (low, high) pair in m, when given): its minimum
    temperature and its length at or below the injury level (−20 °C), in part of its cross-section and in
    all of it."""
    level = vr.thresholds.injury_c
    lengths = nerve_length(T, level)
    lines = []
    for r in vr.regions_with("nerve"):
        nodes = vr.region_nodes[r]
        if box is not None and not np.any(np.all((vr.points[nodes] >= box[0]) & (vr.points[nodes] <= box[1]),
                                                  axis=1)):
            continue
        name = vr.result.region_names[r]
        line = f"{name}: min {T[nodes].min():.1f} °C".replace("-", "−")
        if name in lengths:
            line += (f"; ≤ {level:g} °C".replace("-", "−")
                     + f" over {lengths[name].any_part * MM:.1f} mm "
                     f"(whole cross-section {lengths[name].whole * MM:.1f} mm)")
        lines.append(line)
    return "\n".join(lines)
