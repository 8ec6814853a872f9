"""Probabilities of the clinical outcomes over a sweep's finished variants, with confidence intervals.

For a sampled sweep (``design: lhs`` or ``random`` over distributions of tissue properties, anatomy or
the probe's pose) the fraction of variants with an outcome estimates its probability; the interval says
how well ``n`` samples pin it down: Wilson's score interval (default; good coverage at any ``n``) or the
exact Clopper–Pearson interval (conservative). Outcomes: every yes/no column of the table, the headline
ones first: ``complete_block`` and ``partial_block`` (the target nerve's fibre verdict), ``durable_block``,
``skin_froze``, ``skin_melanocyte_damage``, ``artery_froze``,
``artery_thrombosis_risk`` and ``skin_or_artery_froze`` (either froze).

Examples
--------
>>> [round(x, 4) for x in wilson(8, 10)]
[0.4902, 0.9433]
>>> [round(x, 4) for x in clopper_pearson(8, 10)]
[0.4439, 0.9748]
>>> clopper_pearson(0, 10)[0], wilson(10, 10)[1]
(0.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Any

HEADLINE = ["complete_block", "partial_block", "durable_block", "skin_froze", "skin_melanocyte_damage", "artery_froze",
            "artery_thrombosis_risk", "skin_or_artery_froze"]


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else low), (1.0 if k == n else high)  # exactly 0 and 1 at the ends, not 1 - 1e-16


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion ``k / n``."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import beta

    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


INTERVALS = {"wilson": wilson, "clopper-pearson": clopper_pearson}


def probabilities(rows: list[dict[str, Any]], confidence: float = 0.95, method: str = "wilson") -> dict[str, dict]:
    """For each yes/no outcome: ``k`` of ``n`` finished variants, ``p`` and the interval ``low``, ``high``.

    Examples
    --------
    >>> rows = [{"status": "ok", "durable_block": b} for b in (True, True, False, True)]
    >>> out = probabilities(rows + [{"status": "failed"}])
    >>> out["durable_block"]["k"], out["durable_block"]["n"], out["durable_block"]["p"]
    (3, 4, 0.75)
    """
    ok = [dict(r) for r in rows if r.get("status") == "ok"]
    for r in ok:
        if r.get("skin_froze") is not None or r.get("artery_froze") is not None:
            r["skin_or_artery_froze"] = bool(r.get("skin_froze")) or bool(r.get("artery_froze"))
    names = [k for k in dict.fromkeys(k for r in ok for k in r) if any(isinstance(r.get(k), bool) for r in ok)]
    names = [n for n in HEADLINE if n in names] + [n for n in names if n not in HEADLINE]
    interval = INTERVALS[method]
    out = {}
    for name in names:
        seen = [r[name] for r in ok if isinstance(r.get(name), bool)]
        k, n = sum(seen), len(seen)
        low, high = interval(k, n, confidence)
        out[name] = {"k": k, "n": n, "p": k / n if n else None, "low": low, "high": high,
                     "confidence": confidence, "method": method}
    return out


def format_probabilities(probs: dict[str, dict], headline_only: bool = True) -> list[str]:
    """Lines like ``durable_block  P = 0.75 (3/4), 95% CI 0.30-0.95 (wilson)``."""
    lines = []
    for name, q in probs.items():
        if headline_only and name not in HEADLINE:
            continue
        p = "n/a" if q["p"] is None else f"{q['p']:.3f}"
        lines.append(f"{name:<24} P = {p} ({q['k']}/{q['n']}), {q['confidence']:.0%} CI "
                     f"{q['low']:.3f}-{q['high']:.3f} ({q['method']})")
    return lines


#: The quantiles a distribution of a continuous outcome is summarised by.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def distribution(rows: list[dict[str, Any]], column: str = "injured_fraction") -> dict[str, Any] | None:
    """The spread of a continuous outcome over the finished variants: ``n``, the mean and the quantiles
    (:data:`QUANTILES`); None when no variant has it.

    Examples
    --------
    >>> rows = [{"status": "ok", "injured_fraction": f} for f in (0.2, 0.4, 0.6, 0.8, 1.0)]
    >>> d = distribution(rows)
    >>> d["n"], round(d["mean"], 3), d["quantiles"]["0.5"]
    (5, 0.6, 0.6)
    """
    import numpy as np

    values = [float(r[column]) for r in rows if r.get("status") == "ok" and isinstance(r.get(column), (int, float))
              and not isinstance(r.get(column), bool)]
    if not values:
        return None
    return {"column": column, "n": len(values), "mean": float(np.mean(values)),
            "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES}}


def format_distribution(d: dict[str, Any] | None) -> list[str]:
    """One line like ``injured_fraction  mean 0.61, 5-50-95 % 0.21 / 0.60 / 0.98 (n = 5)``."""
    if not d:
        return []
    q = d["quantiles"]
    return [f"{d['column']:<24} mean {d['mean']:.3f}, 5-50-95 % {q['0.05']:.3f} / {q['0.5']:.3f} / {q['0.95']:.3f} "
            f"(n = {d['n']})"]
