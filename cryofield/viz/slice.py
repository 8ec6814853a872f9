"""The 2D slice in the probe's plane, as on the ultrasound screen: tissue, outlines, the probe, the ice.

The slice is an exact cut of the P1 field (see :func:`cryofield.viz.geometry.cut_mesh`). Ice is filled
by band (at or below each isotherm, the colours of the 3D view) and the isotherms are drawn as labelled
lines; the nerve and artery outlines are drawn on top, so the ice can be judged against them.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.tri import Triangulation

from cryofield.viz.data import VizResult
from cryofield.viz.geometry import Plane, cut_mesh, cut_triangles, ultrasound_plane
from cryofield.viz.roles import (
    PROBE_COLOUR,
    SHAFT_COLOUR,
    STRUCTURES,
    STYLES,
    isotherm_colours,
    level_label,
    lighten,
    size_scale,
)

MM = 1e3
CONTEXT_OUTLINE = "0.3"
AXES_BOX = (0.08, 0.1, 0.64, 0.76)  # left, bottom, width, height as fractions of the figure


class SliceView:
    """A matplotlib figure of the probe-plane slice; :meth:`show` draws the ice of one snapshot.

    Parameters
    ----------
    vr
        The result.
    size
        Image width and height in pixels.
    plane
        The slice plane; by default :func:`cryofield.viz.geometry.ultrasound_plane`.
    """

    def __init__(self, vr: VizResult, size: tuple[int, int] = (1200, 900), plane: Plane | None = None):
        self.vr, self.size = vr, (int(size[0]), int(size[1]))
        self.plane = plane or ultrasound_plane(vr)
        self.cut = cut_mesh(vr.points, vr.tets, vr.result.region_id, self.plane)
        if len(self.cut.triangles) == 0:
            raise ValueError("the slice plane misses the mesh")
        self.tri = Triangulation(self.cut.uv[:, 0] * MM, self.cut.uv[:, 1] * MM, self.cut.triangles)
        self.colours = isotherm_colours(vr.levels)
        self.scale = size_scale(self.size)
        self.fig = Figure(figsize=(self.size[0] / 100, self.size[1] / 100), dpi=100)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes(AXES_BOX)
        self._ice: list = []
        self._draw_tissue()
        self._draw_outlines()
        self._draw_probes()
        self._frame()

    def _draw_tissue(self) -> None:
        colours = [lighten(STYLES[role].colour, 0.55) for role in self.vr.roles]
        self.ax.tripcolor(self.tri, facecolors=self.cut.region.astype(float), cmap=ListedColormap(colours),
                          vmin=-0.5, vmax=len(colours) - 0.5, edgecolors="none", antialiased=False, zorder=1)

    def _draw_outlines(self) -> None:
        edges, side_a, side_b = self.cut.outline_edges()
        roles = np.array(self.vr.roles)
        segments = self.cut.uv[edges] * MM
        context = np.ones(len(edges), bool)
        for role in STRUCTURES:
            mine = (roles[side_a] == role) | (roles[side_b] == role)
            context &= ~mine
            if mine.any():
                self.ax.add_collection(LineCollection(segments[mine], colors=STYLES[role].colour,
                                                      linewidths=2.2 * self.scale, zorder=4))
        self.ax.add_collection(LineCollection(segments[context], colors=CONTEXT_OUTLINE, linewidths=0.8 * self.scale,
                                              zorder=4))

    def _draw_probes(self) -> None:
        vr, plane = self.vr, self.plane
        for name, triangles in vr.probe_surfaces.items():
            if vr.axisymmetric:  # the surface's own r-z segments, and their mirror image
                uv = self.cut.uv[triangles]
                segments = np.concatenate([uv, uv * np.array([1.0, -1.0])]) * MM
            else:
                segments = cut_triangles(vr.points, triangles, plane) * MM
            self.ax.add_collection(LineCollection(segments, colors=PROBE_COLOUR, linewidths=3 * self.scale, zorder=5))
            pose = vr.probe_pose(name)
            if pose is not None and pose.diameter > 0:
                self._draw_needle(pose)

    def _draw_needle(self, pose) -> None:
        """The needle where it lies in the plane: active part dark, shaft light, out past the view."""
        plane = self.plane
        tip = plane.to_plane(pose.tip) * MM
        axis = plane.to_plane(plane.origin + pose.axis)
        if np.linalg.norm(axis) < 0.5:  # the needle crosses the plane steeply: its cut is the probe surface's
            return
        axis /= np.linalg.norm(axis)
        across = np.array([-axis[1], axis[0]]) * pose.diameter * MM / 2
        end_active = tip + axis * pose.active_length * MM
        far = end_active + axis * 1e3  # clipped by the axes
        for start, stop, colour in ((tip, end_active, PROBE_COLOUR), (end_active, far, SHAFT_COLOUR)):
            corners = [start - across, stop - across, stop + across, start + across]
            self.ax.add_patch(Polygon(corners, closed=True, facecolor=colour, edgecolor="black", lw=0.6 * self.scale,
                                      zorder=5))

    def _frame(self) -> None:
        ax, vr = self.ax, self.vr
        lo, hi = vr.region_of_interest()
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        uv = self.plane.to_plane(corners) * MM
        cut_lo, cut_hi = self.cut.uv.min(axis=0) * MM, self.cut.uv.max(axis=0) * MM
        u0, v0 = np.maximum(uv.min(axis=0), cut_lo)
        u1, v1 = np.minimum(uv.max(axis=0), cut_hi)
        # widen the short side to the frame's shape, so equal scales fill the frame with slice, not white
        frame = AXES_BOX[2] * self.size[0] / (AXES_BOX[3] * self.size[1])
        grow_u, grow_v = max(frame * (v1 - v0) - (u1 - u0), 0.0) / 2, max((u1 - u0) / frame - (v1 - v0), 0.0) / 2
        ax.set_xlim(u0 - grow_u, u1 + grow_u)
        ax.set_ylim(v0 - grow_v, v1 + grow_v)
        ax.set_aspect("equal", adjustable="box")
        f = self.scale
        ax.set_xlabel("mm in the plane, from the probe", fontsize=10 * f)
        skin_known = "skin" in self.plane.reason or vr.regions_with("skin") or any(
            "skin" in name.lower() for name in vr.result.surfaces)
        ax.set_ylabel("mm towards the skin" if skin_known else "mm", fontsize=10 * f)
        ax.tick_params(labelsize=9 * f, width=0.8 * f, length=3.5 * f)
        for spine in ax.spines.values():
            spine.set_linewidth(0.8 * f)
        handles = [Patch(facecolor=lighten(STYLES[r].colour, 0.55), edgecolor=CONTEXT_OUTLINE, label=STYLES[r].label)
                   for r in dict.fromkeys(vr.roles) if r not in STRUCTURES]
        handles += [Line2D([], [], color=STYLES[r].colour, lw=2.2 * f, label=f"{STYLES[r].label} outline")
                    for r in dict.fromkeys(vr.roles) if r in STRUCTURES]
        handles.append(Line2D([], [], color=PROBE_COLOUR, lw=4 * f, label="cryoprobe"))
        handles += [Patch(facecolor=self.colours[level], label=level_label(level, vr.thresholds))
                    for level in vr.levels]
        self.fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.74, 0.86), fontsize=9 * f,
                        frameon=False)
        title = "Section through the axis (axisymmetric)" if vr.axisymmetric else "Ultrasound plane through the probe"
        self.fig.text(0.02, 0.975, title, fontsize=13 * f, va="top")
        self.fig.text(0.02, 0.015, f"Plane: {self.plane.reason}.", fontsize=8 * f, color="0.35", wrap=True)

    def show(self, index: int) -> Figure:
        """Draw the ice and isotherms of snapshot ``index`` (replacing any earlier ones); return the figure."""
        for artist in self._ice:
            artist.remove()
        self._ice = []
        T = self.cut.values(self.vr.temperature(index))
        levels = self.vr.levels
        self.ax.set_title(f"{self.vr.name}: {self.vr.describe_time(index)}", fontsize=10 * self.scale, loc="left")
        if T.min() <= levels[0]:
            bounds = [min(T.min(), levels[-1]) - 1.0, *levels[::-1]]
            filled = self.ax.tricontourf(self.tri, T, levels=bounds, colors=[self.colours[v] for v in levels[::-1]],
                                         zorder=2)
            lines = self.ax.tricontour(self.tri, T, levels=levels[::-1], colors="black", linewidths=0.7 * self.scale,
                                       zorder=3)
            self.ax.clabel(lines, fmt=lambda v: f"{v:g} °C".replace("-", "−"), fontsize=8 * self.scale, inline=True)
            self._ice += [filled, lines]  # removing a contour set removes its labels too
        return self.fig

    def to_pixel(self, points_m: np.ndarray) -> np.ndarray:
        """(N, 2) pixel column and row (from the top) of 3D points (m) projected on the plane, in the saved image."""
        self.fig.canvas.draw()
        xy = self.ax.transData.transform(self.plane.to_plane(np.atleast_2d(points_m)) * MM)
        return np.column_stack([xy[:, 0], self.size[1] - xy[:, 1]])

    def image(self) -> np.ndarray:
        """The current figure as an (H, W, 3) uint8 array."""
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()
