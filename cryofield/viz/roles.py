"""What each region is for the pictures: a role (skin, fat, muscle, bone, nerve, artery, tissue) and its style.

Regions are known only by name. The role comes from words in the region name (``greater_occipital_nerve`` is
a nerve, ``trapezius`` a muscle) or from a whole-word abbreviation (``gon``, the occipital phantom's greater
occipital nerve); failing that, from the tissue-library entry the case used for the region (``library:
muscle``); failing that, the region is generic ``tissue``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, to_rgb

#: Words that give a region its role, tried in this order (a "nerve" inside a muscle name is still a nerve).
ROLE_WORDS: list[tuple[str, tuple[str, ...]]] = [
    ("nerve", ("nerve", "neur")),
    ("artery", ("artery", "arter", "vessel", "vein", "blood")),
    ("skin", ("skin", "derm")),
    ("fat", ("fat", "adipose", "subcutaneous")),
    ("bone", ("bone", "skull", "cranium", "vertebra")),
    ("muscle", ("muscle", "trapezius", "semispinalis", "splenius", "sternocleidomastoid", "capitis", "fascia")),
]

#: Abbreviations that give a role only as a whole word of the name (``gon``, ``left_ton``, not ``tonsil``).
ROLE_ABBREVIATIONS = {"gon": "nerve", "ton": "nerve", "lon": "nerve"}

#: Tissue-library entries (PHYSICS.md §3) and the role they imply.
LIBRARY_ROLES = {"skin": "skin", "fat": "fat", "muscle": "muscle", "nerve": "nerve", "bone": "bone",
                 "blood": "artery"}


@dataclass(frozen=True)
class RoleStyle:
    """How a role is drawn: colour, 3D opacity (translucent context, opaque structures at risk), label."""

    colour: str
    opacity: float
    label: str


STYLES: dict[str, RoleStyle] = {
    "skin": RoleStyle("#d9a184", 0.16, "skin"),
    "fat": RoleStyle("#efd58a", 0.10, "fat"),
    "muscle": RoleStyle("#b4544c", 0.16, "muscle"),
    "bone": RoleStyle("#e6dfc8", 0.3, "bone"),
    "tissue": RoleStyle("#c0a29f", 0.14, "tissue"),
    "nerve": RoleStyle("#f2c200", 1.0, "nerve"),
    "artery": RoleStyle("#c8102e", 1.0, "artery"),
}

#: Roles drawn opaque in 3D and outlined boldly in the slice: the structures the clinician aims at or avoids.
STRUCTURES = ("nerve", "artery")

PROBE_COLOUR = "#3c4148"
SHAFT_COLOUR = "#9aa3ad"

#: Isotherm colours run from the ice edge (sky blue) to the coldest level (violet).
_ICE_MAP = LinearSegmentedColormap.from_list("cryofield_ice", ["#38b6f0", "#1f4fd1", "#5b1fa6"])

#: What a threshold means clinically (PHYSICS.md §4), for legends.
LEVEL_MEANINGS = {-1.0: "ice edge", -20.0: "nerve injury", -40.0: "deep freeze", -100.0: "neurotmesis risk"}


def region_role(name: str, library: str | None = None) -> str:
    """The role of region ``name``, optionally helped by the case's library entry for it.

    Examples
    --------
    >>> region_role("greater_occipital_nerve"), region_role("trapezius"), region_role("block", "muscle")
    ('nerve', 'muscle', 'muscle')
    >>> region_role("gon"), region_role("tissue")
    ('nerve', 'tissue')
    """
    lowered = name.lower()
    for role, words in ROLE_WORDS:
        if any(word in lowered for word in words):
            return role
    for token in re.split(r"[^a-z]+", lowered):
        if token in ROLE_ABBREVIATIONS:
            return ROLE_ABBREVIATIONS[token]
    return LIBRARY_ROLES.get(library or "", "tissue")


def isotherm_colours(levels: list[float]) -> dict[float, tuple[float, float, float]]:
    """An RGB colour for each isotherm level, warmest lightest.

    Examples
    --------
    >>> c = isotherm_colours([-1, -20, -40])
    >>> [round(v, 2) for v in c[-1.0]]
    [0.22, 0.71, 0.94]
    """
    ordered = sorted((float(v) for v in levels), reverse=True)
    positions = np.linspace(0.0, 1.0, len(ordered)) if len(ordered) > 1 else [0.0]
    return {level: tuple(float(c) for c in _ICE_MAP(p)[:3]) for level, p in zip(ordered, positions)}


def level_label(level: float) -> str:
    """Legend text for an isotherm: ``-20`` → ``'≤ −20 °C (nerve injury)'``."""
    meaning = LEVEL_MEANINGS.get(float(level))
    text = f"≤ {level:g} °C".replace("-", "−")
    return f"{text} ({meaning})" if meaning else text


def lighten(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` mixed with white; ``amount`` 0 keeps it, 1 gives white."""
    rgb = np.array(to_rgb(colour))
    return tuple(float(c) for c in rgb + (1.0 - rgb) * amount)


def size_scale(size: tuple[int, int]) -> float:
    """Factor for fonts and line widths so that a picture of ``size`` pixels looks like the 1200 × 900 default.

    Examples
    --------
    >>> size_scale((1200, 900)), size_scale((600, 450))
    (1.0, 0.5)
    """
    return float(np.clip(min(size[0] / 1200, size[1] / 900), 0.4, 3.0))
