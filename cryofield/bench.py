"""``cryofield bench``: the benchmark suites (verification, performance, peers) of the repository checkout.

The suites live in the ``benchmarks`` package at the root of the repository, beside this package, not
inside it: they need the repository (cases, a committed baseline) and optional tools (scikit-fem). The
command works from a checkout installed with ``pip install -e .``; elsewhere it says so.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .errors import InputError

SUITE_NAMES = ("verification", "performance", "peers")
#: The repository checkout this package was installed from (editable install), holding ``benchmarks/``.
CHECKOUT = Path(__file__).resolve().parents[1]


def register(sub) -> None:
    """Add the ``bench`` command."""
    bench = sub.add_parser("bench", help="run the benchmark suites; tables to the terminal, results to JSON",
                           description="Run benchmark suites of the repository's benchmarks/ (see its README): "
                                       "print markdown tables, save JSON with machine, backend, versions and git "
                                       "revision, optionally compare with a baseline (exit 1 on a regression).")
    bench.add_argument("suites", nargs="+", choices=(*SUITE_NAMES, "all"), help="suites to run, in order")
    bench.add_argument("--quick", action="store_true", help="small sizes: a few minutes on 2 cores")
    bench.add_argument("--backend", choices=["cpu", "cuda"], default="cpu",
                       help="backend of the performance suite's size series and time to solution")
    bench.add_argument("-o", "--output", type=Path, default=None,
                       help="results JSON (default results/bench_SUITES_MODE.json)")
    bench.add_argument("--compare", type=Path, metavar="BASELINE.json",
                       help="compare with a baseline: exit 1 when an accuracy or speed figure got worse")
    bench.set_defaults(func=cmd_bench)


def benchmarks_package(root: Path = CHECKOUT):
    """The repository's ``benchmarks.suites`` module, from the checkout this package was installed from.

    Raises
    ------
    InputError
        When there is no ``benchmarks`` package beside this installation (not an editable install of a
        checkout), or another ``benchmarks`` package shadows it.
    """
    folder = root / "benchmarks"
    if not (folder / "__init__.py").is_file():
        raise InputError(f"cryofield bench runs the suites in a repository checkout's benchmarks/ folder, and there "
                         f"is none beside this installation ({root}); clone the repository and install it with "
                         f"pip install -e .", key="bench")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("benchmarks.suites")
    if Path(module.__file__).resolve().parent != folder.resolve():
        raise InputError(f"another 'benchmarks' package ({module.__file__}) shadows the repository's {folder}",
                         key="bench")
    return module


def cmd_bench(args: argparse.Namespace) -> int:
    if args.output is None:
        names = "_".join(SUITE_NAMES if "all" in args.suites else dict.fromkeys(args.suites))
        args.output = Path("results") / f"bench_{names}_{'quick' if args.quick else 'full'}.json"
    return benchmarks_package().main(args)
