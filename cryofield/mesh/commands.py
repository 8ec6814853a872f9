"""``cryofield mesh ...``: generate the occipital phantom, check any mesh."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cryofield.errors import InputError


def register(subparsers) -> None:
    """Add the ``mesh`` command group (``phantom``, ``check``)."""
    mesh = subparsers.add_parser("mesh", help="generate the occipital phantom, check a mesh")
    sub = mesh.add_subparsers(dest="mesh_command", required=True)

    phantom = sub.add_parser("phantom", help="generate (or fetch from the cache) the occipital phantom",
                             description="Generate the occipital phantom. With CASE, its mesh.phantom and probe "
                                         "placements are used; otherwise a phantom without probes.")
    phantom.add_argument("case", type=Path, nargs="?", help="case YAML with mesh.phantom (and placed probes)")
    phantom.add_argument("--preset", choices=["coarse", "medium", "fine"], help="size preset (overrides the case)")
    phantom.add_argument("--side", choices=["right", "left"], help="side (overrides the case)")
    phantom.add_argument("-o", "--output", type=Path, help="also write the mesh here (.msh, .msh.xz, .vtu, ...; "
                                                          "coordinates in mm, metadata in NAME.meta.json)")
    phantom.add_argument("--no-cache", action="store_true", help="generate even if cached, and do not cache")
    phantom.add_argument("--threads", type=int, default=0, help="Gmsh threads (0: Gmsh's default)")
    phantom.set_defaults(func=cmd_phantom)

    check = sub.add_parser("check", help="quality and sanity report of a mesh file")
    check.add_argument("file", type=Path)
    check.add_argument("--units", choices=["mm", "m"], default="mm", help="units of the file's coordinates")
    check.set_defaults(func=cmd_check)


def cmd_phantom(args: argparse.Namespace) -> int:
    from cryofield.config.meshspec import PhantomSpec
    from cryofield.mesh.phantom import phantom_mesh
    from cryofield.mesh.quality import quality_report
    from cryofield.mesh.sources import input_errors

    spec, placements, keys, source = _phantom_request(args)
    updates = {k: v for k, v in (("preset", args.preset), ("side", args.side)) if v}
    spec = PhantomSpec.model_validate(spec.model_dump() | updates)
    t0 = time.perf_counter()
    with input_errors(source, keys):
        mesh, cached = phantom_mesh(spec, placements, use_cache=not args.no_cache, threads=args.threads)
    elapsed = time.perf_counter() - t0
    report = quality_report(mesh)
    info = mesh.metadata["phantom"]
    how = "from the cache" if cached else f"generated in {info['generation_s']:.1f} s"
    print(f"occipital phantom {spec.side}, {spec.preset}: {mesh.n_nodes} nodes, {mesh.n_tets} tetrahedra, {how} "
          f"({elapsed:.1f} s in all)")
    print(f"hash {info['hash']}; minimum dihedral angle {report.min_dihedral:.2f}°, "
          f"worst aspect ratio {report.max_aspect:.3g}, inverted {report.inverted}")
    for name, probe in mesh.metadata["probes"].items():
        tip = ", ".join(f"{v * 1e3:.2f}" for v in probe["tip"])
        print(f"probe {name}: {probe['gauge']}, active {probe['active_length'] * 1e3:g} mm, tip ({tip}) mm")
    if not args.no_cache:
        print(f"cached: {mesh.source}")
    if args.output:
        from cryofield.mesh.io import write_mesh

        write_mesh(mesh, args.output, units="mm")
        print(f"written: {args.output}")
    return 0


def _phantom_request(args: argparse.Namespace):
    """The phantom spec, probe placements, their case keys and the source named by the arguments."""
    from cryofield.config.case import load_case
    from cryofield.config.meshspec import PhantomSpec
    from cryofield.mesh.sources import case_placements

    if args.case is None:
        return PhantomSpec(), {}, {}, None
    case = load_case(args.case)
    if case.mesh.phantom is None:
        raise InputError("the case's mesh is not the phantom (no mesh.phantom)", source=case.source, key="mesh")
    return case.mesh.phantom, *case_placements(case), case.source


def cmd_check(args: argparse.Namespace) -> int:
    from cryofield.mesh.checks import check_mesh
    from cryofield.mesh.io import read_mesh
    from cryofield.mesh.quality import quality_report

    mesh = read_mesh(args.file, args.units)
    print(f"{args.file} ({args.units})")
    for line in quality_report(mesh, args.units).lines():
        print(f"  {line}")
    for line in _metadata_lines(mesh.metadata):
        print(f"  {line}")
    check_mesh(mesh, args.units, source=str(args.file))  # raises (exit 2) on anything a run would refuse
    for note in mesh.notes:
        print(f"  note: {note}")
    print("  sane: a run can use this mesh")
    return 0


def _metadata_lines(metadata: dict) -> list[str]:
    lines = []
    if "phantom" in metadata:
        p = metadata["phantom"]
        lines.append(f"occipital phantom {p['side']}, {p['preset']}, hash {p['hash']} ({p['generator']}, "
                     f"gmsh {p['gmsh']})")
    for name, probe in metadata.get("probes", {}).items():
        tip = ", ".join(f"{v * 1e3:.2f}" for v in probe["tip"])
        lines.append(f"probe {name}: {probe.get('gauge', '')} d = {probe['diameter'] * 1e3:.3f} mm, active "
                     f"{probe['active_length'] * 1e3:g} mm, tip ({tip}) mm")
    if metadata.get("centerlines"):
        lines.append(f"centrelines: {', '.join(metadata['centerlines'])}; landmarks: "
                     f"{', '.join(metadata.get('landmarks', {}))}")
    return lines
