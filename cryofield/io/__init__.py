"""Result files: HDF5 (the record), XDMF (for ParaView), JSON (the summary)."""

from .results import ResultWriter, read_result, result_paths

__all__ = ["ResultWriter", "read_result", "result_paths"]
