"""The ``cryofield`` command line. Exit codes: 0 success, 2 bad input, 1 any other failure.

``run`` draws the default pictures at the end (``--no-render`` skips them), into the run's staging
directory, so that they are published with the results as one set (:mod:`cryofield.io.resultset`). The
pictures are a convenience: when the plotting libraries cannot make them the run still exits 0, with a
warning saying why and how to draw them later, because the results themselves are complete (a full disk
is different: it fails the run, and the previous set stays as it was). A second run into the same output
name while one is writing it exits 2 at once ("another run is writing DIR/NAME"); a run whose estimated
memory or work is beyond the limits (:mod:`cryofield.config.resources`) exits 2 unless ``--force``.

``bench``: runs the benchmark suites (verification, performance, peers) of the repository checkout.

The suites live in the ``benchmarks`` package at the root of the repository, beside this package, not
inside it: they need the repository (cases, a committed baseline) and optional tools (scikit-fem). This
package never imports them: the command runs ``python -m benchmarks`` from the checkout this package was
installed from (``pip install -e .``) in a child process, passing every argument through, and returns its
exit code. Elsewhere it says so.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

from cryofield.backends import BACKEND_CHOICES
from cryofield.errors import EXIT_INTERRUPTED, InputError, Interrupted, OutputFailed, RunFailed
from cryofield.version import __version__

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2  # and EXIT_INTERRUPTED (75): stopped, resume with --resume

#: Modules that add command groups: each has ``register(subparsers)`` adding parsers with a ``func``.
COMMAND_MODULES: list[str] = ["cryofield.viz.commands", "cryofield.mesh.commands", "cryofield.sweep.commands"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryofield", description="Cryoneurolysis simulation: Pennes bioheat "
                                     "with freezing on tetrahedral meshes.")
    parser.add_argument("--version", action="version", version=f"cryofield {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a case and publish NAME.h5, NAME.xdmf, NAME.json, the pictures and "
                                     "NAME.manifest.json")
    run.add_argument("case", type=Path, help="case YAML file")
    run.add_argument("-o", "--output", type=Path, default=Path("results"), help="output directory")
    run.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                     help="override solver.backend of the case")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-render", action="store_true", help="do not draw the pictures at the end")
    run.add_argument("--resume", action="store_true",
                     help="continue from DIR/NAME.checkpoint.h5 when there is one (written every "
                          "outputs.checkpoint_interval and on SIGTERM/SIGINT)")
    run.add_argument("--force", action="store_true",
                     help="run even when the estimated memory, work or output size is beyond the limits")
    run.set_defaults(func=cmd_run)

    ensemble = sub.add_parser("ensemble", help="run cases that share a mesh together, one kernel pass per stage "
                                               "for all of them, each publishing its own result set",
                              description="Run variants of one mesh (other tissues, probe settings, protocols, "
                                          "initial states) as one ensemble: each gets the results of "
                                          "`cryofield run`, bit for bit. Every case is validated before "
                                          "anything runs; a case that does not share the first one's mesh, or "
                                          "whose run fails, fails alone (exit 1).")
    ensemble.add_argument("cases", type=Path, nargs="+", help="case YAML files (distinct names)")
    ensemble.add_argument("-o", "--output", type=Path, default=Path("results"), help="output directory")
    ensemble.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                          help="override solver.backend of the first case")
    ensemble.add_argument("--layout", choices=["variants", "nodes"], default="variants",
                          help="per-variant arrays with the variants of a node adjacent (default) or one block "
                               "per variant")
    ensemble.add_argument("--max-size", type=int, default=None, help="most variants in one ensemble")
    ensemble.add_argument("--force", action="store_true", help="run beyond the estimated limits")
    ensemble.set_defaults(func=cmd_ensemble)

    validate = sub.add_parser("validate", help="check a case (and its mesh) without running it")
    validate.add_argument("case", type=Path)
    validate.set_defaults(func=cmd_validate)

    info = sub.add_parser("info", help="version, backends and threads")
    info.set_defaults(func=cmd_info)
    register_bench(sub)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from cryofield.config.case import load_case
    from cryofield.outcomes.report import print_summary
    from cryofield.run.runner import run_case

    case = load_case(args.case)
    try:
        report = run_case(case, args.output, backend=args.backend, progress=not args.no_progress,
                          pictures=not args.no_render, force=args.force, resume=args.resume)
    except Interrupted as exc:
        print(f"{exc}\nresume with: cryofield run {args.case} -o {args.output} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print_summary(report)
    _report_pictures(report)
    return EXIT_OK


def cmd_ensemble(args: argparse.Namespace) -> int:
    from cryofield.config.case import load_case
    from cryofield.run.ensemble import run_ensemble

    if args.max_size is not None and args.max_size < 1:
        raise InputError("--max-size must be 1 or more", key="--max-size")
    cases = [load_case(path) for path in args.cases]  # bad input: exit 2 before anything runs
    seen: dict[str, Path] = {}
    for path, case in zip(args.cases, cases):
        if case.name in seen:
            raise InputError(f"two cases are named '{case.name}' ({seen[case.name]} and {path}): their results "
                             "would overwrite each other; give one a 'name'", source=str(path), key="name")
        seen[case.name] = path
    report = run_ensemble(cases, [args.output] * len(cases), backend=args.backend,
                          variant_fastest=args.layout == "variants", force=args.force, max_size=args.max_size)
    for note in report.notes:
        print(note)
    print(f"{len(cases)} case(s) in {len(report.sizes)} ensemble(s) of {', '.join(map(str, report.sizes)) or '-'}: "
          f"{report.variant_steps} variant-steps in {report.stepping_s:.2f} s ({report.variant_steps_per_s:.1f}/s), "
          f"{report.stage_utilisation:.0%} of the stage slots used")
    failed = 0
    for path, case, result in zip(args.cases, cases, report.results):
        if isinstance(result, BaseException):
            failed += 1
            print(f"  {case.name}: failed: {result}", file=sys.stderr)
        else:
            s = result.summary
            print(f"  {case.name}: {s['time_step']['steps']} steps, min probe "
                  f"{min(p['min_temperature_C'] for p in s['probes'].values()):.1f} C -> {result.paths['h5']}")
    return EXIT_FAILURE if failed else EXIT_OK


def _report_pictures(report) -> None:
    """Print the pictures published with the results; what could not be drawn is only a warning (module doc)."""
    retry = f"draw them later with `cryofield render {report.paths['h5']}`"
    for kind, path in report.pictures.items():
        print(f"{kind}: {path}")
    for problem in report.picture_problems:
        complete = "; the results are complete" if not report.pictures else ""
        print(f"warning: {problem}{complete}; {retry}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from cryofield.config.case import load_case
    from cryofield.run.plan import estimate, prepare
    from cryofield.timestepping.rkl2 import rkl2_stages
    from cryofield.timestepping.schemes import SCHEMES

    case = load_case(args.case)
    plan = prepare(case)
    p = plan.problem
    print(f"{args.case}: valid")
    cells = "r-z triangles (axisymmetric)" if p.axisymmetric else "tetrahedra"
    print(f"  mesh: {p.n_nodes} nodes, {p.n_elems} {cells}, regions: {', '.join(p.region_names)}")
    for note in p.mesh.notes:
        print(f"  note: {note}")
    control = plan.control()
    stages = control.stages or rkl2_stages(control.dt_limit(), control.stable_dt)
    scheme = SCHEMES[case.solver.scheme]
    detail = multirate_detail(plan) if scheme.levels else f" with {stages} stages" if scheme.super_steps else ""
    print(f"  protocol: {len(case.protocol)} phase(s), {case.duration:g} s; forward-Euler limit {plan.dt_fe:.3g} s; "
          f"{case.solver.scheme} up to dt = {control.dt_limit():.3g} s{detail}")
    print(f"  {estimate(plan).summary()}")
    return EXIT_OK


def multirate_detail(plan) -> str:
    """How the multirate scheme splits this mesh: its levels, their nodes and the work of a longest step."""
    levels = plan.levels()
    dt = plan.control().dt_limit()
    if not levels.depth:
        return " with no nested levels (nesting does not pay on this mesh: single-rate RKL2 steps)"
    shares = ", ".join(f"{n / plan.problem.n_nodes:.1%}" for n in levels.active)
    return (f" with {levels.depth} nested level(s) (cuts {', '.join(f'{c:g}' for c in levels.cuts)}; nodes {shares}),"
            f" {levels.work_per_step(dt):.1f} full-mesh-equivalent applications per step")


def cmd_info(args: argparse.Namespace) -> int:
    import numba

    from cryofield.backends import available_backends, cuda_pieces

    print(f"cryofield {__version__}")
    print(f"numba {numba.__version__}, threads {numba.get_num_threads()}")
    for name, (ok, what) in available_backends().items():
        print(f"backend {name}: {'available' if ok else 'unavailable'} ({what})")
    print("cuda backend needs:")
    for piece in cuda_pieces():
        print(f"  {piece.line()}")
    return EXIT_OK


#: The repository checkout this package was installed from (editable install), holding ``benchmarks/``.
CHECKOUT = Path(__file__).resolve().parents[1]


def register_bench(sub) -> None:
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except (RunFailed, OutputFailed) as exc:  # their messages say what, where and why
        print(f"failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # anything else is a failure of ours or of the machine
        print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
