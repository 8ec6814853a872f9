"""Errors that the command line turns into exit codes."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: a case file, a mesh or an output location (exit code 2).

    Parameters
    ----------
    message
        What is wrong and what was expected.
    source
        The file the problem is in, if any.
    key
        The dotted key path inside the case file (``tissues.fat.conductivity``), if any.
    """

    def __init__(self, message: str, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(bounded(part, 300) for part in (self.source, self.key) if part)
        message = bounded(self.message, MAX_MESSAGE)
        return f"{where}: {message}" if where else message


#: Longest message an error prints (anything longer came from the input and is cut short).
MAX_MESSAGE = 2000


def bounded(text: str, limit: int = 80) -> str:
    """``text`` cut to at most ``limit`` characters, marked with an ellipsis where it was cut.

    Examples
    --------
    >>> bounded("x" * 100, 10)
    'xxxxxxxxx…'
    """
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BackendUnavailable(InputError):
    """The requested compute backend cannot run on this machine."""


class RunFailed(RuntimeError):
    """The computation itself failed (a solution that blew up, a failed write): exit code 1, one line."""


class CorruptResult(RunFailed):
    """A result file that exists but is not a readable, complete cryofield result (truncated, damaged, or
    not the file its result set's manifest names): exit code 1, naming the file."""

    def __init__(self, path, why: str):
        self.path = path
        super().__init__(f"{path}: not a readable, complete cryofield result: {bounded(why, 300)}")


#: Exit code of a run stopped by a signal after writing its checkpoint (EX_TEMPFAIL: try again with --resume).
EXIT_INTERRUPTED = 75


class Interrupted(Exception):
    """The run was asked to stop and saved a checkpoint (or had nothing to save yet)."""

    def __init__(self, signal_name: str, t: float | None, path: Path | None):
        self.signal_name, self.t, self.path = signal_name, t, path
        saved = f"checkpoint at t = {t:.6g} s in {path}" if path is not None else "no checkpoint (nothing computed yet)"
        super().__init__(f"stopped by {signal_name}: {saved}")


class OutputFailed(OSError):
    """Writing an output failed (a full disk, a lost permission); names the path."""

    def __init__(self, path: Path, exc: OSError):
        super().__init__(exc.errno, f"cannot write {path}: {exc.strerror or exc}")
        self.path = path
