"""Time-series plots of a result: ice volume, nerve temperature and frozen length, skin, probe, by region,
and the devices' records (a controller's sensor, set point and flow; the heat each device moves); the injury
along and across each nerve (:func:`nerve_figure`).

The metric series (recorded every ``metrics_interval``) come straight from the result; the nerve's length
at or below the injury level (−20 °C) needs the whole field, so it is measured on the snapshots. Protocol
phases are shaded. Thresholds are the result's own (:attr:`cryofield.viz.data.VizResult.thresholds`).
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.tri import Triangulation
from scipy.spatial import cKDTree

from cryofield.model.roles import THRESHOLDS, Thresholds
from cryofield.viz.data import VizResult
from cryofield.viz.geometry import NerveLength
from cryofield.viz.roles import FIBRE_MAP, STYLES, isotherm_colours, level_label, size_scale

MM = 1e3

PHASE_COLOURS = {"freeze": "#9ecae1", "passive_thaw": "#fdd0a2", "active_thaw": "#fc9272", "hold": "#d9d9d9"}

def _deg(value: float) -> str:
    """``-20`` → ``'−20 °C'``."""
    return f"{value:g} °C".replace("-", "−")


def panel_titles(thresholds: Thresholds = THRESHOLDS) -> tuple[str, ...]:
    """Panel titles, in reading order, for a result judged by ``thresholds``."""
    return ("Ice volume", "Probe temperature", "Nerve minimum temperature",
            f"Nerve length at ≤ {_deg(thresholds.injury_c)}", "Skin (and artery) minimum temperature",
            "Minimum temperature by region", "Probe controller", "Heat through the devices")


#: Panel titles (at the default thresholds), in reading order; tests and users find a panel by its title.
PANELS = panel_titles()


def nerve_lengths(vr: VizResult, measure: NerveLength, level: float | None = None) -> dict[str, np.ndarray]:
    """Length (m) of each nerve at or below ``level`` (the result's injury level when not given) at every
    snapshot: (S, 2) columns any part of the cross-section, whole cross-section (see
    :class:`cryofield.viz.geometry.NerveLength`)."""
    level = vr.thresholds.injury_c if level is None else level
    series = {name: np.zeros((len(vr.snapshot_times), 2)) for name in measure.nerves}
    for i in range(len(vr.snapshot_times)):
        for name, lengths in measure(vr.temperature(i), level).items():
            series[name][i] = lengths.any_part, lengths.whole
    return series


def timeseries_figure(vr: VizResult, size: tuple[int, int] = (1200, 900),
                      nerve_length: NerveLength | None = None) -> Figure:
    """A 4 × 2 grid of time series (panels titled as :data:`PANELS`), protocol phases shaded; two more panels
    for the ice-ball shape when the probes have a pose. The nerve-length panel carries, on its right axis
    (:data:`FIBRES_AXIS`), each nerve's fraction of fibres injured so far when the result reads them.

    ``nerve_length`` (built from ``vr`` when not given) measures the nerves' frozen length.
    """
    with matplotlib.rc_context(_scaled_style(size_scale(size))):
        fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
        FigureCanvasAgg(fig)
        shaped = bool(vr.result.iceball)  # probes with a pose: two more panels for the ice-ball shape
        axes = fig.subplots(5 if shaped else 4, 2, sharex=True).ravel()
        readings = safety_readings(vr)
        fig.subplots_adjust(left=0.07, right=0.93, top=0.875 if readings else 0.9, bottom=0.06, hspace=0.42,
                            wspace=0.3)
        titles = panel_titles(vr.thresholds) + (ICEBALL_PANELS if shaped else ())
        panels = dict(zip(titles, axes))
        if shaped:
            _iceball(panels[ICEBALL_PANELS[0]], panels[ICEBALL_PANELS[1]], vr)
        t = vr.result.metrics["time"]
        _ice_volume(panels["Ice volume"], vr, t)
        _probe(panels["Probe temperature"], vr, t)
        _nerve_minimum(panels["Nerve minimum temperature"], vr, t)
        _nerve_length(panels[titles[3]], vr, nerve_length or NerveLength(vr))
        _skin(panels["Skin (and artery) minimum temperature"], vr, t)
        _regions(panels["Minimum temperature by region"], vr, t)
        _controller(panels["Probe controller"], vr)
        _device_heat(panels["Heat through the devices"], vr)
        for title, ax in panels.items():
            ax.set_title(title, loc="left")
            ax.grid(alpha=0.3)
            _shade_phases(ax, vr)
            if ax.get_legend() is None and ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", framealpha=0.85)
        for ax in axes[-2:]:
            ax.set_xlabel("time (s)")
        kinds = list(dict.fromkeys(vr.protocol.kinds))
        fig.legend(handles=[Patch(facecolor=PHASE_COLOURS.get(k, "#eeeeee"), label=k.replace("_", " "))
                            for k in kinds], loc="upper right", ncol=len(kinds), frameon=False,
                   bbox_to_anchor=(0.98, 0.965), fontsize="medium")
        fig.suptitle(f"{vr.name}: time series", x=0.07, ha="left", fontsize="xx-large")
        if readings:  # under the title, the run summary's own words: the levels skin and vessels reached
            fig.text(0.07, 0.905, "\n".join(readings), ha="left", va="bottom", fontsize="small")
    return fig


def _scaled_style(f: float) -> dict:
    """Matplotlib settings for a figure drawn at ``f`` times the default picture size."""
    return {"font.size": 9 * f, "axes.titlesize": 10 * f, "axes.labelsize": 9 * f, "xtick.labelsize": 8 * f,
            "ytick.labelsize": 8 * f, "legend.fontsize": 7 * f, "lines.linewidth": 1.8 * f, "lines.markersize": 3 * f,
            "axes.linewidth": 0.8 * f, "grid.linewidth": 0.8 * f, "xtick.major.width": 0.8 * f,
            "ytick.major.width": 0.8 * f, "xtick.major.size": 3.5 * f, "ytick.major.size": 3.5 * f,
            "patch.linewidth": 1.0 * f}


def _shade_phases(ax, vr: VizResult) -> None:
    p = vr.protocol
    for kind, start, end in zip(p.kinds, p.start, p.end):
        ax.axvspan(start, end, facecolor=PHASE_COLOURS.get(kind, "#eeeeee"), alpha=0.35, lw=0, zorder=0)
    ax.set_xlim(0.0, float(p.end[-1]) if p.end[-1] > 0 else 1.0)


def _thin() -> float:
    """Width of reference lines: thinner than the data, at the figure's scale."""
    return 0.55 * matplotlib.rcParams["lines.linewidth"]


def _missing(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this result", transform=ax.transAxes, ha="center", va="center", color="0.4")


#: The panels of :func:`_iceball`.
ICEBALL_PANELS = ("Ice ball: width (solid) and length (dashed)", "Ice ball: reach beyond the tip")


def _iceball(shape_ax, tip_ax, vr: VizResult) -> None:
    """Per isotherm, each posed probe's ice-ball width at mid active length and length along it; the reach
    beyond its tip (:mod:`cryofield.run.observers.iceball`)."""
    colours = isotherm_colours(vr.levels)
    for name, series in vr.result.iceball.items():
        for k, level in enumerate(float(v) for v in series["levels"]):
            colour = colours.get(level)
            label = f"{name}, {level_label(level, vr.thresholds)}"
            shape_ax.plot(series["time"], series["width_mm"][:, k], color=colour, label=label)
            shape_ax.plot(series["time"], series["length_mm"][:, k], color=colour, linestyle="--")
            tip_ax.plot(series["time"], series["beyond_tip_mm"][:, k], color=colour, label=label)
    shape_ax.set_ylabel("mm")
    tip_ax.set_ylabel("mm")


def _ice_volume(ax, vr: VizResult, t: np.ndarray) -> None:
    volume = vr.result.metrics["volume_below"].sum(axis=2) * MM**3  # (M, L) mm³, all regions
    colours = isotherm_colours(vr.levels)
    measured = [float(v) for v in vr.result.metric_attrs.get("levels", vr.levels)]
    for k, level in enumerate(measured):
        ax.plot(t, volume[:, k], color=colours[level], label=level_label(level, vr.thresholds))
    ax.set_ylabel("mm³")


def _probe(ax, vr: VizResult, t: np.ndarray) -> None:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in vr.result.metric_attrs.get("probes", [])]
    values = vr.result.metrics["probe_temperature"]
    if values.shape[1] == 0:
        _missing(ax, "probe")
        return
    for k in range(values.shape[1]):
        ax.plot(t, values[:, k], color="#3c4148" if k == 0 else None,
                label=names[k] if k < len(names) else f"probe {k + 1}")
    ax.set_ylabel("°C")


def _nerve_minimum(ax, vr: VizResult, t: np.ndarray) -> None:
    nerves = vr.regions_with("nerve")
    if not nerves:
        _missing(ax, "nerve region")
        return
    minimum = vr.result.metrics["region_min_temperature"]
    for k, r in enumerate(nerves):
        ax.plot(t, minimum[:, r], color=f"C{k}", label=vr.result.region_names[r])
    ax.axhline(vr.thresholds.injury_c, color="#1f4fd1", ls="--", lw=_thin(),
               label=f"{_deg(vr.thresholds.injury_c)}: axonotmesis")
    ax.set_ylabel("°C")


def _nerve_length(ax, vr: VizResult, measure: NerveLength) -> None:
    series = nerve_lengths(vr, measure)
    if not series:
        _missing(ax, "nerve region")
        return
    never = [name for name, length in series.items() if not length.any()]
    order = [vr.result.region_names[r] for r in vr.regions_with("nerve")]
    for name, length in series.items():
        if name in never:
            continue
        colour = f"C{order.index(name)}"  # each nerve keeps its colour of the minimum-temperature panel
        ax.plot(vr.snapshot_times, length[:, 0] * MM, marker="o", color=colour, label=f"{name}: any part")
        ax.plot(vr.snapshot_times, length[:, 1] * MM, marker="o", ls="--", color=colour,
                label=f"{name}: whole cross-section")
    if never:  # an empty series: a line of the legend
        ax.plot([], [], ls="none", label=f"never at ≤ {_deg(vr.thresholds.injury_c)}: {', '.join(never)}")
    block = vr.thresholds.durable_block_mm
    ax.axhline(block, color="0.3", ls=":", lw=_thin(), label=f"{block:g} mm: durable block")
    ax.set_ylabel("mm along the nerve")
    ax.set_ylim(bottom=0.0)
    _fibres_injured(ax, vr, order)


#: The label of the injured-fraction axis of the nerve-length panel (on its right).
FIBRES_AXIS = "% of fibres injured"


def _fibres_injured(ax, vr: VizResult, order: list[str]) -> None:
    """On the right of the nerve-length panel (the grid is full), each nerve's fraction of fibres injured at
    the injury level so far (``/clinical_fibres``, in %); nothing for a result without."""
    series = {name: f for name, f in vr.fibres.items() if len(f.get("time", ())) and len(f.get("injured_fraction", ()))}
    if not series:
        return
    twin = ax.twinx()
    for name, fibres in series.items():
        colour = f"C{order.index(name)}" if name in order else "0.3"  # the nerve's colour of the other panels
        twin.plot(fibres["time"], 100.0 * fibres["injured_fraction"], color=colour, ls="-.",
                  label=f"{name}: fibres injured (%)")
    twin.set_ylim(0.0, 100.0)
    twin.set_ylabel(FIBRES_AXIS)
    ax.set_zorder(twin.get_zorder() + 1)  # the panel's legend over the right axis' lines, its background clear
    ax.patch.set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, loc="best", framealpha=0.85, handlelength=3.0)  # dash-dot


def _skin(ax, vr: VizResult, t: np.ndarray) -> None:
    skin, arteries = vr.regions_with("skin"), vr.regions_with("artery")
    if not skin and not arteries:
        _missing(ax, "skin or artery region")
        return
    minimum = vr.result.metrics["region_min_temperature"]
    for r in skin:
        ax.plot(t, minimum[:, r], color=STYLES["skin"].colour, label=vr.result.region_names[r])
    for r in arteries:
        ax.plot(t, minimum[:, r], ls="-.", color=STYLES["artery"].colour, label=vr.result.region_names[r])
    ax.axhline(0.0, color="#38b6f0", ls=":", lw=_thin(), label="0 °C")
    if skin:
        ax.axhline(vr.thresholds.melanocyte_c, color="0.3", ls="--", lw=_thin(),
                   label=f"{_deg(vr.thresholds.melanocyte_c)}: melanocytes")
    ax.set_ylabel("°C")


def safety_readings(vr: VizResult) -> list[str]:
    """The clinical summary's sentences for the skin and the vessels (``reading``), as printed after a run;
    none for a result without them."""
    clinical = vr.clinical or {}
    lines = [f"skin: {clinical['skin']['reading']}"] if "reading" in clinical.get("skin", {}) else []
    return lines + [f"{name}: {v['reading']}" for name, v in clinical.get("vessels", {}).items() if "reading" in v]


def _regions(ax, vr: VizResult, t: np.ndarray) -> None:
    minimum = vr.result.metrics["region_min_temperature"]
    colours = matplotlib.colormaps["tab10"] if len(vr.result.region_names) <= 10 else matplotlib.colormaps["tab20"]
    for r, name in enumerate(vr.result.region_names):
        ax.plot(t, minimum[:, r], color=colours(r % colours.N), label=name)
    ax.set_ylabel("°C")


def _controller(ax, vr: VizResult) -> None:
    """Each controlled probe's sensor against its set point, its flow u(t) on the right; open-loop cryogen
    probes their surface temperature."""
    shown = False
    flows = None
    for k, (name, device) in enumerate(vr.devices.items()):
        r = _by_phase(device["series"])
        if "sensor_C" in r:
            colour = f"C{k}"
            ax.plot(r["time"], r["sensor_C"], color=colour, label=f"{name}: sensor")
            ax.plot(r["time"], r["set_point_C"], color=colour, ls="--", lw=_thin(), label=f"{name}: set point")
            flows = flows or ax.twinx()
            flows.plot(r["time"], r["flow"], color=colour, ls=":", label=f"{name}: flow u")
            shown = True
        elif "surface_temperature_C" in r:
            ax.plot(r["time"], r["surface_temperature_C"], color=f"C{k}", label=f"{name}: active surface")
            shown = True
    if not shown:
        _missing(ax, "controlled probe")
        return
    ax.set_ylabel("°C")
    if flows is not None:
        flows.set_ylim(0.0, 1.05)
        flows.set_ylabel("flow u")
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = flows.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, loc="best", framealpha=0.85)


def _by_phase(series: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A device's series with a NaN row between protocol phases, so that lines break where it was off."""
    if "phase" not in series or len(series["phase"]) < 2:
        return series
    breaks = np.flatnonzero(np.diff(series["phase"]) != 0) + 1
    return {k: np.insert(np.asarray(v, float), breaks, np.nan) for k, v in series.items()}


#: Per device model: the series of heat it moves (W), how it is labelled and its sign into the tissue.
HEAT_SERIES = {"cooling_W": ("drawn out", -1.0), "heat_drawn_W": ("drawn out", -1.0),
               "heating_W": ("heater", 1.0), "power_W": ("delivered", 1.0)}


def _device_heat(ax, vr: VizResult) -> None:
    """Heat into the tissue through each device (W): negative for a cryoprobe drawing it out."""
    shown = False
    for k, (name, device) in enumerate(vr.devices.items()):
        r = _by_phase(device["series"])
        for key, (what, sign) in HEAT_SERIES.items():
            if key in r and np.any(np.nan_to_num(r[key]) != 0):
                ax.plot(r["time"], sign * r[key], color=f"C{k}", ls="-" if sign < 0 else "--",
                        label=f"{name} ({device['model']}): {what}")
                shown = True
    if not shown:
        _missing(ax, "device records")
        return
    ax.axhline(0.0, color="0.5", lw=_thin())
    ax.set_ylabel("W into the tissue")


#: Colours of the injury grades (none, neurapraxia, axonotmesis, neurotmesis) in the nerve-profile picture.
GRADE_COLOURS = ("#ffffff", "#fff3b0", "#9ecae1", "#3182bd")


def nerve_figure(vr: VizResult, size: tuple[int, int] = (1200, 900)) -> Figure | None:
    """The injury along each cooled nerve (the picture ``NAME_nerve.png``), or None when the result has no
    nerve profiles.

    Per nerve, along its centreline (mm from its proximal end): the coldest and the warmest minimum
    temperature of its cross-section (the extent of the injury and where the whole section was reached),
    the injury grades shaded by temperature, the time at the injury level, and the verdict of the clinical
    reading: lengths, durable block, recovery forecast. Beside it, when the result reads the nerve fibre by
    fibre (``/clinical_fibres``), its cross-section: each fibre at its offset, coloured by its minimum
    temperature, the levels as contour lines and the block verdict (:func:`_fibre_section`).
    """
    profiles = vr.nerve_profiles
    if not profiles:
        return None
    clinical = vr.clinical or {}
    limits = vr.thresholds
    fibres = {name: f for name, f in vr.fibres.items() if len(f.get("u_mm", ())) >= 3}
    shown = _nerves_shown(vr, profiles)
    across = [name for name in shown if name in fibres]
    norm = _fibre_norm([fibres[name]["min_temperature"] for name in across], limits)
    with matplotlib.rc_context(_scaled_style(size_scale(size))):
        fig = Figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(len(shown), 2, width_ratios=(1.8, 1.0), left=0.08, right=0.92 if across else 0.9,
                                top=0.86, bottom=0.09, hspace=0.5, wspace=0.32)
        axes = []
        for row, name in enumerate(shown):
            ax = fig.add_subplot(grid[row, 0] if name in fibres else grid[row, :])
            _nerve_profile(ax, name, profiles[name], (clinical.get("nerves") or {}).get(name, {}), limits)
            if name in fibres:
                _fibre_section(fig.add_subplot(grid[row, 1]), name, fibres[name], limits, norm)
            axes.append(ax)
        axes[-1].set_xlabel("mm along the nerve from its proximal end")
        fig.legend(handles=[Patch(facecolor=c, edgecolor="0.6", label=g) for c, g in
                            zip(GRADE_COLOURS[1:], ("neurapraxia", "axonotmesis", "neurotmesis"))],
                   loc="upper right", ncol=3, frameon=False, bbox_to_anchor=(0.98, 0.965))
        where = "along and across the nerve" if across else "along the nerve"
        fig.suptitle(f"{vr.name}: injury {where}", x=0.08, ha="left", fontsize="xx-large")
    return fig


def _nerves_shown(vr: VizResult, profiles: dict[str, dict]) -> list[str]:
    """The nerves of the nerve picture: those cooled to neurapraxia and the probes' targets (a missed target
    is worth seeing), in profile order; the first nerve when there are none."""
    targets = vr.result.clinical_inputs.targets or []
    cold = vr.thresholds.neurapraxia_c
    cooled = [n for n, p in profiles.items() if n in targets or np.nanmin(p["coldest_C"]) <= cold]
    return cooled or list(profiles)[:1]


def _fibre_norm(minima: list[np.ndarray], limits: Thresholds) -> Normalize:
    """One temperature scale for every cross-section of the picture (the same colour, the same temperature),
    from the coldest fibre (at least 10 degrees below the injury level) to the warmest (at least 0 °C)."""
    if not minima:
        return Normalize(limits.injury_c - 10.0, 0.0)
    low = min(min(float(np.min(m)) for m in minima), limits.injury_c - 10.0)
    return Normalize(low, max(max(float(np.max(m)) for m in minima), 0.0))


def _fibre_section(ax, name: str, fibres: dict, limits: Thresholds, norm: Normalize) -> None:
    """The nerve's cross-section at the lesion: each fibre at its offset (u, v) coloured by its minimum
    temperature on ``norm``, the levels as contour lines of it, and the verdict at the injury level in the
    title."""
    u, v, cold = fibres["u_mm"], fibres["v_mm"], fibres["min_temperature"]
    pitch = _fibre_pitch(u, v)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlim(u.min() - pitch, u.max() + pitch)
    ax.set_ylim(v.min() - pitch, v.max() + pitch)
    dots = ax.scatter(u, v, c=cold, cmap=FIBRE_MAP, norm=norm, marker="s", s=_marker_area(ax, pitch), linewidths=0)
    injury = float(fibres.get("injury_c", limits.injury_c))
    _fibre_levels(ax, u, v, cold, fibres.get("levels", [injury]), injury, pitch)
    bar = ax.figure.colorbar(dots, cax=ax.inset_axes([1.05, 0.0, 0.05, 1.0]))
    bar.set_label("fibre minimum °C")
    ax.set_xlabel("mm across (normal)")
    ax.set_ylabel("mm across (binormal)")
    ax.set_title(_fibre_title(name, fibres, injury), loc="left")


def _fibre_levels(ax, u: np.ndarray, v: np.ndarray, cold: np.ndarray, levels, injury: float, pitch: float) -> None:
    """The levels the fibres crossed as labelled contour lines of their minimum temperature, black on a white
    halo as in the slice (the fibres already carry the isotherm colours), the injury level bold; triangles
    longer than a few fibre spacings are masked so that a concave section is not bridged."""
    inside = sorted(float(c) for c in np.atleast_1d(levels) if cold.min() < c < cold.max())
    if not inside:  # the whole section on one side of every level: nothing to draw
        return
    tri = Triangulation(u, v)
    corners = np.stack([u[tri.triangles], v[tri.triangles]], axis=-1)
    edges = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=-1)
    tri.set_mask(edges.max(axis=1) > 4.0 * pitch)
    widths = [(2.0 if np.isclose(c, injury) else 1.1) * _thin() for c in inside]
    lines = ax.tricontour(tri, cold, levels=inside, colors="black", linewidths=widths)
    lines.set(path_effects=[patheffects.withStroke(linewidth=max(widths) + 2.0 * _thin(), foreground="white")])
    for label in ax.clabel(lines, fmt=_deg, fontsize="small", colors="black"):  # readable on the darkest fibres
        label.set_path_effects([patheffects.withStroke(linewidth=2.5 * _thin(), foreground="white")])


def _fibre_title(name: str, fibres: dict, injury: float) -> str:
    """``'nerve: partial block\n57 % of fibres at ≤ −20 °C'``: the summary's verdict, else the fibres' own."""
    summary = fibres.get("summary") or {}
    fraction = summary.get("injured_fraction")
    if fraction is None:  # no summary: the fibres that reached the level (without a minimum length)
        fraction = float(np.mean(fibres["min_temperature"] <= injury))
    verdict = summary.get("verdict", "complete" if fraction >= 0.9 else "partial" if fraction > 0 else "none")
    block = {"complete": "complete block", "partial": "partial block"}.get(verdict, "no block")
    return f"{name}: {block}\n{_percent(fraction)} of fibres at ≤ {_deg(injury)}"


def _percent(fraction: float) -> str:
    """``0.568`` → ``'57 %'``; a fraction that rounds to 0 or 100 % but is not says so (``'< 1 %'``)."""
    if 0.0 < fraction < 0.005:
        return "< 1 %"
    if 0.995 <= fraction < 1.0:
        return "> 99 %"
    return f"{100.0 * fraction:.0f} %"


def _fibre_pitch(u: np.ndarray, v: np.ndarray) -> float:
    """The spacing of the fibres (mm), from their density: in a uniform spread of spacing ``p`` the fourth
    nearest neighbour lies about ``p √(4/π)`` away (the median keeps the section's edge out of it)."""
    points = np.column_stack([u, v])
    k = min(4, len(points) - 1)
    distance, _ = cKDTree(points).query(points, k=k + 1)  # the first neighbour found is the fibre itself
    return float(np.median(distance[:, k]) / np.sqrt(k / np.pi))


def _marker_area(ax, pitch: float) -> float:
    """Marker area (points²) of a square 1.5 fibre spacings wide, so that the jittered fibres tile the section
    (the equal-aspect axes fit the larger of its spans across their side)."""
    box = ax.get_position()
    width, height = box.width * ax.figure.get_figwidth(), box.height * ax.figure.get_figheight()  # inches
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    inches_per_mm = min(width / (x1 - x0), height / (y1 - y0))
    return float((1.5 * pitch * inches_per_mm * 72.0) ** 2)  # overlapping: the jitter leaves no gaps


def _nerve_profile(ax, name: str, profile: dict, verdict: dict, limits: Thresholds) -> None:
    s, cold, warm = profile["s_mm"], profile["coldest_C"], profile["warmest_C"]
    bands = [(limits.neurotmesis_c, -300.0, 3), (limits.injury_c, limits.neurotmesis_c, 2),
             (limits.neurapraxia_c, limits.injury_c, 1)]
    low = float(np.nanmin(cold))
    for top, bottom, grade in bands:
        ax.axhspan(max(bottom, low - 20), top, facecolor=GRADE_COLOURS[grade], alpha=0.8, lw=0, zorder=0)
    ax.plot(s, cold, color="#08306b", label="coldest part of the section")
    ax.plot(s, warm, color="#08306b", ls="--", label="whole section (warmest part)")
    cooled = np.flatnonzero(cold <= limits.neurapraxia_c)
    if len(cooled):
        lo, hi = s[cooled[0]], s[cooled[-1]]
        pad = max(3.0, 0.3 * (hi - lo))
        ax.set_xlim(max(s[0], lo - pad), min(s[-1], hi + pad))
    ax.set_ylim(max(low - 15, -300.0), 40.0)
    ax.set_ylabel("minimum °C")
    if "time_below_injury_s" in profile:
        twin = ax.twinx()
        twin.plot(s, profile["time_below_injury_s"], color="#a63603", ls=":",
                  label=f"time at ≤ {_deg(limits.injury_c)} (s)")
        twin.set_ylabel("s", color="#a63603")
        twin.set_ylim(bottom=0.0)
        handles, labels = ax.get_legend_handles_labels()
        more, more_labels = twin.get_legend_handles_labels()
        ax.legend(handles + more, labels + more_labels, loc="lower right", framealpha=0.85)
    else:
        ax.legend(loc="lower right", framealpha=0.85)
    ax.grid(alpha=0.3)
    title = name
    if verdict:
        block = verdict.get("block_length_mm", 0.0)
        durable = "durable block" if verdict.get("durable_block") else "no durable block"
        title += f": {block:.1f} mm of whole section at ≤ {_deg(limits.injury_c)}, {durable}"
        weeks = (verdict.get("recovery") or {}).get("weeks")
        if weeks:
            title += f"; block expected for {weeks[0]:.0f}–{weeks[1]:.0f} weeks"
    ax.set_title(title, loc="left")
