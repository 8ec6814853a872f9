"""``--compare BASELINE.json``: what got worse since the baseline.

Every record of a suite carries ``figures``: named values with a kind, compared one by one with the
baseline's figure of the same suite, record id and name.

Tolerances
----------
error
    accuracy (an error norm): may grow by at most 10 % of the baseline value.
order
    an observed order of convergence: may drop by at most 0.1.
ratio
    speed as a ratio measured within one run (fraction of the copy bandwidth measured in the same run,
    peer time over cryofield time at equal accuracy, forward Euler over RKL2): may drop by at most 25 %,
    the noise of shared machines. Absolute seconds are never compared.
work
    operator applications to reach a solution (machine independent): may grow by at most 10 %.

Speed figures (``ratio``, ``work``) are compared only when both runs used the same backend. A figure of
the baseline missing from the run counts as a regression; a new figure is reported, not judged. Suites
that the run did not include are not compared; a suite run in another mode (quick or full) than the
baseline's cannot be compared at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import markdown_table

#: kind -> (which way is better, allowed change): relative growth for error/work, absolute drop for order,
#: relative drop for ratio.
TOLERANCES = {"error": ("lower", 0.10), "order": ("higher", 0.1), "ratio": ("higher", 0.25), "work": ("lower", 0.10)}
SPEED_KINDS = ("ratio", "work")


def figure(value: float, kind: str) -> dict:
    """A figure of a record, as ``--compare`` reads it; ``kind`` is one of :data:`TOLERANCES`."""
    if kind not in TOLERANCES:
        raise ValueError(f"unknown figure kind {kind!r}")
    return {"value": float(value), "kind": kind}


class IncomparableError(ValueError):
    """The run and the baseline cannot be compared (another mode)."""


@dataclass
class Finding:
    """One figure's comparison."""

    suite: str
    record: str
    figure: str
    kind: str
    baseline: float | None
    now: float | None
    verdict: str  # ok, regressed, missing, new, skipped
    note: str = ""


def judge(kind: str, baseline: float, now: float) -> tuple[str, str]:
    """Verdict and a short note for one figure (see the module docstring for the tolerances)."""
    _, allowed = TOLERANCES[kind]
    if not math.isfinite(now):
        return "regressed", "not a finite number"
    if kind in ("error", "work"):
        limit = baseline * (1 + allowed)
        return ("regressed" if now > limit else "ok"), f"at most {limit:.4g}"
    if kind == "order":
        limit = baseline - allowed
        return ("regressed" if now < limit else "ok"), f"at least {limit:.3g}"
    limit = baseline * (1 - allowed)
    return ("regressed" if now < limit else "ok"), f"at least {limit:.4g}"


def _figures(suite: dict) -> dict[tuple[str, str], dict]:
    return {(r["id"], name): f for r in suite["records"] for name, f in r.get("figures", {}).items()}


def compare(current: dict, baseline: dict) -> list[Finding]:
    """Compare every figure of the suites in ``current`` that ``baseline`` also has.

    Raises
    ------
    IncomparableError
        When a suite was run in another mode than the baseline's.
    """
    same_backend = current["meta"]["backend"] == baseline["meta"]["backend"]
    findings = []
    for name, suite in current["suites"].items():
        if name not in baseline["suites"]:
            continue
        if current["meta"]["mode"] != baseline["meta"]["mode"]:
            raise IncomparableError(f"the baseline's {name} suite ran in {baseline['meta']['mode']} mode, this run in "
                                    f"{current['meta']['mode']} mode: their sizes differ")
        now, before = _figures(suite), _figures(baseline["suites"][name])
        for (record, fig), b in before.items():
            n = now.get((record, fig))
            if n is None:
                findings.append(Finding(name, record, fig, b["kind"], b["value"], None, "missing"))
            elif b["kind"] in SPEED_KINDS and not same_backend:
                findings.append(Finding(name, record, fig, b["kind"], b["value"], n["value"], "skipped",
                                        "another backend"))
            else:
                verdict, note = judge(b["kind"], b["value"], n["value"])
                findings.append(Finding(name, record, fig, b["kind"], b["value"], n["value"], verdict, note))
        findings += [Finding(name, record, fig, n["kind"], None, n["value"], "new")
                     for (record, fig), n in now.items() if (record, fig) not in before]
    return findings


def failures(findings: list[Finding]) -> list[Finding]:
    """The findings that fail a comparison: regressions and figures missing from the run."""
    return [f for f in findings if f.verdict in ("regressed", "missing")]


def report(findings: list[Finding]) -> str:
    """A markdown table of every finding, worst first, and a one-line verdict."""
    order = {"regressed": 0, "missing": 1, "new": 2, "skipped": 3, "ok": 4}
    rows = [[f.verdict.upper() if f.verdict in ("regressed", "missing") else f.verdict, f.suite, f.record, f.figure,
             f.kind, _fmt(f.baseline), _fmt(f.now), f.note]
            for f in sorted(findings, key=lambda f: order[f.verdict])]
    bad = failures(findings)
    verdict = (f"{len(bad)} figure(s) got worse than the baseline allows" if bad
               else f"no regression ({len(findings)} figures compared)")
    return markdown_table(["verdict", "suite", "record", "figure", "kind", "baseline", "now", "allowed"], rows) \
        + f"\n\n{verdict}"


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
