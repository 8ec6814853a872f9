"""Errors that the command line turns into exit codes."""

from __future__ import annotations


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
        where = ": ".join(part for part in (self.source, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class BackendUnavailable(InputError):
    """The requested compute backend cannot run on this machine."""
