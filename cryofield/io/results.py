"""The HDF5 result file.

Layout (all SI, temperatures °C)::

    /                     attrs: format, format_version, cryofield_version, case_name, run_id, backend,
                                 device, precision, scheme, complete (set last)
    /case                 the validated case as YAML, defaults filled in
    /case_source          the case file as the user wrote it
    /mesh                 attrs: metadata (JSON: probe poses, centerlines, landmarks; see Mesh.metadata)
    /mesh/points          (N, 3) m          /mesh/tetra (E, 4)     /mesh/region_id (E,)
    /mesh/region_names    (R,) strings      /mesh/original_node_index (N,)
    /mesh/surfaces/NAME   (F, 3) triangles  /mesh/probes/NAME (P,) node indices
                          an axisymmetric run (attrs axisymmetric): /mesh/triangle (E, 3) r-z triangles,
                          points (r, 0, z), surfaces (F, 2) segments; ParaView's Rotational Extrusion
                          turns it into the solid
    /roles                attrs: roles (JSON: each region's role, nerve and artery centrelines and where
                                 they came from, the clinical thresholds; see cryofield.model.roles.RoleTable),
                                 liquidus, targets (JSON: the clinical inputs, cryofield.outcomes.inputs)
    /snapshots/time       (S,) s            /snapshots/phase (S,)
    /snapshots/FIELD/i    (N,) one dataset per snapshot (temperature, liquid_fraction, enthalpy)
    /fields/min_temperature (N,)            /fields/time_below_m20C (N,) s below -20 °C (one per threshold)
    /metrics/time (M,)  /metrics/phase (M,)  /metrics/probe_temperature (M, P)
    /metrics/region_min_temperature (M, R)  /metrics/volume_below (M, L, R) m³, attrs levels
    /protocol             table of phases: kind, start, end, probe temperature (NaN when insulated)
    /timings              attrs: seconds per stage of the run and throughput counters
    /fields/damage_fraction (N,)            the threshold damage fraction (docs/physics.md §4)
    /devices/NAME/SERIES  (K,) a device model's records after every step (a controller's time, sensor_C,
                                 set_point_C, flow, ...), attrs: model, surface, summary (JSON)
    /clinical/NERVE/KEY   a nerve's profile along its centreline: s_mm, coldest_C, warmest_C, grade,
                                 whole_section_grade, time_below_injury_s

The file is written in the run's staging directory and published with the rest of its result set
(:mod:`cryofield.io.resultset`); ``complete`` is set last, so a file cut short never looks finished, and
``run_id`` ties it to its set's manifest, which :func:`read_result` checks when there is one beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cryofield.io.resultset import RUN_FILES, check_file
from cryofield.model.roles import RoleTable
from cryofield.outcomes.inputs import ClinicalInputs

FORMAT = "cryofield-result"
FORMAT_VERSION = 3  # 2: the /roles table; 3: the clinical inputs beside it (version 2 still reads)


#: The element dataset of ``/mesh``: tetrahedra, or an axisymmetric run's r-z triangles.
CELLS = ("tetra", "triangle")


def cell_dataset(cells) -> str:
    """The name of the ``/mesh`` dataset that holds ``cells``."""
    return CELLS[np.asarray(cells).shape[1] == 3]


def result_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """Where a run named ``name`` writes its files."""
    return {kind: out_dir / f"{name}{suffix}" for kind, suffix in RUN_FILES.items()}


class ResultWriter:
    """Writes one run's HDF5 file incrementally at ``path`` (a new file: never truncates an existing one);
    :meth:`finish` marks it complete."""

    def __init__(self, path: Path, attrs: dict[str, Any]):
        self.path = Path(path)
        self.file = h5py.File(self.path, "x")
        self.file.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False, **attrs})
        self.n_snapshots = 0
        self.snapshot_times: list[float] = []
        self.snapshot_phases: list[int] = []

    def write_text(self, name: str, text: str) -> None:
        self.file.create_dataset(name, data=text, dtype=h5py.string_dtype())

    def write_mesh(self, points, tets, region_id, region_names, surfaces: dict[str, np.ndarray],
                   probes: dict[str, np.ndarray], original_index, metadata: dict | None = None) -> None:
        g = self.file.create_group("mesh")
        g.attrs["metadata"] = json.dumps(metadata or {})
        g.create_dataset("points", data=points, compression="gzip")
        g.attrs["axisymmetric"] = np.asarray(tets).shape[1] == 3
        g.create_dataset(cell_dataset(tets), data=np.asarray(tets, np.int32), compression="gzip")
        g.create_dataset("region_id", data=np.asarray(region_id, np.int32), compression="gzip")
        g.create_dataset("region_names", data=np.array(region_names, dtype=h5py.string_dtype()))
        g.create_dataset("original_node_index", data=np.asarray(original_index, np.int64), compression="gzip")
        s = g.create_group("surfaces")
        for name, tri in surfaces.items():
            s.create_dataset(name, data=np.asarray(tri, np.int32))
        p = g.create_group("probes")
        for name, nodes in probes.items():
            p.create_dataset(name, data=np.asarray(nodes, np.int64))

    def write_roles(self, table: RoleTable, inputs: ClinicalInputs) -> None:
        """Store the regions' roles, centrelines and thresholds (decided once, when the run is set up) and the
        clinical reading's other inputs (built once from the plan)."""
        group = self.file.create_group("roles")
        group.attrs["roles"] = table.to_json()
        group.attrs.update(inputs.to_attrs())

    def write_snapshot(self, time: float, phase: int, fields: dict[str, np.ndarray]) -> None:
        for name, values in fields.items():
            self.file.require_group(f"snapshots/{name}").create_dataset(
                f"{self.n_snapshots:06d}", data=np.asarray(values, np.float64), compression="gzip", compression_opts=1)
        self.snapshot_times.append(time)
        self.snapshot_phases.append(phase)
        self.n_snapshots += 1
        self.file.flush()

    def snapshots_so_far(self) -> dict[str, np.ndarray]:
        """Every snapshot written so far: ``time`` (S,), ``phase`` (S,) and ``field_NAME`` (S, N) per field."""
        out = {"time": np.array(self.snapshot_times, float), "phase": np.array(self.snapshot_phases, np.int32)}
        for name, group in (self.file["snapshots"].items() if "snapshots" in self.file else []):
            out[f"field_{name}"] = np.array([group[f"{i:06d}"][()] for i in range(self.n_snapshots)])
        return out

    def write_arrays(self, group: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
        g = self.file.require_group(group)
        for name, values in arrays.items():
            g.create_dataset(name, data=values)
        g.attrs.update(attrs or {})

    def finish(self, attrs: dict[str, Any]) -> Path:
        """Write the snapshot index and final attributes, mark complete and close."""
        self.write_arrays("snapshots", {"time": np.array(self.snapshot_times),
                                        "phase": np.array(self.snapshot_phases, np.int32)})
        self.file.attrs.update(attrs)
        self.file.attrs["complete"] = True
        self.file.close()
        return self.path

    def abort(self) -> None:
        """Close and delete the unfinished file."""
        try:
            self.file.close()
        finally:
            self.path.unlink(missing_ok=True)


@dataclass
class Result:
    """A result file read back into memory (everything but the snapshots, which are read on demand)."""

    path: Path
    attrs: dict[str, Any]
    points: np.ndarray
    tets: np.ndarray
    region_id: np.ndarray
    region_names: list[str]
    surfaces: dict[str, np.ndarray]
    probes: dict[str, np.ndarray]
    snapshot_times: np.ndarray
    snapshot_phases: np.ndarray
    fields: dict[str, np.ndarray]
    metrics: dict[str, np.ndarray]
    metric_attrs: dict[str, Any]
    case_yaml: str
    metadata: dict
    roles: RoleTable
    #: What the clinical reading needs besides the fields (stored by the run; a version-2 file's from its case).
    clinical_inputs: ClinicalInputs
    #: The manifest of the result set the file belongs to, None for a file on its own.
    manifest: dict | None = None
    #: Per probe with a pose, the ice-ball shape over time (:mod:`cryofield.run.observers.iceball`): time, width_mm, ...
    iceball: dict = field(default_factory=dict)

    def snapshot(self, index: int, field: str = "temperature") -> np.ndarray:
        with h5py.File(self.path, "r") as f:
            return f[f"snapshots/{field}/{index:06d}"][()]


def read_result(path: str | Path) -> Result:
    """Read a complete result file (refuses partial or foreign files).

    When the file's result-set manifest is beside it (``NAME.manifest.json``), the file must be the one
    it names (run id, size, SHA-256): see :func:`cryofield.io.resultset.check_file`, whose
    :class:`~cryofield.io.resultset.ResultSetError` (a ValueError) says what does not match.
    """
    path = Path(path)
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT or not f.attrs.get("complete", False):
            raise ValueError(f"{path} is not a complete cryofield result")
        run_id = f.attrs.get("run_id")
        manifest = check_file(path, None if run_id is None else str(run_id))
        if "roles" not in f or "roles" not in f["roles"].attrs:
            raise ValueError(f"{path} was written by an older cryofield (format version "
                             f"{f.attrs.get('format_version')}, without the /roles table); "
                             "run its case again")
        m = f["mesh"]
        region_names = [s.decode() if isinstance(s, bytes) else s for s in m["region_names"][()]]
        roles = RoleTable.from_json(f["roles"].attrs["roles"])
        if list(roles.roles) != region_names:
            raise ValueError(f"{path}: the /roles table does not list the mesh's regions")
        surfaces = {k: v[()] for k, v in m["surfaces"].items()}
        case_yaml = f["case"][()].decode()
        inputs = ClinicalInputs.from_attrs(f["roles"].attrs, surfaces, roles) if "liquidus" in f["roles"].attrs \
            else ClinicalInputs.from_case(case_yaml, region_names, surfaces, roles)
        return Result(
            path=path, attrs=dict(f.attrs), points=m["points"][()], tets=m[next(k for k in CELLS if k in m)][()],
            region_id=m["region_id"][()],
            region_names=region_names,
            surfaces=surfaces, probes={k: v[()] for k, v in m["probes"].items()},
            snapshot_times=f["snapshots/time"][()], snapshot_phases=f["snapshots/phase"][()],
            fields={k: v[()] for k, v in f["fields"].items()},
            metrics={k: v[()] for k, v in f["metrics"].items()}, metric_attrs=dict(f["metrics"].attrs),
            case_yaml=case_yaml, metadata=json.loads(m.attrs.get("metadata", "{}")),
            roles=roles, clinical_inputs=inputs, manifest=manifest,
            iceball={name: {k: v[()] for k, v in g.items()} | {"levels": g.attrs["levels"]}
                     for name, g in f["iceball"].items()} if "iceball" in f else {},
        )
