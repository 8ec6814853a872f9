"""A result file as the pictures need it: regions with roles, the protocol, snapshot choice, probe geometry.

Everything comes from the HDF5 result alone (mesh, snapshots, metrics, the case text, the mesh metadata and
the role table decided when the run was set up), so a result can be moved to another machine and rendered
there, and its pictures name the same nerves, vessels and skin as its clinical summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import yaml

from cryofield.errors import CorruptResult, InputError
from cryofield.io.results import Result, read_result
from cryofield.model.roles import RoleTable, Thresholds, threshold_label
from cryofield.outcomes.clinical import damage_fraction
from cryofield.outcomes.summary import ClinicalSummary


@dataclass(frozen=True)
class Protocol:
    """The protocol table of a result: one entry per phase (probe temperature NaN when insulated)."""

    kinds: list[str]
    start: np.ndarray
    end: np.ndarray
    probe_temperature: np.ndarray

    def phase_at(self, time: float) -> int:
        """Index of the phase running at ``time`` (a phase's end belongs to it)."""
        return int(np.clip(np.searchsorted(self.end, time - 1e-9 * max(self.end[-1], 1.0)), 0, len(self.end) - 1))


@dataclass(frozen=True)
class ProbePose:
    """A straight needle probe: tip (m), unit axis from the tip towards the handle, diameter and active length (m)."""

    tip: np.ndarray
    axis: np.ndarray
    diameter: float
    active_length: float


class VizResult:
    """A read-only view of one result for the renderers.

    Parameters
    ----------
    result
        The result read by :func:`cryofield.io.results.read_result`.
    protocol
        The result's protocol table.
    """

    def __init__(self, result: Result, protocol: Protocol):
        self.result = result
        self.protocol = protocol
        self.case = yaml.safe_load(result.case_yaml) or {}
        self._cached: tuple[int, np.ndarray] | None = None

    @classmethod
    def open(cls, path: str | Path) -> VizResult:
        """Read ``path``; a missing file is bad input, a damaged, foreign or incomplete one a corrupt result."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"result file not found: {path}")
        try:
            result = read_result(path)
            with h5py.File(path, "r") as f:
                table = f["protocol"]
                protocol = Protocol([k.decode() if isinstance(k, bytes) else str(k) for k in table["kind"][()]],
                                    table["start"][()], table["end"][()], table["probe_temperature"][()])
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptResult(path, str(exc)) from exc
        return cls(result, protocol)

    @property
    def name(self) -> str:
        return str(self.result.attrs.get("case_name", self.result.path.stem))

    @property
    def points(self) -> np.ndarray:
        return self.result.points

    @property
    def tets(self) -> np.ndarray:
        return self.result.tets

    @property
    def axisymmetric(self) -> bool:
        """Whether the result is an axisymmetric run's r–z half plane (triangles, boundary segments)."""
        return self.result.tets.shape[1] == 3

    @cached_property
    def levels(self) -> list[float]:
        """The isotherms the run measured (``outputs.isotherms``), warmest first."""
        levels = self.result.metric_attrs.get("levels", [-1.0, -20.0, -40.0])
        return sorted((float(v) for v in levels), reverse=True)

    @property
    def table(self) -> RoleTable:
        """The result's role table: roles, nerve and artery centrelines, thresholds."""
        return self.result.roles

    @property
    def thresholds(self) -> Thresholds:
        """The clinical thresholds the run was judged by."""
        return self.result.roles.thresholds

    @cached_property
    def roles(self) -> list[str]:
        """Role of each region (from the stored table), in region order."""
        return [self.table.roles[name] for name in self.result.region_names]

    def regions_with(self, role: str) -> list[int]:
        """Indices of the regions that have ``role``."""
        return [r for r, have in enumerate(self.roles) if have == role]

    @cached_property
    def region_nodes(self) -> list[np.ndarray]:
        """Sorted node indices of each region."""
        return [np.unique(self.tets[self.result.region_id == r]) for r in range(len(self.result.region_names))]

    @cached_property
    def probe_surfaces(self) -> dict[str, np.ndarray]:
        """Triangles of each probe's surface, by probe name (from the case stored in the result)."""
        out = {}
        for probe in self.case.get("probes") or []:
            surface = probe.get("surface")
            if surface in self.result.surfaces:
                out[probe["name"]] = self.result.surfaces[surface]
        return out

    def probe_pose(self, name: str) -> ProbePose | None:
        """The pose the mesh metadata gives for probe ``name``, if any."""
        pose = (self.result.metadata.get("probes") or {}).get(name)
        if not pose or "tip" not in pose or "axis" not in pose:
            return None
        axis = np.asarray(pose["axis"], float)
        return ProbePose(np.asarray(pose["tip"], float), axis / np.linalg.norm(axis),
                         float(pose.get("diameter", 0.0)), float(pose.get("active_length", 0.0)))

    @cached_property
    def nerve_profiles(self) -> dict[str, dict[str, np.ndarray]]:
        """The result's profiles along each nerve (``/clinical/NERVE``: stations ``s_mm``, the coldest and
        warmest minimum temperature of the section, grades, time at the injury level); empty without."""
        with h5py.File(self.result.path, "r") as f:
            if "clinical" not in f:
                return {}
            return {name: {k: g[k][()] for k in g} for name, g in f["clinical"].items()}

    @cached_property
    def fibres(self) -> dict[str, dict]:
        """The result's fibre-by-fibre reading of each nerve (``/clinical_fibres/NERVE``); empty without.

        Returns
        -------
        dict
            Per nerve: its arrays (``u_mm``, ``v_mm``, ``min_temperature``, ``coldest_mm``, ``grade`` (K,),
            ``length_below_mm`` (n, K), ``time`` and ``injured_fraction`` (M,)) and attributes (``levels``
            (n,) °C warmest first, ``injury_c``, and ``summary``, the nerve's fibre summary decoded from JSON).
        """
        with h5py.File(self.result.path, "r") as f:
            if "clinical_fibres" not in f:
                return {}
            return {name: {k: g[k][()] for k in g} | _fibre_attrs(g.attrs) for name, g in f["clinical_fibres"].items()
                    if "u_mm" in g}  # a nerve that stayed warm has its summary only

    @cached_property
    def clinical(self) -> ClinicalSummary | None:
        """The clinical reading of the result (:mod:`cryofield.outcomes.clinical`), from its fields and role table:
        the same block as the run's JSON summary."""
        fields, limits, inputs = self.result.fields, self.thresholds, self.result.clinical_inputs
        if "min_temperature" not in fields:
            return None
        below = fields.get(f"time_below_{threshold_label(limits.injury_c)}")
        damage = fields.get("damage_fraction")
        if damage is None and f"time_below_{threshold_label(limits.damage_c)}" in fields:
            damage = damage_fraction(fields["min_temperature"],
                                     fields[f"time_below_{threshold_label(limits.damage_c)}"], limits)
        reading = inputs.reading(self.points, self.tets, self.result.region_id, self.result.region_names, self.table)
        if not reading.nerves:
            return None
        return reading.summary(fields["min_temperature"], time_below=below, damage=damage, walls=inputs.walls,
                               targets=inputs.targets, fibres=self.fibre_summaries)

    @cached_property
    def fibre_summaries(self) -> dict[str, dict]:
        """Each nerve's fibre summary as the run stored it (``/clinical_fibres/NERVE`` attribute ``summary``);
        empty for a result without."""
        with h5py.File(self.result.path, "r") as f:
            group = f.get("clinical_fibres")
            return {} if group is None else {name: json.loads(g.attrs["summary"]) for name, g in group.items()}

    @cached_property
    def devices(self) -> dict[str, dict]:
        """The result's device records (``/devices/NAME``: controllers, heaters, vessels): per device its
        ``model``, ``surface`` and ``series`` (name -> array, ``time`` among them); empty for results without."""
        out = {}
        with h5py.File(self.result.path, "r") as f:
            for name, group in (f["devices"].items() if "devices" in f else []):
                attrs = dict(group.attrs)
                out[name] = {"model": str(attrs.get("model", "")), "surface": str(attrs.get("surface", "")),
                             "series": {k: group[k][()] for k in group}}
        return out

    @property
    def snapshot_times(self) -> np.ndarray:
        return self.result.snapshot_times

    def temperature(self, index: int) -> np.ndarray:
        """Nodal temperature (°C) of snapshot ``index`` (the last one read is kept)."""
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, self.result.snapshot(index))
        return self._cached[1]

    def default_snapshot(self) -> int:
        """The snapshot at the end of the last freeze (every phase end is a snapshot), else the last one."""
        freezes = [i for i, kind in enumerate(self.protocol.kinds) if kind == "freeze"]
        if not freezes:
            return len(self.snapshot_times) - 1
        return self.snapshot_near(float(self.protocol.end[freezes[-1]]))

    def snapshot_near(self, time: float) -> int:
        """The snapshot nearest to ``time`` (s); a time outside the run is bad input."""
        times = self.snapshot_times
        if not times[0] - 1e-9 <= time <= times[-1] + 1e-9:
            raise InputError(f"time {time:g} s is outside the run (0 to {times[-1]:g} s)", key="--time")
        return int(np.argmin(np.abs(times - time)))

    def describe_time(self, index: int) -> str:
        """``'t = 230 s, end of freeze 2 of 2'`` or ``'t = 100 s, passive thaw (phase 2 of 4)'``."""
        t = float(self.snapshot_times[index])
        p = self.protocol
        phase = p.phase_at(t)
        kind = p.kinds[phase]
        same_kind = [i for i, k in enumerate(p.kinds) if k == kind]
        ordinal = f"{kind.replace('_', ' ')} {same_kind.index(phase) + 1} of {len(same_kind)}"
        if t <= 0:
            return "t = 0 s, start"
        if abs(t - p.end[phase]) < 1e-6 * max(p.end[-1], 1.0):
            return f"t = {t:g} s, end of {ordinal}"
        return f"t = {t:g} s, during {ordinal}"

    @cached_property
    def ice_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounding box (m) of everything that ever reached the warmest isotherm during the run, or None."""
        frozen = self.result.fields["min_temperature"] <= self.levels[0]
        if not frozen.any():
            return None
        p = self.points[frozen]
        return p.min(axis=0), p.max(axis=0)

    def region_of_interest(self, margin: float = 4e-3) -> tuple[np.ndarray, np.ndarray]:
        """Box (m) around the ice of the whole run and the probes' active parts, with a margin, inside the mesh.

        The margin is at least ``margin`` and at least half the ice size, so that the nerve and the skin
        near the ice ball are in view but a large phantom does not shrink the ice to a dot.
        """
        parts = [self.points[np.unique(tri)] for tri in self.probe_surfaces.values()]
        if self.ice_box is not None:
            parts.append(np.array(self.ice_box))
        lo_mesh, hi_mesh = self.points.min(axis=0), self.points.max(axis=0)
        if not parts:
            return lo_mesh, hi_mesh
        cloud = np.vstack(parts)
        lo, hi = cloud.min(axis=0), cloud.max(axis=0)
        pad = max(margin, 0.5 * float(np.max(hi - lo)))
        return np.maximum(lo - pad, lo_mesh), np.minimum(hi + pad, hi_mesh)



def _fibre_attrs(attrs: h5py.AttributeManager) -> dict:
    """The attributes of a ``/clinical_fibres/NERVE`` group, the summary decoded (empty when absent)."""
    out = {k: attrs[k] for k in attrs if k != "summary"}
    summary = attrs.get("summary", "{}")
    out["summary"] = json.loads(summary.decode() if isinstance(summary, bytes) else str(summary))
    if "levels" in out:
        out["levels"] = np.atleast_1d(np.asarray(out["levels"], float))
    if "injury_c" in out:
        out["injury_c"] = float(out["injury_c"])
    return out
