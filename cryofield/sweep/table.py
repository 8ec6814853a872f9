"""The results table: one row per variant, as Parquet and CSV, each rewritten atomically.

Columns in order: ``variant`` (its index in the design), ``key`` (its directory under ``variants/``), the
axes (named by :attr:`~cryofield.sweep.schema.Axis.column`), ``status`` (``ok``, ``failed``, ``pending``),
``run`` (which run of the sweep command computed it: 1 the first, 2 a rerun ...), then what the worker
reported (:mod:`cryofield.sweep.worker`). A column a row lacks is empty (null) there; a list value (a
vector-valued axis) is JSON text.

Examples
--------
>>> rows = [{"variant": 0, "status": "ok", "x": 1.5}, {"variant": 1, "status": "pending", "note": "a"}]
>>> table = to_arrow(rows, ["variant", "status"])
>>> table.column_names, table.column("x").to_pylist()
(['variant', 'status', 'x', 'note'], [1.5, None])
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

PARQUET, CSV = "results.parquet", "results.csv"


def to_arrow(rows: list[dict[str, Any]], first: list[str]):
    """A :class:`pyarrow.Table` of ``rows``: the ``first`` columns, then every other key in order of appearance.

    A column whose values do not make one Arrow type (numbers and text mixed) is written as text.
    """
    import pyarrow as pa

    names = list(dict.fromkeys([*first, *(k for row in rows for k in row)]))
    columns = {}
    for name in names:
        values = [_flat(row.get(name)) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            columns[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
        if pa.types.is_null(columns[name].type):
            columns[name] = columns[name].cast(pa.string())
    return pa.table(columns)


def _flat(value: Any) -> Any:
    """Lists and mappings (a vector-valued axis) as JSON text: every column is one value per cell, as CSV needs."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def write_table(out_dir: Path, rows: list[dict[str, Any]], first: list[str]) -> dict[str, Path]:
    """Write ``results.parquet`` and ``results.csv`` into ``out_dir``, each renamed into place."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = to_arrow(rows, first)
    paths = {"parquet": Path(out_dir) / PARQUET, "csv": Path(out_dir) / CSV}
    for kind, path in paths.items():
        tmp = path.with_name(f".{path.name}.partial")
        if kind == "parquet":
            pq.write_table(table, tmp)
        else:
            pacsv.write_csv(table, tmp)
        os.replace(tmp, path)
    return paths


def read_table(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of a sweep's ``results.parquet``."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(out_dir) / PARQUET).to_pylist()
