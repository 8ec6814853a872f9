"""How each region role is drawn (colour, opacity, label), the isotherm colours and legend texts.

The roles themselves are decided once, when the run is set up, and stored in the result
(:mod:`cryofield.model.roles`); the pictures read them from there (:attr:`cryofield.viz.data.VizResult.roles`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, to_rgb

from cryofield.model.roles import THRESHOLDS, Thresholds


@dataclass(frozen=True)
class RoleStyle:
    """How a role is drawn: colour, 3D opacity (translucent context, opaque structures at risk), label."""

    colour: str
    opacity: float
    label: str


#: The style of each role of :data:`cryofield.model.roles.ROLES`.
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

#: Fibres' minimum temperature (the nerve's cross-section): the isotherm colours on the cold side (violet
#: coldest, sky blue at the ice edge), warming through pale to the tissue's own warmth.
FIBRE_MAP = LinearSegmentedColormap.from_list("cryofield_fibres", ["#5b1fa6", "#1f4fd1", "#38b6f0", "#f2efe6",
                                                                   "#e6a06a"])

#: The ice edge: the warmest isotherm by default (``outputs.isotherms``).
ICE_EDGE_C = -1.0


def level_meanings(thresholds: Thresholds = THRESHOLDS) -> dict[float, str]:
    """What an isotherm level means clinically (docs/physics.md §4), for legends.

    Examples
    --------
    >>> level_meanings()[-20.0], level_meanings()[-40.0]
    ('nerve injury', 'deep freeze')
    """
    meanings = {ICE_EDGE_C: "ice edge", thresholds.neurotmesis_c: "neurotmesis risk"}
    for k, level in enumerate(thresholds.lesion_c):
        meanings[level] = "nerve injury" if k == 0 else "deep freeze"
    return meanings


#: :func:`level_meanings` at the default thresholds.
LEVEL_MEANINGS = level_meanings()


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


def level_label(level: float, thresholds: Thresholds = THRESHOLDS) -> str:
    """Legend text for an isotherm: ``-20`` → ``'≤ −20 °C (nerve injury)'``."""
    meaning = level_meanings(thresholds).get(float(level))
    text = f"≤ {level:g} °C".replace("-", "−")
    return f"{text} ({meaning})" if meaning else text


def lighten(colour: str, amount: float) -> tuple[float, float, float]:
    """``colour`` mixed with white; ``amount`` 0 keeps it, 1 gives white."""
    rgb = np.array(to_rgb(colour))
    return tuple(float(c) for c in rgb + (1.0 - rgb) * amount)


def size_scale(size: tuple[int, int]) -> float:
    """Factor for fonts and line widths so that a ``size`` pixel picture looks like the default 1200 × 900.

    Examples
    --------
    >>> size_scale((1200, 900)), size_scale((600, 450))
    (1.0, 0.5)
    """
    return float(np.clip(min(size[0] / 1200, size[1] / 900), 0.4, 3.0))
