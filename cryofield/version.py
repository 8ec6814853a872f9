"""The installed package's version, recorded in every result and checkpoint."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cryofield")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
