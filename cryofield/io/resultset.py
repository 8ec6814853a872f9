"""A result set: the files of one run, published into the output directory as a unit, and its manifest.

Files in the output directory ``DIR`` of a run named ``NAME``:

* the set: ``NAME.h5``, ``NAME.xdmf``, ``NAME.json`` and the pictures (``NAME_3d.png``, ``NAME_slice.png``,
  ``NAME_timeseries.png``, and whatever ``cryofield render`` later adds there);
* ``NAME.manifest.json``: the run id, the cryofield version, when it was made, and each file of the set
  with its size and SHA-256. It is the commit point of a publication;
* ``.NAME.lock``: the advisory lock (:class:`OutputLock`) of the run writing ``NAME``, naming its pid;
  present only while a run holds it;
* ``.NAME.RUNID.partial/``: the staging directory of run ``RUNID`` while it computes and writes.

Publication (:func:`publish`). POSIX renames one file at a time, so the manifest decides which files
form the set:

1. Every file is written complete in the staging directory, each run under its own unique name, and made
   durable (fsync); then the new manifest and a *publishing* marker (the new run id, ``complete: false``)
   are written there, with a copy of the current manifest. A failure or a full disk up to here leaves
   ``DIR`` exactly as it was; the staging directory is removed.
2. The marker replaces ``NAME.manifest.json``; the previous set's files move into the staging directory;
   the new files move into place. Renames within one directory: no data is written.
3. The new manifest replaces the marker (``os.replace``): from here on the new set is published. The
   staging directory, holding the previous files, is removed.

An error in step 2 or 3 (an exception, Ctrl-C) moves everything back: the previous set is restored whole.
The crash windows: a crash (power loss, SIGKILL, SIGTERM) before step 2 leaves the previous set as it was
(and a dead staging directory and lock file, which the next run of ``NAME`` removes: the kernel released
the lock); a crash inside step 2 leaves the marker as the manifest, so readers refuse the set as
interrupted until the next run of ``NAME`` replaces it (the previous files are in
``.NAME.RUNID.partial/previous/`` until then); after step 3 the new set is complete. A reader never
accepts a mixed set: while the marker is in place everything is refused, and otherwise a file that is not
the one the manifest names (another run id, size or SHA-256) is refused. An h5 moved away from its
manifest is read on its own: it carries its ``complete`` flag and its ``run_id``.

Pictures that ``cryofield render`` draws into a published set's directory are added to the set the same
way (``publish(..., keep=manifest)``) but without the marker, so the h5 stays readable meanwhile; a crash
there can only leave pictures that do not match the manifest, which :func:`check_set` reports.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryofield.errors import InputError
from cryofield.version import __version__

MANIFEST_FORMAT = "cryofield-result-set"
MANIFEST_VERSION = 1
#: Pictures ``cryofield run`` draws into every set (``NAME_KIND.png``).
PICTURE_KINDS = ("3d", "slice", "timeseries")
#: A manifest larger than this is not one of ours.
MAX_MANIFEST_BYTES = 1 << 20


class ResultSetError(ValueError):
    """A result set whose files do not match its manifest, or whose publication was interrupted."""


def new_run_id() -> str:
    """A run id unique across processes and machines: UTC time, pid and 32 random bits."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{secrets.token_hex(4)}"


RUN_ID = r"\d{8}T\d{6}-\d+-[0-9a-f]{8}"


def manifest_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.manifest.json"


#: The files of a run's result set besides its pictures, kind -> suffix of ``NAME`` (the one table of them;
#: the manifest is written when the set is published).
RUN_FILES = {"h5": ".h5", "xdmf": ".xdmf", "json": ".json"}


def set_names(name: str) -> list[str]:
    """The file names a run of ``name`` writes (the manifest not included)."""
    return [f"{name}{suffix}" for suffix in RUN_FILES.values()] + [f"{name}_{kind}.png" for kind in PICTURE_KINDS]


def staging_pattern(name: str) -> re.Pattern:
    """Names of the staging directories of runs of ``name`` (and of no other name)."""
    return re.compile(rf"\.{re.escape(name)}\.({RUN_ID})\.partial")


def file_entry(path: Path) -> dict:
    """Size and SHA-256 of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and make it durable (the one writer of every small file here)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(out_dir: Path, name: str) -> dict | None:
    """The manifest of ``name`` in ``out_dir``, or None when there is none.

    Raises
    ------
    ResultSetError
        For a manifest that is not a regular file, too large, or not one of ours.
    """
    path = manifest_path(out_dir, name)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    if not path.is_file() or st.st_size > MAX_MANIFEST_BYTES:
        raise ResultSetError(f"{path} is not a result-set manifest (not a regular file, or too large)")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultSetError(f"{path} is not a readable result-set manifest: {exc}") from exc
    if (not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT
            or not isinstance(data.get("files"), dict) or not isinstance(data.get("run_id"), str)):
        raise ResultSetError(f"{path} is not a cryofield result-set manifest")
    if data.get("version") != MANIFEST_VERSION:
        raise ResultSetError(f"{path}: manifest version {data.get('version')!r}, this cryofield reads "
                             f"{MANIFEST_VERSION}")
    return data


def check_file(path: Path, run_id: str | None = None, hashes: bool = True) -> dict | None:
    """Check ``path`` against the manifest of its set, if it has one; returns the manifest (None: a bare file).

    The manifest of ``DIR/NAME.EXT`` is ``DIR/NAME.manifest.json``. ``run_id`` is the run id the file
    itself records (the h5's), compared with the manifest's.

    Raises
    ------
    ResultSetError
        For a set being published or interrupted, or a file that is not the one its manifest names.
    """
    path = Path(path)
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    manifest = read_manifest(path.parent, name)
    if manifest is None:
        return None
    where = path.parent / name
    if not manifest.get("complete"):
        raise ResultSetError(f"the result set {where} is incomplete: run {manifest['run_id']} is publishing it or "
                             "was interrupted while doing so; wait for it, or run the case again")
    if path.name not in manifest["files"]:
        raise ResultSetError(f"{path} is not part of the result set {where} (its manifest does not list it): it "
                             "is left over from another run")
    if run_id is not None and run_id != manifest["run_id"]:
        raise ResultSetError(f"{path} was written by run {run_id}, but the manifest of {where} names run "
                             f"{manifest['run_id']}: the set is mixed; run the case again")
    _check_entry(path, manifest["files"][path.name], hashes)
    return manifest


def check_set(out_dir: Path, name: str, hashes: bool = True) -> dict:
    """Check every file of the set ``name`` in ``out_dir`` against its manifest; returns the manifest.

    Raises
    ------
    ResultSetError
        For a missing or incomplete manifest, or any file missing or not the one the manifest names.
    """
    manifest = read_manifest(out_dir, name)
    where = Path(out_dir) / name
    if manifest is None:
        raise ResultSetError(f"no result set {where}: {manifest_path(out_dir, name).name} not found")
    if not manifest.get("complete"):
        raise ResultSetError(f"the result set {where} is incomplete: run {manifest['run_id']} is publishing it "
                             "or was interrupted while doing so")
    for file, entry in manifest["files"].items():
        if Path(file).name != file:
            raise ResultSetError(f"{manifest_path(out_dir, name)} names a file outside its directory: {file!r}")
        _check_entry(Path(out_dir) / file, entry, hashes)
    return manifest


def _check_entry(path: Path, entry: dict, hashes: bool) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ResultSetError(f"{path} is missing from its result set") from None
    if not path.is_file() or size != entry.get("size"):
        raise ResultSetError(f"{path} does not match its manifest ({size} bytes, the manifest says "
                             f"{entry.get('size')}): the set is mixed or was modified; run the case again")
    if hashes and file_entry(path)["sha256"] != entry.get("sha256"):
        raise ResultSetError(f"{path} does not match its manifest (SHA-256 differs): the set is mixed or was "
                             "modified; run the case again")


class OutputLock:
    """The advisory lock of one output name: ``DIR/.NAME.lock``, held (``flock``) for a whole run.

    A second run of the same name does not wait: :meth:`acquire` raises :class:`InputError` (exit 2)
    naming the holder's pid. The kernel releases the lock of a process that dies, so a stale lock file is
    simply locked again by the next run. The holder removes the file when it is done; a process that
    locked a file just removed by its holder notices (another inode is there, or none) and tries again.
    """

    def __init__(self, out_dir: Path, name: str):
        self.out_dir, self.name = Path(out_dir), name
        self.path = self.out_dir / f".{name}.lock"
        self.fd: int | None = None

    def acquire(self) -> OutputLock:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise InputError(f"cannot create the lock file {self.path}: {exc.strerror}",
                                 key="-o/--output") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise InputError(f"another run is writing {self.out_dir / self.name} (pid {holder}); wait for it "
                                 "to finish or choose another -o or case name", key="-o/--output") from None
            mine = os.fstat(fd)
            try:
                there = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # the previous holder removed it after we opened it: lock the one there now
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
            return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it (see the class docstring)
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def remove_stale_staging(out_dir: Path, name: str) -> None:
    """Remove staging directories of earlier runs of ``name`` (call with its lock held: they are dead)."""
    pattern = staging_pattern(name)
    for entry in Path(out_dir).iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


@dataclass
class Staging:
    """The staging directory ``DIR/.NAME.RUNID.partial/`` of one run (or one picture update) of ``name``."""

    out_dir: Path
    name: str
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.dir = self.out_dir / f".{self.name}.{self.run_id}.partial"
        self.dir.mkdir(mode=0o755)

    def path(self, filename: str) -> Path:
        return self.dir / filename

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def publish(staging: Staging, files: Iterable[str], *, keep: dict | None = None, extra: dict | None = None) -> dict:
    """Move the staged ``files`` into place as one set with a new manifest (see the module docstring).

    Parameters
    ----------
    staging
        Holds ``files``, complete.
    files
        File names (in the staging directory) of the new set, or, with ``keep``, to add to it.
    keep
        The current manifest, to keep its other files and run id (a picture update); None (a run): the
        set is ``files`` alone, and every file of the previous set not among them is removed.
    extra
        More manifest keys.

    Returns the new manifest. The caller holds the name's :class:`OutputLock`; the staging directory is
    removed, also on failure (after the previous set has been restored).
    """
    out_dir, name = staging.out_dir, staging.name
    files = list(dict.fromkeys(files))
    target = manifest_path(out_dir, name)
    try:
        entries = {}
        for file in files:
            _fsync(staging.path(file))
            entries[file] = file_entry(staging.path(file))
        if keep is None:
            manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "name": name,
                        "run_id": staging.run_id, "complete": True, "cryofield_version": __version__,
                        "created": _now(), **(extra or {}), "files": entries}
        else:
            kept = {k: v for k, v in keep["files"].items() if k not in entries}
            manifest = {k: v for k, v in keep.items() if k != "files"} | {"updated": _now(), **(extra or {}),
                                                                           "files": kept | entries}
        write_file(staging.path(target.name), json.dumps(manifest, indent=1).encode())
        if keep is None:  # a run withdraws the previous set first; a picture update leaves the h5 readable
            marker = {k: v for k, v in manifest.items() if k != "files"} | {"complete": False, "files": {}}
            write_file(staging.path(".publishing.json"), json.dumps(marker, indent=1).encode())
        previous = staging.path("previous")
        previous.mkdir()
        had_manifest = target.exists()
        if had_manifest:
            shutil.copyfile(target, previous / target.name)
            _fsync(previous / target.name)
        _fsync(staging.dir)
        # What the new set replaces: the files it rewrites and, for a run, every file of the previous set.
        old = set(files)
        if keep is None:
            old |= set(set_names(name))
            try:
                listed = read_manifest(out_dir, name)
            except ResultSetError:
                listed = None
            old |= {f for f in (listed or {}).get("files", {}) if Path(f).name == f and f != target.name}
        old = sorted(f for f in old if os.path.lexists(out_dir / f))
    except BaseException:
        staging.discard()
        raise
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        if keep is None:
            os.replace(staging.path(".publishing.json"), target)
        for file in old:
            os.replace(out_dir / file, previous / file)
            moved_old.append(file)
        for file in files:
            os.replace(staging.path(file), out_dir / file)
            moved_new.append(file)
        os.replace(staging.path(target.name), target)  # the commit point
    except BaseException:
        for file in reversed(moved_new):
            _quietly(os.replace, out_dir / file, staging.path(file))
        for file in reversed(moved_old):
            _quietly(os.replace, previous / file, out_dir / file)
        if keep is not None:
            pass  # the manifest was never replaced
        elif had_manifest:
            _quietly(os.replace, previous / target.name, target)
        else:
            _quietly(os.unlink, target)
        _quietly(_fsync, out_dir)
        staging.discard()
        raise
    _quietly(_fsync, out_dir)
    staging.discard()
    return manifest


def _quietly(func, *args) -> None:
    try:
        func(*args)
    except OSError:
        pass


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
