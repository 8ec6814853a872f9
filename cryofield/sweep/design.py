"""The design: the axis values of every variant (full grid, zipped lists, Latin hypercube, random draws).

Sampled designs map points of the unit cube through each axis's inverse distribution function, so a Latin
hypercube stays stratified in every distribution, and truncation is exact (the point is mapped into the
part of the distribution between ``low`` and ``high``). The same seed always gives the same variants, which
is what lets a rerun find its finished variants (no seed given: seed 0).

Examples
--------
>>> from cryofield.sweep.schema import SweepSpec
>>> spec = SweepSpec.model_validate({"base": {}, "axes": [
...     {"path": "a", "values": [1, 2, 3]}, {"path": "b", "range": {"low": 0, "high": 1, "count": 2}}]})
>>> design_points(spec)[:3]
[{'a': 1, 'b': 0.0}, {'a': 1, 'b': 1.0}, {'a': 2, 'b': 0.0}]
>>> spec = SweepSpec.model_validate({"base": {}, "design": "lhs", "samples": 4, "seed": 1, "axes": [
...     {"path": "a", "distribution": {"kind": "uniform", "low": 0, "high": 4}}]})
>>> sorted(int(p["a"]) for p in design_points(spec))  # one point in each quarter
[0, 1, 2, 3]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from cryofield.sweep.schema import Axis, LogNormal, Normal, SweepSpec, Uniform, _listed


def design_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The axis values of each variant, as ``{axis column: value}`` in variant order."""
    columns = [a.column for a in spec.axes]
    rows = ROWS[spec.design](spec)
    return [{c: _tidy(v, a) for c, v, a in zip(columns, row, spec.axes)} for row in rows]


def _grid_rows(spec: SweepSpec) -> Iterable[tuple]:
    return itertools.product(*[_listed(a) for a in spec.axes])


def _zip_rows(spec: SweepSpec) -> Iterable[tuple]:
    return zip(*[_listed(a) for a in spec.axes])


def _lhs_unit(spec: SweepSpec, rng: np.random.Generator) -> np.ndarray:
    from scipy.stats import qmc

    return qmc.LatinHypercube(d=len(spec.axes), seed=rng).random(spec.samples)


def _random_unit(spec: SweepSpec, rng: np.random.Generator) -> np.ndarray:
    return rng.random((spec.samples, len(spec.axes)))


def _sampled(unit: Callable[[SweepSpec, np.random.Generator], np.ndarray]) -> Callable[[SweepSpec], Iterable[tuple]]:
    """The rows of a sampled design: each axis's values at the design's points of the unit cube."""
    def rows(spec: SweepSpec) -> Iterable[tuple]:
        points = unit(spec, np.random.default_rng(spec.seed or 0))
        return zip(*[from_unit(a, points[:, j]) for j, a in enumerate(spec.axes)])
    return rows


#: Each design's rows of axis values (one source with :data:`cryofield.sweep.schema.DESIGNS`: a test checks it).
ROWS: dict[str, Callable[[SweepSpec], Iterable[tuple]]] = {
    "grid": _grid_rows, "zip": _zip_rows, "lhs": _sampled(_lhs_unit), "random": _sampled(_random_unit)}


def from_unit(axis: Axis, u: np.ndarray) -> list:
    """Values of a sampled axis at the points ``u`` of [0, 1): one of its ``values``, equally likely, or its
    distribution's quantiles."""
    if axis.values is not None:
        k = len(axis.values)
        return [axis.values[min(int(x * k), k - 1)] for x in u]
    return [float(x) for x in quantiles(axis.distribution, u)]


def quantiles(dist: Uniform | Normal | LogNormal, u: np.ndarray) -> np.ndarray:
    """The distribution's quantiles at ``u`` (truncated to its ``low`` and ``high`` where given).

    Examples
    --------
    >>> from cryofield.sweep.schema import Normal
    >>> q = quantiles(Normal(kind="normal", mean=0, std=1, low=0), np.array([0.0, 0.5]))
    >>> [round(float(x), 4) for x in q]  # the upper half of N(0, 1): its median is the 75th percentile
    [0.0, 0.6745]
    """
    from scipy import stats

    u = np.asarray(u, float)
    if isinstance(dist, Uniform):
        return dist.low + u * (dist.high - dist.low)
    if isinstance(dist, LogNormal):
        frozen = stats.lognorm(s=dist.sigma, scale=dist.median)
    else:
        frozen = stats.norm(loc=dist.mean, scale=dist.std)
    lo = frozen.cdf(dist.low) if dist.low is not None else 0.0
    hi = frozen.cdf(dist.high) if dist.high is not None else 1.0
    if hi - lo < 1e-12:
        raise ValueError("the truncation keeps (almost) none of the distribution: widen low/high")
    x = frozen.ppf(lo + u * (hi - lo))
    return np.clip(x, dist.low if dist.low is not None else -np.inf, dist.high if dist.high is not None else np.inf)


def _tidy(value: Any, axis: Axis) -> Any:
    """Plain Python numbers, integers where the axis says so, floats without binary noise (0.30000000000000004)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        if axis.integer:
            return int(round(float(value)))
        if isinstance(value, (int, np.integer)):
            return int(value)
        return float(f"{float(value):.12g}")
    return value
