"""The run's JSON summary as types: what a run writes to ``NAME.json`` and returns in its report, and what the
printed report, the sweep tables and the pictures read.

The summary stays a plain JSON object (dicts and lists, as written); these ``TypedDict`` types name its keys
and their meaning once, so that a reader is checked against the writer. Keys marked ``NotRequired`` appear
only when the run has the thing (devices, nerves, an ice-ball recorder, checkpoints).

Examples
--------
>>> entry: LesionLength = {"whole_section_mm": 0.0, "any_part_mm": 4.65}
>>> sorted(LesionLength.__annotations__)
['any_part_mm', 'whole_section_mm']
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class LesionLength(TypedDict):
    """Length (mm) of nerve over which the whole cross-section, or any part of it, reached a level."""

    whole_section_mm: float
    any_part_mm: float


class Segment(TypedDict):
    """A stretch of nerve of one injury grade along its centreline (mm from its proximal end)."""

    grade: str
    from_mm: float
    to_mm: float
    length_mm: float
    whole_section: bool


class Recovery(TypedDict):
    """Weeks of expected block (``weeks``: fast and slow regrowth), or None with the ``reason``."""

    regrowth_mm_per_day: list[float]
    weeks: list[float] | None
    reason: NotRequired[str]
    distance_mm: NotRequired[float]
    end_organ_beyond_mm: NotRequired[float]
    lesion_from_mm: NotRequired[float]


class Relief(TypedDict):
    """The forecast of sensory return from the fibre reading (``weeks``: fast and slow regrowth), or None with
    the ``reason``."""

    weeks: list[float] | None
    reason: NotRequired[str]
    distance_mm: NotRequired[float]
    regrowth_mm_per_day: NotRequired[list[float]]
    forecast: NotRequired[str]


class FibreSummary(TypedDict):
    """A nerve read fibre by fibre (:mod:`cryofield.outcomes.fibres`): fractions are of the cross-section's area."""

    fibres: int
    grades: dict[str, float]  # none, neurapraxia, axonotmesis, neurotmesis -> fraction
    injured_fraction_by_level: dict[str, float]  # by level (°C, ``f"{c:g}"``), warmest first
    injury_c: float
    min_length_mm: float
    complete_fraction: float
    injured_fraction: float  # at the injury level
    verdict: str  # complete, partial, none
    injured_from_mm: float | None
    to_end_mm: float | None
    relief: Relief


class NerveReading(TypedDict):
    """One nerve's clinical reading (:meth:`cryofield.outcomes.clinical.ClinicalReading.summary`)."""

    min_temperature_C: float
    lesion_length: dict[str, LesionLength]  # by level (°C, as written by ``f"{c:g}"``)
    grades: dict[str, dict[str, float]]  # neurapraxia, axonotmesis, neurotmesis -> any_part_mm, whole_section_mm
    block_length_mm: float
    durable_block: bool
    segments: list[Segment]
    centreline: str
    target: bool
    max_time_below_injury_s: NotRequired[float]
    recovery: Recovery
    fibres: NotRequired[FibreSummary]


class SkinReading(TypedDict):
    """The skin's coldest point and the levels it reached (``reading``: the words print and pictures use)."""

    min_temperature_C: float
    froze: bool
    frostbite: bool  # froze, at or below the frostbite level
    melanocyte_damage: bool
    reading: str


class VesselReading(TypedDict):
    """A vessel's lumen and wall minimum and the levels they reached (``reading``)."""

    min_temperature_C: float
    froze: bool
    thrombosis_risk: bool
    reading: str
    wall_min_temperature_C: NotRequired[float]


class ClinicalSummary(TypedDict):
    """The clinical block: thresholds, the nerves, the skin, the vessels, the off-target and damaged volumes."""

    thresholds: dict
    thresholds_C: list[float]
    durable_block_mm: float
    targets: list[str]
    nerves: dict[str, NerveReading]
    skin: NotRequired[SkinReading]
    vessels: dict[str, VesselReading]
    off_target_frozen_mm3: dict[str, float]
    damage: NotRequired[dict[str, dict[str, float]]]  # damaged_mm3, necrotic_mm3 -> region -> mm³


class RegionSummary(TypedDict):
    min_temperature_C: float
    max_volume_below_mm3: dict[str, float]  # by isotherm
    max_time_below_s: dict[str, float]  # by dose threshold


class TimeStep(TypedDict):
    forward_euler_limit_s: float
    max_dt_s: float
    max_change_K: float
    tolerance_K: float | None
    steps: int
    rejected_steps: int
    operator_applications: int
    full_mesh_equivalent_applications: float


class RunSummary(TypedDict):
    """The whole summary of one run (``NAME.json``)."""

    case: str
    cryofield_version: str
    backend: str
    device: str
    backend_chosen_by: str
    precision: str
    backend_diagnostics: dict
    scheme: str
    nodes: int
    elements: int
    axisymmetric: bool
    simulated_time_s: float
    time_step: TimeStep
    timings_s: dict[str, float]  # setup_s, basal_s, compile_s, stepping_s, output_s
    throughput: dict[str, float]  # dof_steps_per_s
    total_volume_below_mm3: dict[str, float]  # by isotherm
    regions: dict[str, RegionSummary]
    probes: dict[str, dict[str, float]]  # min_temperature_C
    mesh_notes: list[str]
    devices: NotRequired[dict[str, dict]]
    clinical: NotRequired[ClinicalSummary]
    checkpoints: dict
    iceball_mm: NotRequired[dict[str, dict[str, dict[str, float]]]]  # probe -> isotherm -> width, length, beyond_tip
    ensemble: dict
    run_id: str
