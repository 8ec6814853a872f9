"""Schemas of a case's mesh section and of its probes' placements: what a case says, not what is built.

:class:`MeshSpec` names where the mesh comes from: a file, a generator (:data:`Generator`, one class per
``kind``) or the occipital phantom (:class:`PhantomSpec`: size preset, side, :class:`Anatomy`, element
sizes). :class:`ProbePlacement` is a needle probe's gauge, active length and pose in the phantom. The code
that acts on them lives in :mod:`cryofield.mesh`: :mod:`~cryofield.mesh.sources` loads a mesh,
:mod:`~cryofield.mesh.anatomy` builds the phantom's geometry (and describes its frame),
:mod:`~cryofield.mesh.placement` resolves and checks poses, :mod:`~cryofield.mesh.phantom` meshes it.

A leaf module (nothing else of cryofield is imported here), so that :mod:`cryofield.config.case` and
:mod:`cryofield.mesh` can both import it without importing each other.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base for every case section: unknown keys are errors, numbers finite, values checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# The occipital phantom's anatomy (frame and geometry: cryofield.mesh.anatomy).

Length = Annotated[float, Field(gt=0, le=200)]

#: A landmark as (lateral, inferior) distances from the EOP in mm.
Landmark2 = tuple[Annotated[float, Field(ge=0, le=150)], Annotated[float, Field(ge=-100, le=150)]]


#: Cross-section presets of the greater occipital nerve (docs/physics.md §6): ultrasound area (mm²) and width
#: (mm) of the flattened band; the thickness is that of the ellipse of this area and width.
GON_SECTIONS = {"symptomatic": {"area": 4.1, "width": 3.8},  # [R] Cho, Haun & Kettner 2012; width [R] 3.5-4.2
                "asymptomatic": {"area": 2.0, "width": 2.654}}  # [R] area; [D] width at the symptomatic aspect


def ellipse_thickness(area: float, width: float) -> float:
    """Short axis (mm) of the ellipse of ``area`` (mm²) and long axis ``width`` (mm).

    Examples
    --------
    >>> round(ellipse_thickness(4.1, 3.8), 3)
    1.374
    """
    return 4.0 * area / (np.pi * width)


class Anatomy(BaseModel):
    """Landmarks, nerve and vessel sizes and layer thicknesses (mm, degrees); defaults are published means.

    Landmarks are ``(lateral, inferior)`` distances from the EOP; depths below the skin where a source
    gives them. The GON is a flattened band: an ellipse ``gon_width`` by ``gon_thickness`` whose long axis
    lies ``gon_orientation`` degrees from the skin plane; ``gon_state`` picks the preset (:data:`GON_SECTIONS`)
    that fills in the width and thickness not given.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    skin_thickness: Length = 2.0  # [M] occipital scalp epidermis + dermis
    subcutaneous_thickness: Length = 7.5  # [D] skin + subcutaneous 9.5 mm covers the GON at depth 6.9 mm
    trapezius_thickness: Length = 4.15  # [R] Hung et al. 2010: 3.4-4.9 mm
    bone_thickness: Length = 15.4  # [R] cadaver study: 15.4 mm at the EOP (9-29)
    nuchal_angle: Annotated[float, Field(ge=5, le=60)] = 20.0  # [M] bone surface below the SNL leaves at this angle
    occipital_radius: Annotated[float, Field(ge=20, le=500)] = 80.0  # [M] sagittal curvature of the squama

    gon_state: Literal["symptomatic", "asymptomatic"] = "symptomatic"  # which side's ultrasound section
    gon_width: Length | None = None  # long axis; default the state's preset (3.8 mm symptomatic)
    gon_thickness: Length | None = None  # short axis; default the preset ellipse's (1.37 mm symptomatic)
    gon_orientation: Annotated[float, Field(ge=-90, le=90)] = 0.0  # long axis from the skin plane, about the nerve
    gon_snl: Landmark2 = (21.8, 0.0)  # [R] Shim et al. 2011: 20.5-23.1 mm lateral at the SNL
    gon_snl_depth: Length = 6.9  # [R] Shim et al. 2011: 6.8-7.0 mm below the skin
    gon_trapezius: Landmark2 = (22.6, 16.3)  # [R] Kim et al. 2018: pierces the trapezius
    gon_semispinalis: Landmark2 = (13.1, 27.7)  # [R] Kim et al. 2018: pierces the semispinalis capitis
    gon_obliquus: Landmark2 = (30.2, 52.3)  # [R] Kim et al. 2018: winds round the obliquus capitis inferior
    gon_territory: Length = 170.0  # [D] along the nerve from the SNL to the vertex: half the ~340 mm nasion-inion arc

    artery_diameter: Length = 2.5  # [R] Schmidt & Adelmann 2001: 2.3-2.7 mm outer diameter at the SNL
    artery_gap: Annotated[float, Field(gt=0, le=20)] = 1.35  # [R] Shim et al. 2011: 1.2-1.5 mm lateral of the GON
    artery_pierces: Landmark2 = (36.0, 12.0)  # [M] becomes subcutaneous between trapezius and SCM insertions
    artery_superior: Landmark2 = (40.0, -35.0)  # [R] Schmidt & Adelmann: ~40 mm lateral further up

    ton_diameter: Length = 1.3  # [R] Tubbs: ~1.3 mm
    ton_trapezius: Landmark2 = (12.9, 44.2)  # [R] Kim et al. 2018: pierces the trapezius
    ton_semispinalis: Landmark2 = (11.5, 61.4)  # [R] Kim et al. 2018: pierces the semispinalis capitis
    ton_end: Landmark2 = (6.0, 4.0)  # [M] ends in the skin below the EOP

    lon_diameter: Length = 1.2  # [M]
    lon_scm: Landmark2 = (64.0, 79.0)  # [R] Saglam et al. 2024: posterior border of the sternocleidomastoid

    medial_extent: Annotated[float, Field(ge=0, le=50)] = 10.0  # model reaches this far past the midline
    lateral_extent: Length = 85.0
    superior_extent: Length = 35.0
    inferior_extent: Length = 95.0

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "gon_diameter" in data:
            raise ValueError("gon_diameter is replaced by gon_width and gon_thickness (the GON is a flattened "
                             "band, docs/physics.md §6), or gon_state: symptomatic | asymptomatic")
        return data

    def gon_section(self) -> tuple[float, float]:
        """(width, thickness) of the GON's elliptical cross-section (mm); a thickness not given is that of the
        preset's area at this width.

        Examples
        --------
        >>> [round(v, 2) for v in Anatomy().gon_section()]
        [3.8, 1.37]
        >>> [round(v, 2) for v in Anatomy(gon_state="asymptomatic").gon_section()]
        [2.65, 0.96]
        """
        preset = GON_SECTIONS[self.gon_state]
        width = self.gon_width if self.gon_width is not None else preset["width"]
        thickness = self.gon_thickness if self.gon_thickness is not None else ellipse_thickness(preset["area"], width)
        return width, thickness

    def gon_extent(self, direction: str) -> float:
        """Half the GON's extent (mm) across the skin (``"lateral"``) or into the depth (``"depth"``)."""
        a, b = (v / 2 for v in self.gon_section())
        angle = np.radians(self.gon_orientation)
        along, across = (np.cos(angle), np.sin(angle)) if direction == "lateral" else (np.sin(angle), np.cos(angle))
        return float(np.hypot(a * along, b * across))

    @model_validator(mode="after")
    def _consistent(self):
        width, thickness = self.gon_section()
        if thickness > width:
            raise ValueError(f"gon_thickness ({thickness:g} mm) must not exceed gon_width ({width:g} mm): the width "
                             "is the long axis")
        if self.occipital_radius * np.cos(np.radians(self.nuchal_angle)) <= self.bone_thickness:
            raise ValueError("occipital_radius too small: the bone surface must curve down through the deep boundary")
        if self.gon_snl_depth + self.gon_extent("depth") >= self.skin_thickness + self.subcutaneous_thickness:
            raise ValueError("the GON at the superior nuchal line must lie above the bone: increase "
                             "subcutaneous_thickness or decrease gon_snl_depth / gon_thickness")
        if self.lon_scm[0] + 5 > self.lateral_extent or self.inferior_extent < self.lon_scm[1] + 5:
            raise ValueError("lateral_extent / inferior_extent must include the lesser occipital nerve")
        return self


# Needle probes in the phantom (poses and their checks: cryofield.mesh.placement).

#: Outer diameter (mm) of cryoprobe needles by gauge (docs/physics.md §5).
GAUGES = {"14G": 2.108, "16G": 1.651, "18G": 1.270, "20G": 0.908, "22G": 0.718, "25G": 0.515, "27G": 0.413}

Vector = tuple[float, float, float]


class NerveTarget(BaseModel):
    """Where the tip sits relative to a nerve of the phantom."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nerve: Literal["gon", "ton", "lon"]
    at: str | None = None  # a landmark of that nerve; default: gon superior_nuchal_line, ton/lon their exit
    along: Annotated[float, Field(ge=-100, le=100)] = 0.0  # mm along the nerve from there, + distal
    side: Literal["lateral", "medial", "superficial", "deep"] = "medial"
    gap: Annotated[float, Field(ge=0, le=30)] = 0.5  # mm of tissue between the nerve and the probe


class Approach(BaseModel):
    """Direction of the needle: where it enters relative to the tip, and its angle to the skin."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    entry: Literal["lateral", "medial", "superior", "inferior"] = Field(alias="from")
    angle: Annotated[float, Field(gt=0, le=90)] = 30.0  # degrees between the needle and the skin (90: straight in)


class NeedleRow(BaseModel):
    """Several parallel needles of one gauge and length, placed as one device (a multi-needle tip).

    ``count`` needles ``spacing`` mm apart (centre to centre) in a row: ``along`` the target nerve, or
    ``across`` it (the default), or along a given direction ``[dx, dy, dz]`` (made normal to the needles).
    The pose places the middle needle (number ``count // 2``); the others sit beside it. The defaults are
    the handheld N2O devices' three needles [M] (docs/physics.md §5).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    count: Annotated[int, Field(ge=1, le=9)] = 3
    spacing: Annotated[float, Field(gt=0, le=30)] = 2.0
    row: Literal["along", "across"] | Vector = "across"


class ProbePlacement(BaseModel):
    """A needle probe's gauge, active length and pose (see :mod:`cryofield.mesh.placement`); with ``needles``
    a multi-needle tip (:class:`NeedleRow`); with ``contact_radius`` (mm) a skin contact round each entry
    point, the surface ``NAME_contact`` (for a skin warmer)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gauge: Literal["14G", "16G", "18G", "20G", "22G", "25G", "27G"]
    active_length: Annotated[float, Field(gt=0, le=40)]
    target: NerveTarget | None = None
    tip: Vector | None = None
    approach: Approach | None = None
    direction: Vector | None = None
    needles: NeedleRow | None = None
    contact_radius: Annotated[float, Field(gt=0, le=30)] | None = None

    @model_validator(mode="after")
    def _one_of_each(self):
        if (self.target is None) == (self.tip is None):
            raise ValueError("give exactly one of 'target' (relative to a nerve) or 'tip' (absolute, mm)")
        if (self.approach is None) == (self.direction is None):
            raise ValueError("give exactly one of 'approach' or 'direction'")
        if self.direction is not None and np.linalg.norm(self.direction) == 0:
            raise ValueError("direction must not be zero")
        if self.needles is not None and self.needles.count > 1:
            if self.needles.spacing < GAUGES[self.gauge] + 0.1:
                raise ValueError(f"needles {self.needles.spacing:g} mm apart would touch: {self.gauge} needles are "
                                 f"{GAUGES[self.gauge]:g} mm wide and need 0.1 mm of tissue between them")
            if isinstance(self.needles.row, str) and self.target is None:
                raise ValueError("a row 'along' or 'across' needs a nerve target; give the row as [dx, dy, dz]")
        return self


# Fluid pockets (hydrodissection) in the phantom.


class PocketTarget(BaseModel):
    """Where a pocket sits relative to a nerve: ``around`` it (centred on it) or beside it on ``side``,
    with ``gap`` mm between the nerve's surface and the pocket's."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    nerve: Literal["gon", "ton", "lon"]
    at: str | None = None
    along: Annotated[float, Field(ge=-100, le=100)] = 0.0
    side: Literal["around", "lateral", "medial", "superficial", "deep"] = "around"
    gap: Annotated[float, Field(ge=0, le=30)] = 0.0


class Pocket(BaseModel):
    """A fluid pocket (hydrodissection): an ellipsoid of ``size`` (full lengths, mm) in the region ``pocket``.

    With a ``target`` its axes follow the nerve there (along it, across it parallel to the skin, into the
    depth); with a ``centre`` ([x, y, z] mm) they are x, y, z. Nerves and the artery keep their own
    tissue where the pocket overlaps them (the fluid surrounds them); probes are carved out of it.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size: tuple[Annotated[float, Field(gt=0, le=60)], Annotated[float, Field(gt=0, le=60)],
                Annotated[float, Field(gt=0, le=60)]]
    target: PocketTarget | None = None
    centre: Vector | None = None

    @model_validator(mode="after")
    def _one_place(self):
        if (self.target is None) == (self.centre is None):
            raise ValueError("give exactly one of 'target' (relative to a nerve) or 'centre' (absolute, mm)")
        return self


# The phantom (meshed by cryofield.mesh.phantom).

#: Built-in tissue library entry of each region, for cases and the clinical summary (``pocket`` only in a
#: phantom with fluid pockets).
TISSUE_OF = {"skin": "skin", "fat": "fat", "trapezius": "muscle", "semispinalis": "muscle", "bone": "bone",
             "gon": "nerve", "ton": "nerve", "lon": "nerve", "artery": "blood", "pocket": "saline"}

Size = Annotated[float, Field(gt=0, le=50)]


class MeshSizes(BaseModel):
    """Element sizes (mm); any left out come from the preset."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tip: Size | None = None
    ice: Size | None = None
    ice_radius: Size | None = None
    vessel_divisions: Annotated[float, Field(ge=1, le=40)] | None = None
    skin: Size | None = None
    far: Size | None = None


#: Size presets: coarse about 50 k nodes, medium about 300 k, fine about 1 M (with one probe).
PRESETS: dict[str, dict[str, float]] = {
    "coarse": {"tip": 0.25, "ice": 0.7, "ice_radius": 8.0, "vessel_divisions": 2.5, "skin": 3.0, "far": 6.0},
    "medium": {"tip": 0.15, "ice": 0.33, "ice_radius": 10.0, "vessel_divisions": 5.0, "skin": 1.6, "far": 4.0},
    "fine": {"tip": 0.1, "ice": 0.22, "ice_radius": 12.0, "vessel_divisions": 8.0, "skin": 1.0, "far": 3.0},
}


class PhantomSpec(BaseModel):
    """Everything that shapes a phantom except its probes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["coarse", "medium", "fine"] = "coarse"
    side: Literal["right", "left"] = "right"
    anatomy: Anatomy = Field(default_factory=Anatomy)
    sizes: MeshSizes = Field(default_factory=MeshSizes)
    pockets: list[Pocket] = []

    def resolved_sizes(self) -> dict[str, float]:
        """The preset's sizes with the overrides applied."""
        return PRESETS[self.preset] | self.sizes.model_dump(exclude_none=True)

    def tissues(self) -> dict[str, str]:
        """The library tissue of each region this phantom has (:data:`TISSUE_OF`, ``pocket`` with pockets)."""
        return {r: t for r, t in TISSUE_OF.items() if r != "pocket" or self.pockets}


# The mesh section of a case (loaded by cryofield.mesh.sources).


class SlabGenerator(Strict):
    """A structured box (lengths in ``mesh.units``); surfaces ``xmin``..``zmax``, region ``tissue``."""

    kind: Literal["slab"]
    size: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
    cells: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]


class SphereShellGenerator(Strict):
    """An octant of a spherical shell meshed by Gmsh; surfaces ``inner``, ``outer``, ``symmetry``."""

    kind: Literal["sphere_octant_shell"]
    inner_radius: Annotated[float, Field(gt=0)]
    outer_radius: Annotated[float, Field(gt=0)]
    size_inner: Annotated[float, Field(gt=0)]
    size_outer: Annotated[float, Field(gt=0)]

    @model_validator(mode="after")
    def _radii(self):
        if self.outer_radius <= self.inner_radius:
            raise ValueError("outer_radius must exceed inner_radius")
        return self


class MediumNeedle(Strict):
    """A closed-end needle in a :class:`ProbeInMediumGenerator`: parallel to z, its shaft out through the top
    (``entry: top``, pointing down) or the bottom (``entry: bottom``, pointing up).

    Lengths in ``mesh.units``: the needle's ``gauge`` (:data:`GAUGES`) or ``diameter``, its ``active_length``
    (the cylinder behind the rounded tip that freezes; the hemispherical tip is active too), the
    ``position`` (x, y) of its axis and the height ``tip`` of its apex above the bottom.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,40}$")] = "probe"
    gauge: Literal[tuple(GAUGES)] | None = None  # type: ignore[valid-type]
    diameter: Annotated[float, Field(gt=0, le=50)] | None = None
    active_length: Annotated[float, Field(gt=0, le=500)]
    position: tuple[float, float] = (0.0, 0.0)
    tip: Annotated[float, Field(gt=0)]
    entry: Literal["top", "bottom"] = "top"

    @model_validator(mode="after")
    def _one_size(self):
        if (self.gauge is None) == (self.diameter is None):
            raise ValueError("give a needle's gauge or its diameter (one of them)")
        return self

    @property
    def size(self) -> float:
        """The outer diameter (mesh units, millimetres for a gauge)."""
        return GAUGES[self.gauge] if self.gauge is not None else float(self.diameter)

    @property
    def direction(self) -> float:
        """+1 when the shaft runs up from the tip (entry through the top), -1 when it runs down."""
        return 1.0 if self.entry == "top" else -1.0

    def z_extent(self, height: float) -> tuple[float, float]:
        """The heights the needle occupies, from its apex to where its shaft leaves the medium."""
        return (self.tip, height) if self.entry == "top" else (0.0, self.tip)


class ProbeInMediumGenerator(Strict):
    """Needles in a cylinder (axis z, radius ``radius``) or a block (``size`` x, y, centred on the axis) of
    ``height``, graded from the needles (``size_at_probe`` on them to ``size_far`` at ``grading``), in full
    or ``quarter`` symmetry (x, y >= 0: every needle on the axis), or ``axisymmetric``: the r–z half plane
    of a cylinder whose needles all lie on its axis (one, or coaxial ones entering from the top and the
    bottom), meshed with triangles (:mod:`cryofield.fem.geometry`). Region ``medium``; surfaces ``NAME_active`` and
    ``NAME_shaft`` of each needle, ``top``, ``bottom``, ``side`` and, in quarter symmetry, ``symmetry``
    (axisymmetric: ``axis``, where no heat crosses). Lengths in ``mesh.units``; generated by Gmsh once
    and cached."""

    kind: Literal["probe_in_medium"]
    shape: Literal["cylinder", "block"] = "cylinder"
    radius: Annotated[float, Field(gt=0)] | None = None
    size: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = None
    height: Annotated[float, Field(gt=0)]
    needles: Annotated[list[MediumNeedle], Field(min_length=1, max_length=16)]
    symmetry: Literal["full", "quarter", "axisymmetric"] = "full"
    size_at_probe: Annotated[float, Field(gt=0)] = 0.1
    size_far: Annotated[float, Field(gt=0)] = 2.0
    grading: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _fits(self):
        if self.shape == "cylinder" and (self.radius is None or self.size is not None):
            raise ValueError("a cylinder takes a radius (and no size)")
        if self.shape == "block" and (self.size is None or self.radius is not None):
            raise ValueError("a block takes a size [x, y] (and no radius)")
        names = [n.name for n in self.needles]
        if len(set(names)) != len(names):
            raise ValueError(f"needle names must differ (got {names})")
        half = (self.radius, self.radius) if self.shape == "cylinder" else (self.size[0] / 2, self.size[1] / 2)
        for i, n in enumerate(self.needles):
            r, (x, y) = n.size / 2, n.position
            if self.symmetry != "full" and (x, y) != (0.0, 0.0):
                raise ValueError(f"needles.{i}: in {self.symmetry} symmetry every needle lies on the axis "
                                 "(position [0, 0])")
            inside = (np.hypot(x, y) + r < self.radius) if self.shape == "cylinder" else (
                abs(x) + r < half[0] and abs(y) + r < half[1])
            if not inside or n.tip >= self.height:
                raise ValueError(f"needles.{i} ({n.name}) does not lie inside the medium")
        if self.symmetry == "axisymmetric" and self.shape != "cylinder":
            raise ValueError("an axisymmetric medium is a cylinder (shape: cylinder)")
        for i, a in enumerate(self.needles):
            for b in self.needles[i + 1:]:
                (a0, a1), (b0, b1) = a.z_extent(self.height), b.z_extent(self.height)
                apart = max(a0, b0) >= min(a1, b1)  # one ends (apex) before the other begins, along z
                if not apart and np.hypot(a.position[0] - b.position[0],
                                          a.position[1] - b.position[1]) < (a.size + b.size) / 2:
                    raise ValueError(f"needles {a.name} and {b.name} overlap")
        if self.size_far < self.size_at_probe:
            raise ValueError("size_far must be at least size_at_probe")
        return self


Generator = Annotated[SlabGenerator | SphereShellGenerator | ProbeInMediumGenerator, Field(discriminator="kind")]
#: The ``kind`` of each generator; :mod:`cryofield.mesh.sources` has a function for each.
GENERATOR_KINDS: tuple[str, ...] = tuple(get_args(g.model_fields["kind"].annotation)[0]
                                         for g in get_args(get_args(Generator)[0]))


class MeshSpec(Strict):
    """Where the mesh comes from and how its tags are named.

    ``phantom``: the occipital phantom (:mod:`cryofield.mesh.phantom`), generated with the case's
    probe placements carved out and cached; its lengths are millimetres.
    """

    file: str | None = None
    generate: Generator | None = None
    phantom: PhantomSpec | None = None
    units: Literal["mm", "m"] = "mm"
    regions: dict[str, int] | None = None
    surfaces: dict[str, int] | None = None
    tag_array: str | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if sum(x is not None for x in (self.file, self.generate, self.phantom)) != 1:
            raise ValueError("give exactly one of 'file', 'generate' or 'phantom'")
        if self.phantom is not None and self.units != "mm":
            raise ValueError("the phantom is specified in millimetres: use units: mm")
        return self
