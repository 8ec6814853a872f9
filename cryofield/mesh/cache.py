"""A directory of generated meshes keyed by the hash of everything that shapes them.

Location: ``$CRYOFIELD_CACHE`` if set, else ``$XDG_CACHE_HOME/cryofield``, else ``~/.cache/cryofield``;
meshes live in its ``meshes/`` folder as ``NAME.msh`` (binary Gmsh 2.2, millimetres) with the
metadata beside it in ``NAME.meta.json``. Entries are written under temporary names and renamed, the
mesh last, so a crash or a concurrent run never leaves a half-written entry that looks complete.
:func:`building` is a lock per entry (``locks/NAME.lock`` beside ``meshes/``, an advisory ``flock``): processes
that ask for the same mesh at once (the workers of a sweep) build it once, the others wait and then load it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryofield.mesh.core import Mesh
from cryofield.mesh.io import metadata_path, read_mesh, write_mesh


def cache_dir() -> Path:
    """The cache root (not created)."""
    if os.environ.get("CRYOFIELD_CACHE"):
        return Path(os.environ["CRYOFIELD_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "cryofield"
    return Path.home() / ".cache" / "cryofield"


def entry_path(name: str) -> Path:
    """Where the mesh called ``name`` (e.g. ``phantom-<hash>``) is or would be stored."""
    return cache_dir() / "meshes" / f"{name}.msh"


def load(name: str) -> Mesh | None:
    """The cached mesh ``name`` in metres with its metadata, or None when absent."""
    path = entry_path(name)
    if not (path.is_file() and metadata_path(path).is_file()):
        return None
    return read_mesh(path, "mm")


def store(name: str, mesh: Mesh) -> Path:
    """Write ``mesh`` (and its metadata) into the cache atomically; returns the mesh path."""
    path = entry_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".partial-") as tmp:
        staged = Path(tmp) / path.name
        write_mesh(mesh, staged, units="mm")
        os.replace(metadata_path(staged), metadata_path(path))
        os.replace(staged, path)
    return path


@contextmanager
def building(name: str) -> Iterator[None]:
    """Hold the lock of entry ``name`` while checking for it and building it (released on exit, or when the
    process dies). Where ``fcntl`` is missing (Windows) concurrent builds are not serialised, only safe.
    """
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
