"""``cryofield bench``: runs the benchmark suites (verification, performance, peers) of the repository checkout.

The suites live in the ``benchmarks`` package at the root of the repository, beside this package, not
inside it: they need the repository (cases, a committed baseline) and optional tools (scikit-fem). This
package never imports them: the command runs ``python -m benchmarks`` from the checkout this package was
installed from (``pip install -e .``) in a child process, passing every argument through, and returns its
exit code. Elsewhere it says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .errors import InputError

#: The repository checkout this package was installed from (editable install), holding ``benchmarks/``.
CHECKOUT = Path(__file__).resolve().parents[1]


def register(sub) -> None:
    """Add the ``bench`` command; its options are the suites' own (``cryofield bench --help``)."""
    # no option prefix: every argument, --help included, belongs to the benchmarks' own parser
    bench = sub.add_parser("bench", help="run the benchmark suites of the checkout (cryofield bench --help)",
                           add_help=False, prefix_chars="\0")
    bench.add_argument("arguments", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)


def benchmarks_command(root: Path = CHECKOUT) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the checkout's ``benchmarks`` package.

    ``-P`` keeps the working directory off ``sys.path``, so no other ``benchmarks`` package can shadow it.

    Raises
    ------
    InputError
        When there is no ``benchmarks`` package beside this installation (not an editable install of a checkout).
    """
    if not (root / "benchmarks" / "__init__.py").is_file():
        raise InputError(f"cryofield bench runs the suites in a repository checkout's benchmarks/ folder, and there "
                         f"is none beside this installation ({root}); clone the repository and install it with "
                         f"pip install -e .", key="bench")
    path = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return [sys.executable, "-P", "-m", "benchmarks"], {**os.environ, "PYTHONPATH": path}


def cmd_bench(args: argparse.Namespace) -> int:
    command, env = benchmarks_command()
    return subprocess.run([*command, *args.arguments], env=env, check=False).returncode
