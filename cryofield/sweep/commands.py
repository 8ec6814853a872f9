"""``cryofield sweep SWEEP.yaml -o DIR`` and ``cryofield sweep-report DIR`` (see :mod:`cryofield.sweep`).

``sweep`` exits 0 when every variant finished ``ok``, 2 for a sweep file or a variant that is not valid
(nothing runs), 1 when a variant failed or the sweep was interrupted (the finished ones are kept: the same
command continues it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cryofield.backends import BACKEND_CHOICES
from cryofield.errors import InputError


def register(subparsers) -> None:
    """Add the ``sweep`` and ``sweep-report`` commands."""
    sweep = subparsers.add_parser("sweep", help="run a parameter sweep (a sweep file) on a Dask cluster",
                                  description="Run every variant of a sweep file on a Dask cluster (a local "
                                              "one sized to this machine unless the sweep file or --scheduler "
                                              "says otherwise) and write one row per variant to "
                                              "DIR/results.parquet and DIR/results.csv. Finished variants "
                                              "are kept: running the same command again continues.")
    sweep.add_argument("sweep", type=Path, help="sweep YAML file")
    sweep.add_argument("-o", "--output", type=Path, default=None, help="output directory (default results/NAME)")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="join a running Dask scheduler (tcp://host:8786)")
    sweep.add_argument("--workers", type=int, help="workers of the local cluster (default: one per core)")
    sweep.add_argument("--backend", choices=BACKEND_CHOICES, help="override the sweep's backend")
    sweep.add_argument("--retries", type=int, help="reruns of a variant whose worker died (default: the sweep's)")
    sweep.add_argument("--ensemble-size", type=int, metavar="N",
                       help="most variants that share a mesh stepped together as one ensemble (1: never; "
                            "default: the sweep's ensemble_size, 64)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--dry-run", action="store_true",
                       help="validate every variant and write their cases; run nothing (SLURM: print the job script)")
    sweep.set_defaults(func=cmd_sweep)

    report = subparsers.add_parser("sweep-report", help="draw a sweep's outcomes against its axes",
                                   description="Draw the outcome against each axis (a heat map for grids) and "
                                               "print the probabilities of the clinical outcomes.")
    report.add_argument("directory", type=Path, help="a sweep's output directory")
    report.add_argument("-o", "--output", type=Path, help="where the pictures go (default DIR/pictures)")
    report.add_argument("--outcome", default="lesion_whole_mm", help="the column drawn (default lesion_whole_mm)")
    report.set_defaults(func=cmd_sweep_report)


def cmd_sweep(args: argparse.Namespace) -> int:
    from cryofield.sweep.execute import print_result, run_sweep
    from cryofield.sweep.schema import load_sweep

    sweep = load_sweep(args.sweep)
    updates = {k: v for k, v in (("backend", args.backend), ("retries", args.retries),
                                 ("ensemble_size", args.ensemble_size)) if v is not None}
    if args.ensemble_size is not None and args.ensemble_size < 1:
        raise InputError("--ensemble-size must be 1 or more", key="--ensemble-size")
    if args.retries is not None and args.retries < 0:
        raise InputError("--retries must be 0 or more", key="--retries")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be 1 or more", key="--workers")
    if updates:
        sweep.spec = sweep.spec.model_copy(update=updates)
    out = args.output if args.output is not None else Path("results") / sweep.spec.name
    _needs_dask()
    result = run_sweep(sweep, out, scheduler=args.scheduler, workers=args.workers, progress=not args.no_progress,
                       dry_run=args.dry_run)
    print_result(result)
    if args.dry_run:
        print(f"dry run: {len(result.rows)} valid variant(s), nothing run")
        return 0
    return 0 if result.complete else 1


def cmd_sweep_report(args: argparse.Namespace) -> int:
    from cryofield.sweep.report import draw_report
    from cryofield.sweep.uncertainty import format_distribution, format_probabilities

    directory = args.directory
    if not (directory / "summary.json").is_file() or not (directory / "results.parquet").is_file():
        raise InputError("not a sweep's output directory (no summary.json and results.parquet)",
                         source=str(directory))
    summary = json.loads((directory / "summary.json").read_text())
    try:
        paths = draw_report(directory, args.output, args.outcome)
    except ValueError as exc:
        raise InputError(str(exc), source=str(directory), key="--outcome" if "outcome" in str(exc) else None) \
            from None
    c = summary["counts"]
    print(f"{summary['sweep']}: {summary['variants']} variant(s), {c['ok']} ok, {c['failed']} failed")
    for line in format_probabilities(summary.get("probabilities", {})) + format_distribution(
            summary.get("injured_fraction")):
        print(f"  {line}")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _needs_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise RuntimeError("cryofield sweep needs Dask: pip install 'cryofield[sweep]'") from None
