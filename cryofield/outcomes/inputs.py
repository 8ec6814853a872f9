"""What the clinical reading needs besides the mesh, the role table and the dose fields, built once.

The run builds the :class:`ClinicalInputs` from its plan (:func:`clinical_inputs`) and stores them in the
result beside the role table (``/roles`` attributes ``liquidus`` and ``targets``); the summary, the printed
report and the pictures all read that one object, so they cannot disagree. A result written before the
inputs were stored (format version 2) gets them from its stored case (:meth:`ClinicalInputs.from_case`),
the way they were derived then.

Examples
--------
>>> roles = RoleTable({"gon": "nerve", "artery": "artery"}, {}, {})
>>> inputs = ClinicalInputs({"gon": -1.0, "artery": -0.6}, {"artery": np.array([3, 4])}, ["gon"])
>>> ClinicalInputs.from_attrs(inputs.to_attrs(), {"artery_wall": np.array([[4, 3, 4]])}, roles) == inputs
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import yaml

from cryofield.model.materials import DEFAULT_LIQUIDUS
from cryofield.model.roles import RoleTable
from cryofield.outcomes.clinical import ClinicalReading

if TYPE_CHECKING:
    from cryofield.config.case import Case


@dataclass
class ClinicalInputs:
    """Per region its tissue's liquidus (°C, the edge of the ice), per vessel the nodes of its wall, and the
    nerves the probes aim at (None: every nerve is a target)."""

    liquidus: dict[str, float]
    walls: dict[str, np.ndarray] = field(default_factory=dict)
    targets: list[str] | None = None

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, ClinicalInputs) and self.liquidus == other.liquidus
                and self.targets == other.targets and self.walls.keys() == other.walls.keys()
                and all(np.array_equal(self.walls[k], other.walls[k]) for k in self.walls))

    def to_attrs(self) -> dict[str, str]:
        """The attributes the result stores (the walls are surfaces of its mesh already)."""
        return {"liquidus": json.dumps(self.liquidus), "targets": json.dumps(self.targets)}

    @classmethod
    def from_attrs(cls, attrs: Mapping, surfaces: Mapping[str, np.ndarray], roles: RoleTable) -> ClinicalInputs:
        """Read back :meth:`to_attrs` of a result whose mesh has ``surfaces``."""
        return cls({k: float(v) for k, v in json.loads(attrs["liquidus"]).items()}, vessel_walls(surfaces, roles),
                   json.loads(attrs["targets"]))

    @classmethod
    def from_case(cls, case_yaml: str, region_names: list[str], surfaces: Mapping[str, np.ndarray],
                  roles: RoleTable) -> ClinicalInputs:
        """The inputs of a result written before they were stored (format version 2), from its stored case."""
        case = yaml.safe_load(case_yaml) or {}
        tissues = case.get("tissues") or {}
        targets = [p["placement"]["target"]["nerve"] for p in case.get("probes") or []
                   if (p.get("placement") or {}).get("target")]
        return cls({name: _stored_liquidus(name, tissues.get(name)) for name in region_names},
                   vessel_walls(surfaces, roles), targets or None)

    def reading(self, points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray, region_names: list[str],
                roles: RoleTable) -> ClinicalReading:
        """The clinical reading of a mesh with these inputs."""
        return ClinicalReading(points, tets, elem_region, region_names, roles, self.liquidus)


def vessel_walls(surfaces: Mapping[str, np.ndarray], roles: RoleTable) -> dict[str, np.ndarray]:
    """Per artery region, the nodes of its wall: the mesh's surface ``NAME_wall`` when there is one."""
    return {v: np.unique(surfaces[f"{v}_wall"]) for v in roles.regions_with("artery") if f"{v}_wall" in surfaces}


def clinical_inputs(case: Case, region_names: list[str], liquidus: list[float],
                    surfaces: Mapping[str, np.ndarray], roles: RoleTable) -> ClinicalInputs:
    """The inputs of a run: each region's liquidus (its material's), the vessels' walls, and the nerves the
    case's probes aim at (their placements' targets)."""
    targets = [p.placement.target.nerve for p in case.probes if p.placement is not None and p.placement.target]
    return ClinicalInputs(dict(zip(region_names, map(float, liquidus))), vessel_walls(surfaces, roles),
                          targets or None)


def _stored_liquidus(name: str, tissue: dict | None) -> float:
    """The liquidus (°C) of a region's tissue as a stored case gives it (the default when it cannot say)."""
    from cryofield.config.case import TissueSpec

    try:
        return TissueSpec.model_validate({k: v for k, v in (tissue or {}).items() if v is not None}).material(
            name).liquidus
    except ValueError:
        return DEFAULT_LIQUIDUS
