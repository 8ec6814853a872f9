"""``cryofield render``: the pictures of a result (see :mod:`cryofield.viz.render` for the files).

Exit codes: 0 every picture made; 2 bad input (not a result, a time outside the run, MP4 without
imageio-ffmpeg); 1 a picture could not be made, e.g. no off-screen OpenGL for the 3D view (the others
are still written and the message says how to fix it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryofield.viz.render import DEFAULT_SIZE, render_result


def parse_size(text: str) -> tuple[int, int]:
    """``'1200x900'`` → ``(1200, 900)``; at least 320 × 240 so the layouts fit."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT in pixels, e.g. 1200x900, not {text!r}") from None
    if width < 320 or height < 240:
        raise argparse.ArgumentTypeError(f"{text}: pictures must be at least 320x240 pixels")
    return width, height


def register(subparsers) -> None:
    """Add the ``render`` command."""
    render = subparsers.add_parser(
        "render", help="pictures of a result: 3D view, ultrasound-plane slice, time series, animation",
        description="Draw a result's pictures off screen from the HDF5 file alone: NAME_3d.png, NAME_slice.png "
                    "and NAME_timeseries.png, and with --animate an animation over the snapshots.")
    render.add_argument("result", type=Path, help="result file NAME.h5")
    render.add_argument("-o", "--output", type=Path, default=None, help="output directory (default: the result's)")
    render.add_argument("--time", type=float, default=None,
                        help="time in s of the 3D view and slice, nearest snapshot (default: end of the last freeze)")
    render.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, metavar="WxH",
                        help=f"picture size in pixels (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    render.add_argument("--animate", nargs="?", const="slice", choices=["slice", "3d"], default=None,
                        help="also animate the slice (default) or the 3D view over all snapshots")
    render.add_argument("--animation-format", choices=["auto", "gif", "mp4"], default="auto",
                        help="auto: MP4 when imageio-ffmpeg is installed, else GIF")
    render.set_defaults(func=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    rendered = render_result(args.result, args.output, time=args.time, size=args.size, animate=args.animate,
                             animation=args.animation_format)
    for kind, path in rendered.paths.items():
        print(f"{kind}: {path}")
    for problem in rendered.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if rendered.problems else 0
