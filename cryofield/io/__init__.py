"""Result files: HDF5 (the record), XDMF (for ParaView), JSON (the summary)."""

from cryofield.io.results import ResultWriter, read_result, result_paths
from cryofield.io.resultset import ResultSetError, check_set

__all__ = ["ResultSetError", "ResultWriter", "check_set", "read_result", "result_paths"]
