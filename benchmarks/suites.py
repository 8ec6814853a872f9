"""Run suites, print their tables, save the JSON, compare with a baseline (``cryofield bench``)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from cryofield.errors import InputError

from .common import metadata
from .compare import IncomparableError, compare, failures, report

#: Suite name -> module; each module has ``run(quick, backend) -> dict`` (with ``records``) and ``tables(result)``.
SUITES = {"verification": "benchmarks.verification", "performance": "benchmarks.performance",
          "peers": "benchmarks.peers.suite", "ensemble": "benchmarks.ensemble",
          "validation": "benchmarks.validation", "timestepping": "benchmarks.timestepping"}
FORMAT, FORMAT_VERSION = "cryofield-bench", 1


def suite_module(name: str):
    """Import a suite; the peer suite's optional dependencies (the ``bench`` extra) are named when missing."""
    try:
        return importlib.import_module(SUITES[name])
    except ModuleNotFoundError as exc:
        if exc.name in ("skfem", "threadpoolctl"):
            raise InputError(f"the {name} suite needs {exc.name}: pip install -e '.[bench]'", key="bench") from exc
        raise


def run_suites(names: list[str], quick: bool, backend: str) -> dict:
    """Run ``names`` in order; the result holds the run's metadata and each suite's records and wall time."""
    result = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta": metadata(backend, quick), "suites": {}}
    for name in names:
        module = suite_module(name)
        t0 = time.perf_counter()
        suite = module.run(quick, backend)
        suite["seconds"] = time.perf_counter() - t0
        suite["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        result["suites"][name] = suite
        print(f"\n## {name} ({'quick' if quick else 'full'}, {suite['seconds']:.0f} s)\n\n{module.tables(suite)}",
              flush=True)
    return result


def load_result(path: Path) -> dict:
    """Read a result or baseline file; InputError when it is missing or not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read benchmark results: {exc}", source=str(path)) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a {FORMAT} file", source=str(path))
    return data


def _plain(value):
    """JSON for the numpy scalars and arrays inside results."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def describe(meta: dict) -> str:
    """One line saying where a result comes from."""
    m, git = meta["machine"], meta["git"]
    return (f"{meta['mode']} run, backend {meta['backend']} ({meta['device']}), {m['cpu']}, {m['cores']} cores, "
            f"git {git['commit'][:12]}{' (modified)' if git['dirty'] else ''}, {meta['created']}")


def parser() -> argparse.ArgumentParser:
    """The options of ``cryofield bench`` (and of ``python -m benchmarks``)."""
    bench = argparse.ArgumentParser(prog="cryofield bench",
                                    description="Run benchmark suites (benchmarks/README.md): print markdown tables, "
                                                "save JSON with machine, backend, versions and git revision, "
                                                "optionally compare with a baseline (exit 1 on a regression).")
    bench.add_argument("suites", nargs="+", choices=(*SUITES, "all"), help="suites to run, in order")
    bench.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    bench.add_argument("--backend", choices=["cpu", "cuda"], default="cpu",
                       help="backend that steps every suite's transient runs (cuda without a usable GPU: exit 2)")
    bench.add_argument("-o", "--output", type=Path, default=None,
                       help="results JSON (default results/bench_SUITES_MODE.json)")
    bench.add_argument("--compare", type=Path, metavar="BASELINE.json",
                       help="compare with a baseline: exit 1 when an accuracy or speed figure got worse")
    return bench


def cli(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run (:func:`main`); bad input is exit 2 with a one-line message."""
    args = parser().parse_args(argv)
    if args.output is None:
        names = "_".join(SUITES if "all" in args.suites else dict.fromkeys(args.suites))
        args.output = Path("results") / f"bench_{names}_{'quick' if args.quick else 'full'}.json"
    try:
        return main(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(args: argparse.Namespace) -> int:
    """Run the suites of ``args``: 0 when every suite ran (and nothing regressed), 1 on a regression."""
    baseline = load_result(args.compare) if args.compare else None
    names = list(SUITES) if "all" in args.suites else list(dict.fromkeys(args.suites))
    result = run_suites(names, args.quick, args.backend)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1, default=_plain))
    print(f"\nresults: {args.output} ({describe(result['meta'])})")
    if baseline is None:
        return 0
    try:
        findings = compare(result, baseline)
    except IncomparableError as exc:
        raise InputError(str(exc), source=str(args.compare)) from exc
    print(f"\n## Comparison with {args.compare} ({describe(baseline['meta'])})\n\n{report(findings)}")
    bad = failures(findings)
    for f in bad:
        print(f"regressed: {f.suite} / {f.record} / {f.figure}: {f.baseline:.4g} -> "
              f"{'missing' if f.now is None else f'{f.now:.4g}'} ({f.note or f.verdict})", file=sys.stderr)
    return 1 if bad else 0
