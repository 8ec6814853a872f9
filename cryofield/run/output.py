"""The output directory's safety: refuse names and places a result set cannot be published to, before any
computation, and hold the output name's lock while a run writes (:mod:`cryofield.io.resultset`)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryofield.config.case import NAME_PATTERN
from cryofield.errors import InputError
from cryofield.io.resultset import OutputLock, remove_stale_staging, set_names


def check_output_dir(out_dir: Path) -> None:
    """Refuse an output location that cannot be written, before any computation."""
    probe = out_dir
    while not os.path.lexists(probe):
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"output directory is not writable: {out_dir}", key="-o/--output")


def check_output(out_dir: Path, name: str) -> None:
    """Refuse output names that cannot be published, before any computation.

    Every file of the set must land directly in ``out_dir`` (the name is a safe file stem, and each path
    resolves inside it), and an existing file of that name must be one that can be replaced: a regular
    file, or a link to one (the link is replaced, never what it points to); not a directory, a dangling
    link or a device.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(f"unsafe case name {name!r}", key="name")
    root = out_dir.resolve()
    for file in set_names(name) + [f"{name}.manifest.json", f".{name}.lock"]:
        path = out_dir / file
        if path.parent.resolve() != root or path.name != file:
            raise InputError(f"{path} would be written outside the output directory {out_dir}", key="name")
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and file.startswith("."):
            raise InputError(f"{path} is a symbolic link; remove it", key="-o/--output")
        if stat.S_ISLNK(st.st_mode) and not path.exists():
            raise InputError(f"{path} is a dangling symbolic link; remove it or choose another -o or case name",
                             key="-o/--output")
        if not path.is_file():
            raise InputError(f"{path} exists and is not a regular file (a directory?); the result set cannot "
                             "replace it: remove it or choose another -o or case name", key="-o/--output")


@contextmanager
def reserve_output(out_dir: Path, name: str) -> Iterator[OutputLock]:
    """Create ``out_dir`` if needed and hold the lock of ``name`` in it (exit 2 when another run has it).

    Stale staging directories of earlier runs of ``name`` are removed. On failure, directories this
    created are removed again if empty, so bad input leaves no output at all.
    """
    created = _make_dirs(out_dir)
    try:
        with OutputLock(out_dir, name) as lock:
            check_output(out_dir, name)  # again, now that no other run of the name can change them
            remove_stale_staging(out_dir, name)
            yield lock
    except BaseException:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _make_dirs(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` and its missing parents; returns those this call created, outermost first."""
    missing = []
    probe = out_dir
    while not os.path.lexists(probe):
        missing.append(probe)
        probe = probe.parent
    created = []
    for path in reversed(missing):
        try:
            path.mkdir()
            created.append(path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise InputError(f"cannot create the output directory {path}: {exc.strerror}", key="-o/--output") from exc
    if not out_dir.is_dir():
        raise InputError(f"output directory is not a directory: {out_dir}", key="-o/--output")
    return created
