"""The fibre-by-fibre reading of a nerve (cryofield/outcomes/fibres.py), on prism meshes of a round (or
elliptical) nerve built here: exact injured fractions of a straight cut through the section and their
convergence with the fibre count, a short cold stretch of a long nerve, a curved nerve, the summaries and
bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import Delaunay

from cryofield.model.roles import GRADES, Thresholds
from cryofield.outcomes.fibres import (
    DEFAULT_FIBRES,
    FibreBundle,
    fibre_summary,
    grade_fractions,
    injured,
    injured_fractions,
    injured_from_mm,
    verdict,
)

R = 1e-3  # nerve radius (m)


def disc_section(rings: int = 12, radius: float = R, stretch: tuple[float, float] = (1.0, 1.0)):
    """Nodes (n, 2) of a disc (an ellipse when stretched) on rings of 6 k points, its triangles and its
    boundary polygon (the outer ring, in order)."""
    xy = [np.zeros((1, 2))]
    for k in range(1, rings + 1):
        phi = 2 * np.pi * (np.arange(6 * k) + 0.5 * (k % 2)) / (6 * k)
        xy.append(radius * k / rings * np.stack([np.cos(phi), np.sin(phi)], axis=1))
    xy = np.concatenate(xy) * np.asarray(stretch)
    return xy, np.sort(Delaunay(xy).simplices, axis=1), xy[-6 * rings:]


def nerve_mesh(length: float, layers: int, rings: int = 12, stretch=(1.0, 1.0), bend: float | None = None):
    """A nerve along z from 0 to ``length``: the disc's triangles extruded in ``layers`` prisms of three
    tetrahedra each (split by vertex number, so neighbours agree), and its centreline. With ``bend`` (m) the
    nerve is bent in the x-z plane about a circle of that radius (a quarter circle when length = pi bend / 2)."""
    xy, tri, _ = disc_section(rings, R, stretch)
    n = len(xy)
    z = np.linspace(0.0, length, layers + 1)
    points = np.concatenate([np.column_stack([xy, np.full(n, zz)]) for zz in z])
    tets = []
    for layer in range(layers):
        a, b, c = (tri + layer * n).T
        tets += [np.stack([a, b, c, c + n], 1), np.stack([a, b, b + n, c + n], 1),
                 np.stack([a, a + n, b + n, c + n], 1)]
    line = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, length]])
    if bend is not None:
        points, line = bent(points, bend), bent(np.column_stack([np.zeros(65), np.zeros(65),
                                                                  np.linspace(0, length, 65)]), bend)
    return points, np.concatenate(tets), line


def bent(p: np.ndarray, radius: float) -> np.ndarray:
    """Points of a straight nerve along z bent about the circle of ``radius`` centred at (-radius, 0, 0)."""
    phi = p[:, 2] / radius
    return np.column_stack([(radius + p[:, 0]) * np.cos(phi) - radius, p[:, 1], (radius + p[:, 0]) * np.sin(phi)])


def cut_fraction(polygon: np.ndarray, direction: np.ndarray, c: float) -> float:
    """Area fraction of a convex polygon where x . direction <= c (clipped, shoelace areas)."""
    def area(p):
        return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
    kept = []
    for P, Q in zip(polygon, np.roll(polygon, -1, axis=0)):
        fp, fq = P @ direction - c, Q @ direction - c
        if fp <= 0:
            kept.append(P)
        if fp * fq < 0:
            kept.append(P + (Q - P) * fp / (fp - fq))
    return area(np.array(kept)) / area(polygon) if len(kept) > 2 else 0.0


def segment_fraction(d: float) -> float:
    """Area fraction of the unit disc where x <= d (closed form)."""
    return (np.pi - np.arccos(d) + d * np.sqrt(1 - d * d)) / np.pi


SHORT = nerve_mesh(1e-3, 2)
CUTS = np.linspace(0.8, -0.8, 9)  # positions of the cut (in radii), as levels of T = x / R (°C), warmest first
ANGLES = (0.0, 0.3, np.pi / 4, 1.1)


def cut_errors(points, tets, line, polygon=None, fibres: int = DEFAULT_FIBRES, seed: int = 0) -> np.ndarray:
    """Injured fraction minus the exact one for straight cuts through the section (T linear across it,
    constant along the nerve), at every cut position and direction; exact: the circular segment, or the
    polygon's cut when ``polygon`` is given."""
    bundle = FibreBundle(points, tets, line, fibres=fibres, seed=seed)
    errors = []
    for angle in ANGLES:
        d = np.array([np.cos(angle), np.sin(angle)])
        fractions = injured_fractions(bundle.read(points[:, :2] @ d / R, levels=tuple(CUTS)))
        exact = [segment_fraction(c) if polygon is None else cut_fraction(polygon / R, d, c) for c in CUTS]
        errors += [fractions[float(c)] - e for c, e in zip(CUTS, exact)]
    return np.array(errors)


def test_straight_cut_through_a_round_nerve_is_read_to_one_percent():
    errors = cut_errors(*SHORT)
    assert np.max(np.abs(errors)) <= 0.01
    assert np.sqrt(np.mean(errors ** 2)) <= 0.005


def test_straight_cut_through_an_elliptical_nerve():
    points, tets, line = nerve_mesh(1e-3, 2, stretch=(1.6, 0.6))
    polygon = disc_section(12, R, (1.6, 0.6))[2]
    assert np.max(np.abs(cut_errors(points, tets, line, polygon))) <= 0.01


def test_the_error_falls_with_the_fibre_count_like_jittered_sampling():
    """Against the mesh's own polygon (no error floor from its facets): rms over cuts and seeds."""
    polygon = disc_section()[2]
    counts = np.array([100, 400, 1600, 6400])
    rms = [np.sqrt(np.mean(np.concatenate([cut_errors(*SHORT, polygon, fibres=int(k), seed=s) for s in range(3)])
                           ** 2)) for k in counts]
    rate = -np.polyfit(np.log(counts), np.log(rms), 1)[0]
    # measured: about 0.8 (stratified sampling of a straight edge: K^-3/4); a plain grid gives about 0.5
    assert 0.6 <= rate <= 1.0, (rate, rms)
    assert rms[-1] < rms[0] / 10


def test_the_fibre_count_and_the_sampled_area():
    points, tets, line = SHORT
    for fibres in (50, DEFAULT_FIBRES):
        bundle = FibreBundle(points, tets, line, fibres=fibres)
        assert abs(bundle.n_fibres - fibres) <= 0.05 * fibres + 3
        assert np.all(np.hypot(*bundle.offsets.T) <= R * (1 + 1e-9))  # every fibre is in the section
    assert bundle.radius == pytest.approx(R, rel=0.01)  # the polygon's area is within 1 % of the disc's


def tent(z: np.ndarray, centre: float, half: float) -> np.ndarray:
    """1 at ``centre`` falling linearly to 0 at ``half`` either side (nodes lie on its kinks: P1-exact)."""
    return np.clip(1.0 - np.abs(z - centre) / half, 0.0, None)


def test_a_short_cold_stretch_injures_the_fibres_that_pass_through_it():
    """A 20 mm nerve, cold only over |z - 12 mm| <= 0.5 mm and only on its x < 0 half: T = 20 - 80 tent(z),
    -20 °C at 0.5 mm either side of the centre, and very warm on the other half (1e7 °C/m x for x > 0)."""
    points, tets, line = nerve_mesh(20e-3, 80, rings=8)
    x, z = points[:, 0], points[:, 2]
    T = 20.0 - 80.0 * tent(z, 12e-3, 1e-3) + 1e7 * np.maximum(x, 0.0)
    time = {-20.0: np.where(T <= -20.0, 30.0 + 1e4 * np.abs(x), 0.0)}
    bundle = FibreBundle(points, tets, line)
    r = bundle.read(T, time, levels=(-10.0, -20.0, -40.0))
    hit = injured(r, -20.0)
    assert injured_fractions(r)[-20.0] == pytest.approx(0.5, abs=0.01)
    u = r.u_mm
    assert np.all(hit[u < -0.01]) and not np.any(hit[u > 0.01])  # exactly the fibres through the cold half
    # whatever the rest of their length (a path 3e-5 longer than the axis: the section centre, from the mesh, wobbles)
    assert r.length_below_mm[1][hit & (u < -0.01)] == pytest.approx(1.0, abs=1e-4)
    assert r.length_below_mm[0][u < -0.01] == pytest.approx(1.25, abs=1e-4)  # tent >= 3/8: 0.625 mm either side
    assert r.length_below_mm[2][u < -0.01] == pytest.approx(0.5, abs=1e-4)  # -40 °C: tent >= 3/4
    assert np.all(r.length_below_mm[:, u > 0.01] == 0.0)
    # the minimum is sampled at the stations: at most half a station from the peak (80 °C/mm either side)
    half = 0.5 * (bundle.stations[1] - bundle.stations[0]) * 1e3
    assert np.all((r.min_temperature[u < -0.01] >= -60.0 - 1e-9) & (r.min_temperature[u < -0.01] <= -60.0 + 80 * half))
    assert r.coldest_mm[u < -0.01] == pytest.approx(12.0, abs=0.11)  # within a station of the centre
    assert r.time_below_s[1][u < -0.01] == pytest.approx(30.0 + 1e4 * np.abs(r.u_mm[u < -0.01]) * 1e-3, rel=0.05)
    assert np.all(np.isnan(r.time_below_s[0]))  # no field given at -10 °C
    assert injured_from_mm(r, -20.0) == pytest.approx(11.5, abs=1e-6)  # where -20 °C is first reached
    out = fibre_summary(r, -20.0, complete_fraction=0.9)
    assert out["verdict"] == "partial" and out["to_end_mm"] == pytest.approx(8.5, abs=1e-6)
    assert out["grades"]["axonotmesis"] == pytest.approx(out["injured_fraction"])
    # a longer minimum injured length (1.2 mm) spares them all
    assert injured_fractions(r, min_length_mm=1.2)[-20.0] == 0.0
    assert fibre_summary(r, -20.0, min_length_mm=1.2)["verdict"] == "none"


def test_a_curved_nerve_is_followed_by_its_fibres():
    """A quarter circle of radius 10 mm: the fibres stay inside the nerve all along it."""
    bend = 10e-3
    points, tets, line = nerve_mesh(np.pi * bend / 2, 60, rings=8, bend=bend)
    bundle = FibreBundle(points, tets, line)
    assert abs(bundle.n_fibres - DEFAULT_FIBRES) <= 0.05 * DEFAULT_FIBRES
    # the end faces are planes through the circle's centre, the centreline's end segments chords: the first
    # and last stations (a node's width beyond) may lie just outside; every other station is inside, but for
    # fibres at the rim, which the mesh's flat facets (chords of the bend) and the section's moment ellipse
    # (a disc a little wider than the polygon) can put outside
    within = bundle.inside[:, 1:-1]
    assert within.mean() >= 0.99
    assert within[np.hypot(*bundle.disc.T) < 0.95].all()
    assert np.abs(np.einsum("ij,ij->i", bundle.normal, bundle.tangent)).max() < 1e-9
    r = bundle.read(np.full(len(points), -30.0), levels=(-20.0,))
    assert injured_fractions(r)[-20.0] == 1.0
    assert fibre_summary(r, -20.0)["verdict"] == "complete"
    # fibres on the outside of the bend are longer: length scales with (bend + x) / bend
    across = (r.u_mm * bundle.normal[0, 0] + r.v_mm * bundle.binormal[0, 0]) * 1e-3  # x offset at the start
    outer = (bend + across) / bend
    arc = bundle.stations[-2] - bundle.stations[1]
    whole = within.all(axis=1)
    assert whole.mean() > 0.95
    assert r.length_below_mm[0][whole] == pytest.approx(arc * 1e3 * outer[whole], rel=0.002)


def test_a_nerve_beyond_its_centreline_is_followed_past_its_ends():
    points, tets, _ = nerve_mesh(4e-3, 8, rings=6)
    bundle = FibreBundle(points, tets, [[0, 0, 1e-3], [0, 0, 2e-3]])
    assert bundle.stations[0] == pytest.approx(-1e-3) and bundle.stations[-1] == pytest.approx(3e-3)
    assert np.mean(bundle.inside) >= 0.99


def test_grades_and_verdicts():
    points, tets, line = SHORT
    bundle = FibreBundle(points, tets, line, fibres=400)
    T = np.where(points[:, 0] < 0, -120.0, 0.0)
    r = bundle.read(T, thresholds=Thresholds())
    g = grade_fractions(r)
    assert list(g) == list(GRADES) and sum(g.values()) == pytest.approx(1.0)
    assert g["none"] == 0.0 and g["neurotmesis"] > 0.3 and g["neurapraxia"] > 0.3
    assert verdict(1.0) == "complete" and verdict(0.89) == "partial" and verdict(0.0) == "none"
    assert verdict(0.5, complete_fraction=0.5) == "complete"


@pytest.mark.parametrize("kwargs, name", [
    ({"fibres": 0}, "fibres"), ({"fibres": 2.5}, "fibres"), ({"line": [[0, 0, 0]]}, "line"),
    ({"line": [[0, 0, 0], [0, 0, 0]]}, "line"), ({"step": -1.0}, "step"), ({"tets": np.zeros((0, 4), int)}, "tets"),
])
def test_bad_bundle_input(kwargs, name):
    points, tets, line = SHORT
    args = {"tets": tets, "line": line} | kwargs
    with pytest.raises(ValueError, match=name):
        FibreBundle(points, **args)


def test_bad_reading_input():
    points, tets, line = SHORT
    bundle = FibreBundle(points, tets, line, fibres=50)
    T = np.zeros(len(points))
    for levels in [(-20.0, -10.0), (-20.0, -20.0), ()]:
        with pytest.raises(ValueError, match="levels"):
            bundle.read(T, levels=levels)
    with pytest.raises(ValueError, match="min_temperature"):
        bundle.read(T[:-1])
    r = bundle.read(T)
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="complete_fraction"):
            verdict(0.5, complete_fraction=fraction)
        with pytest.raises(ValueError, match="complete_fraction"):
            fibre_summary(r, -20.0, complete_fraction=fraction)
    with pytest.raises(ValueError, match="min_length_mm"):
        injured_fractions(r, min_length_mm=-1.0)
    with pytest.raises(ValueError, match="level"):
        injured_from_mm(r, -30.0)
