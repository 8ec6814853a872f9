"""What each region is: its role (skin, fat, muscle, bone, nerve, artery, tissue), the centrelines of the
nerves and arteries, and the clinical thresholds they are judged by.

Roles are decided once, when a run is set up (:meth:`RoleTable.decide`), and stored in the result, so the
clinical summary (:mod:`cryofield.outcomes.clinical`) and the pictures (:mod:`cryofield.viz`) read the same answer.
A region's role is, in this order:

1. the case's explicit ``tissues.NAME.role``;
2. the role its tissue-library entry implies (:data:`LIBRARY_ROLES`: ``nerve`` a nerve, ``blood`` an artery);
3. words in its name (:data:`ROLE_WORDS`: ``greater_occipital_nerve`` is a nerve, ``trapezius`` a muscle)
   or a whole-word abbreviation (:data:`ROLE_ABBREVIATIONS`: the phantom's ``gon``);
4. generic ``tissue``.

Each nerve and artery gets a centreline (metres): the mesh metadata's (``centerlines``) when it has at
least two points, else one estimated from the region's nodes (:func:`estimated_centreline`).

Pure numpy: no plotting library is needed to decide or read roles.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from cryofield.config.case import TissueSpec

Role = Literal["skin", "fat", "muscle", "bone", "nerve", "artery", "tissue"]
#: Every role a region can have.
ROLES: tuple[str, ...] = get_args(Role)

#: Roles that get a centreline.
LINE_ROLES = ("nerve", "artery")

#: Tissue-library entries (:data:`cryofield.model.materials.TISSUE_LIBRARY`) and the role they imply.
LIBRARY_ROLES = {"skin": "skin", "fat": "fat", "muscle": "muscle", "nerve": "nerve", "bone": "bone",
                 "blood": "artery"}

#: Words that give a region its role, tried in this order (a "nerve" inside a muscle name is still a nerve).
ROLE_WORDS: list[tuple[str, tuple[str, ...]]] = [
    ("nerve", ("nerve", "neur")),
    ("artery", ("artery", "arter", "vessel", "vein", "blood")),
    ("skin", ("skin", "derm")),
    ("fat", ("fat", "adipose", "subcutaneous")),
    ("bone", ("bone", "skull", "cranium", "vertebra")),
    ("muscle", ("muscle", "trapezius", "semispinalis", "splenius", "sternocleidomastoid", "capitis",
                "fascia")),
]

#: Abbreviations that give a role only as a whole word of the name (``gon``, ``left_ton``, not ``tonsil``).
ROLE_ABBREVIATIONS = {"gon": "nerve", "ton": "nerve", "lon": "nerve"}

ROLES_FORMAT = "cryofield-roles"
ROLES_VERSION = 1


@dataclass(frozen=True)
class Thresholds:
    """The clinical thresholds (°C, mm), defined here once (docs/physics.md §4).

    Attributes
    ----------
    lesion_c
        Levels at which nerve lesion lengths are measured: −20 °C (onset of axonotmesis, Sunderland II)
        and −40 °C. The first is the nerve-injury level.
    durable_block_mm
        Whole-cross-section lesion length at the first level that gives a durable conduction block.
    thrombosis_c
        Vessels thrombose at or below this (−15 to −20 °C).
    melanocyte_c
        Skin depigmentation (melanocyte damage) begins at or below this.
    neurotmesis_c
        At or below this the nerve suffers neurotmesis (Sunderland III and worse: neuroma risk).
    froze_at
        Skin and vessels froze when they reached their tissue's ``liquidus`` (the edge of the ice).
    neurapraxia_c
        A nerve cooled to this or below, but not to the injury level, has a neurapraxia (conduction slowed,
        reversible in days; +10 to −20 °C).
    frostbite_c
        Skin frostbite at or below this (its ice forms just below).
    damage_c, damage_s, necrosis_c
        The threshold damage model of the commercial tools' cryogenic defaults: tissue is damaged once it has
        spent ``damage_s`` seconds at or below ``damage_c``, necrotic at once at or below ``necrosis_c``; the
        damage fraction is ``min(1, time below damage_c / damage_s)``, 1 at or below ``necrosis_c``.
    regrowth_mm_per_day
        The range of axonal regrowth rates the recovery forecast uses (slowest, fastest).
    profile_mm
        The spacing of the stations of the profiles along the nerves.
    fibres
        How many fibres sample each nerve's cross-section (:mod:`cryofield.outcomes.fibres`).
    fibre_levels_c
        The levels (°C, warmest first) at which the fraction of injured fibres is reported: the span of the
        literature's injury levels, from the −5 to −9 °C of an ice slurry (Garibyan 2020) to the −60 °C of
        Zhou 1983.
    complete_block_fraction
        The fraction of the fibres injured at ``injury_c`` that counts as a complete block.
    fibre_min_length_mm
        The shortest stretch of a fibre at or below a level that injures it (0: any point).
    """

    lesion_c: tuple[float, ...] = (-20.0, -40.0)
    durable_block_mm: float = 4.0
    thrombosis_c: float = -15.0
    melanocyte_c: float = -4.0
    neurotmesis_c: float = -100.0
    froze_at: Literal["liquidus"] = "liquidus"
    neurapraxia_c: float = 10.0
    frostbite_c: float = 0.0
    damage_c: float = 0.0
    damage_s: float = 50.0
    necrosis_c: float = -20.0
    regrowth_mm_per_day: tuple[float, float] = (1.0, 2.0)
    profile_mm: float = 0.5
    fibres: int = 1000
    fibre_levels_c: tuple[float, ...] = (-5.0, -10.0, -20.0, -40.0, -60.0)
    complete_block_fraction: float = 0.9
    fibre_min_length_mm: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "lesion_c", tuple(float(c) for c in self.lesion_c))
        object.__setattr__(self, "regrowth_mm_per_day", tuple(float(v) for v in self.regrowth_mm_per_day))
        object.__setattr__(self, "fibre_levels_c", tuple(float(c) for c in self.fibre_levels_c))
        if not self.lesion_c:
            raise ValueError("at least one lesion level is needed")

    @property
    def injury_c(self) -> float:
        """The nerve-injury level: the first lesion level, at which a durable block is judged."""
        return self.lesion_c[0]

    def to_dict(self) -> dict:
        """JSON-ready form; :meth:`from_dict` reads it back.

        Examples
        --------
        >>> Thresholds.from_dict(Thresholds().to_dict()) == Thresholds()
        True
        """
        return asdict(self) | {"lesion_c": list(self.lesion_c), "regrowth_mm_per_day": list(self.regrowth_mm_per_day),
                               "fibre_levels_c": list(self.fibre_levels_c)}

    def grade(self, temperature: float | np.ndarray) -> np.ndarray:
        """The injury grade a nerve's tissue reached at a (minimum) temperature: 0 none, 1 neurapraxia,
        2 axonotmesis, 3 neurotmesis (:data:`GRADES`).

        Examples
        --------
        >>> Thresholds().grade(np.array([20.0, 0.0, -20.0, -60.0, -100.0])).tolist()
        [0, 1, 2, 2, 3]
        """
        T = np.asarray(temperature, float)
        return np.select([T <= self.neurotmesis_c, T <= self.injury_c, T <= self.neurapraxia_c], [3, 2, 1], 0)

    @classmethod
    def from_dict(cls, values: dict) -> Thresholds:
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
        return cls(**values)


def threshold_label(level: float) -> str:
    """The name of a temperature threshold in dataset and column names: -20 -> ``m20C``, 10 -> ``p10C``.

    Examples
    --------
    >>> threshold_label(-20.0), threshold_label(10)
    ('m20C', 'p10C')
    """
    return f"{'m' if level < 0 else 'p'}{abs(level):g}C"


#: The thresholds every run is judged by (unless the case's ``clinical`` section changes them).
THRESHOLDS = Thresholds()

#: Injury grades by :meth:`Thresholds.grade` (Sunderland's scale, docs/physics.md §4).
GRADES = ("none", "neurapraxia", "axonotmesis", "neurotmesis")


def region_role(name: str, tissue: TissueSpec | None = None) -> str:
    """The role of region ``name`` whose case tissue is ``tissue`` (see the module docstring for the order).

    Examples
    --------
    >>> region_role("greater_occipital_nerve"), region_role("trapezius"), region_role("gon")
    ('nerve', 'muscle', 'nerve')
    >>> region_role("tonsil"), region_role("tissue")
    ('tissue', 'tissue')
    """
    role = getattr(tissue, "role", None)
    if role is not None:
        return role
    library = getattr(tissue, "library", None)
    if library in LIBRARY_ROLES:
        return LIBRARY_ROLES[library]
    lowered = name.lower()
    for role, words in ROLE_WORDS:
        if any(word in lowered for word in words):
            return role
    for token in re.split(r"[^a-z]+", lowered):
        if token in ROLE_ABBREVIATIONS:
            return ROLE_ABBREVIATIONS[token]
    return "tissue"


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, variances (descending) and the matching unit axes (rows) of a point cloud."""
    centre = points.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov((points - centre).T) if len(points) > 1 else np.eye(3))
    order = np.argsort(values)[::-1]
    return centre, values[order], vectors[:, order].T


def estimated_centreline(nodes: np.ndarray) -> np.ndarray:
    """A centreline (K, 3) through a region's nodes (m), for a nerve or artery the mesh gives none for.

    Stations are spaced evenly along the nodes' long axis, from end to end, so a straight tube gets a line
    as long as itself. At each station the line is off the axis by the nodes' mean offset, weighted by a
    Gaussian (one station spacing wide) of their distance along the axis: smooth weights, so a layer of
    nodes across the axis (structured meshes) is never split between stations. This follows a nerve that
    is straight or gently curved.
    """
    nodes = np.asarray(nodes, float)
    centre, _, axes = principal_axes(nodes)
    s = (nodes - centre) @ axes[0]
    lo, hi = float(s.min()), float(s.max())
    if not hi > lo:
        return nodes[:1].copy()
    stations = np.linspace(lo, hi, int(np.clip(len(nodes) // 20, 2, 60)) + 1)
    spacing = stations[1] - stations[0]
    lateral = nodes - centre - np.outer(s, axes[0])
    d2 = ((s[None, :] - stations[:, None]) / spacing) ** 2
    weights = np.exp(-0.5 * (d2 - d2.min(axis=1, keepdims=True)))  # the nearest node weighs 1: no underflow
    offsets = (weights @ lateral) / weights.sum(axis=1, keepdims=True)
    return centre + np.outer(stations, axes[0]) + offsets


@dataclass(frozen=True, eq=False)
class RoleTable:
    """The role of every region, the centrelines of the nerves and arteries, and the clinical thresholds.

    Attributes
    ----------
    roles
        Role of each region, by name, in region order.
    centrelines
        (K, 3) centreline (m) of each nerve and artery region that has one.
    centreline_source
        Where each centreline came from: ``"mesh"`` (the mesh metadata) or ``"estimated"``.
    thresholds
        The thresholds the clinical summary and the pictures use.
    end_organs
        Per nerve, how far (m) it runs on beyond the distal end of its centreline to its end organ (the
        farthest territory it supplies), for the recovery forecast: the case's ``clinical.end_organ_mm``,
        else the mesh metadata's ``end_organs``. Centrelines run from the proximal end to the distal one.
    """

    roles: dict[str, str]
    centrelines: dict[str, np.ndarray] = field(default_factory=dict)
    centreline_source: dict[str, str] = field(default_factory=dict)
    thresholds: Thresholds = THRESHOLDS
    end_organs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        bad = {name: role for name, role in self.roles.items() if role not in ROLES}
        if bad:
            raise ValueError(f"unknown role(s) {bad}; roles are {', '.join(ROLES)}")
        if set(self.centrelines) != set(self.centreline_source):
            raise ValueError("every centreline needs its source and every source a centreline")

    @classmethod
    def decide(cls, region_names: list[str], tissues: dict[str, TissueSpec], metadata: dict,
               points: np.ndarray, tets: np.ndarray, elem_region: np.ndarray,
               thresholds: Thresholds = THRESHOLDS, end_organs: dict[str, float] | None = None) -> RoleTable:
        """Decide every region's role and each nerve's and artery's centreline.

        Parameters
        ----------
        region_names
            The regions, in order; ``elem_region`` indexes this list.
        tissues
            The case's tissue of each region (a region without one is judged by its name).
        metadata
            ``Mesh.metadata``; its ``centerlines`` (m) are used where they have at least two points.
        points, tets, elem_region
            The mesh (m) and each tetrahedron's region index.
        """
        roles = {name: region_role(name, tissues.get(name)) for name in region_names}
        given = (metadata or {}).get("centerlines") or {}
        lines, sources = {}, {}
        for r, name in enumerate(region_names):
            if roles[name] not in LINE_ROLES:
                continue
            line = np.asarray(given.get(name, []), float)
            if line.ndim == 2 and line.shape[1] == 3 and len(line) >= 2:
                lines[name], sources[name] = line, "mesh"
                continue
            nodes = np.unique(tets[elem_region == r])
            if len(nodes) < 2:
                continue
            line = estimated_centreline(points[nodes])
            if len(line) >= 2:
                lines[name], sources[name] = line, "estimated"
        organs = {k: float(v) for k, v in ((metadata or {}).get("end_organs") or {}).items() if k in lines}
        organs |= {k: float(v) for k, v in (end_organs or {}).items() if k in lines}
        return cls(roles, lines, sources, thresholds, organs)

    def regions_with(self, role: str) -> list[str]:
        """Names of the regions that have ``role``, in region order."""
        return [name for name, have in self.roles.items() if have == role]

    def to_json(self) -> str:
        """The table as JSON (centrelines in metres); :meth:`from_json` reads it back."""
        return json.dumps({
            "format": ROLES_FORMAT, "version": ROLES_VERSION, "roles": self.roles,
            "centrelines": {name: np.asarray(line, float).tolist()
                            for name, line in self.centrelines.items()},
            "centreline_source": self.centreline_source, "thresholds": self.thresholds.to_dict(),
            "end_organs": self.end_organs})

    @classmethod
    def from_json(cls, text: str) -> RoleTable:
        data = json.loads(text)
        if data.get("format") != ROLES_FORMAT or data.get("version") != ROLES_VERSION:
            raise ValueError(f"not a {ROLES_FORMAT} table of version {ROLES_VERSION}")
        lines = {name: np.asarray(line, float) for name, line in data["centrelines"].items()}
        return cls(dict(data["roles"]), lines, dict(data["centreline_source"]),
                   Thresholds.from_dict(data["thresholds"]), dict(data.get("end_organs", {})))

    def __eq__(self, other) -> bool:
        return isinstance(other, RoleTable) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]
