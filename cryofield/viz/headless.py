"""Making sure VTK can render off screen before asking it to.

VTK picks an OpenGL window at run time (X11, EGL or OSMesa). Where none works it may abort the whole
process instead of raising, so a tiny render is first tried in a child process, with each window kind
in turn; the first that works is then used here (``VTK_DEFAULT_OPENGL_WINDOW``). Machines without a
display (CI, servers) normally render through EGL or OSMesa this way, without Xvfb.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

_PROBE = """
import vtkmodules.vtkRenderingOpenGL2  # registers the OpenGL render windows
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkRenderingCore import (vtkActor, vtkPolyDataMapper, vtkRenderer, vtkRenderWindow,
                                         vtkWindowToImageFilter)
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(16, 16)
renderer = vtkRenderer()
renderer.SetBackground(1, 1, 1)
window.AddRenderer(renderer)
sphere = vtkSphereSource()
mapper = vtkPolyDataMapper()
mapper.SetInputConnection(sphere.GetOutputPort())
actor = vtkActor()
actor.SetMapper(mapper)
renderer.AddActor(actor)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
assert vtk_to_numpy(grab.GetOutput().GetPointData().GetScalars()).std() > 0, "the test render is blank"
print(window.GetClassName())
"""

#: Tried in this order on Linux without a display; an unset variable lets VTK choose (X11 when there is one).
_HEADLESS_WINDOWS = ("vtkEGLRenderWindow", "vtkOSOpenGLRenderWindow", None)

_chosen: str | None = None
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class RenderUnavailable(RuntimeError):
    """No OpenGL context for off-screen rendering can be made on this machine."""


def _candidates() -> list[str | None]:
    if os.environ.get("VTK_DEFAULT_OPENGL_WINDOW"):
        return [os.environ["VTK_DEFAULT_OPENGL_WINDOW"]]
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not sys.platform.startswith("linux") or has_display:
        return [None, *_HEADLESS_WINDOWS[:-1]] if sys.platform.startswith("linux") else [None]
    return list(_HEADLESS_WINDOWS)


def _try(window: str | None, timeout: float) -> tuple[bool, str]:
    env = dict(os.environ)
    if window:
        env["VTK_DEFAULT_OPENGL_WINDOW"] = window
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"a test render did not finish in {timeout:g} s"
    if proc.returncode == 0:
        return True, proc.stdout.strip().splitlines()[-1]
    lines = [_ANSI.sub("", line).strip() for line in (proc.stderr or "").splitlines()]
    lines = [line.split("| ", 1)[-1] for line in lines if line]  # drop VTK's log prefix (time, thread)
    return False, lines[-1] if lines else f"the test render crashed (exit status {proc.returncode})"


def ensure_render_context(timeout: float = 60.0) -> str:
    """Find an OpenGL window kind that renders off screen and select it for this process.

    Returns
    -------
    str
        The VTK render window class in use.

    Raises
    ------
    RenderUnavailable
        With what each attempt said and how to fix it.
    """
    global _chosen
    if _chosen is not None:
        return _chosen
    failures = []
    for window in _candidates():
        ok, what = _try(window, timeout)
        if ok:
            if window:
                os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = window
            _chosen = what
            return what
        failures.append(f"{window or 'default window'}: {what}")
    raise RenderUnavailable(
        "cannot render 3D pictures off screen: VTK found no working OpenGL context ("
        + "; ".join(failures) + "). Install an off-screen OpenGL (for example the EGL or OSMesa libraries of "
        "your distribution, such as libegl1 or libosmesa6), or run under a virtual display (xvfb-run)")
