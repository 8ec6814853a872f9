"""Reading and writing meshes through meshio, keeping region and surface tags."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import math
import shutil
import tempfile
from pathlib import Path

import meshio
import numpy as np

from cryofield.errors import InputError
from cryofield.mesh.core import Mesh

#: Cell-data arrays that carry region tags in common formats, in the order they are tried.
TAG_ARRAYS = ("gmsh:physical", "medit:ref", "region", "regions", "tag", "CellEntityIds", "material")

UNIT_SCALE = {"m": 1.0, "mm": 1e-3}

#: Compressed mesh files (``head.msh.xz``) are read and written through these.
COMPRESSORS = {".xz": lzma.open, ".gz": gzip.open}

#: A metadata sidecar larger than this is refused (the phantom's is about 100 kB).
MAX_METADATA_BYTES = 64 << 20


def read_mesh(
    path: str | Path,
    units: str,
    regions: dict[str, int] | None = None,
    surfaces: dict[str, int] | None = None,
    tag_array: str | None = None,
) -> Mesh:
    """Read a tetrahedral mesh with region-tagged tetrahedra and tagged boundary triangles.

    Parameters
    ----------
    path
        Any format meshio reads (Gmsh ``.msh``, Medit ``.mesh``, ``.vtu``, ...), possibly compressed
        (``.msh.xz``, ``.msh.gz``).
    units
        ``"mm"`` or ``"m"``: the unit of the file's coordinates.
    regions, surfaces
        Name → tag maps. When omitted they are taken from the file's physical names (Gmsh).
    tag_array
        Name of the cell-data array holding the tags; by default the first of :data:`TAG_ARRAYS` present.

    Returns
    -------
    Mesh
        Coordinates converted to metres; tags as in the file (not yet checked, see :mod:`.checks`);
        :attr:`Mesh.metadata` from the sidecar ``NAME.meta.json`` when there is one (see :func:`write_mesh`).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"mesh file not found: {path}", key="mesh.file")
    try:
        raw = _read_raw(path)
    except (Exception, SystemExit) as exc:  # meshio raises many kinds, and exits when no format fits
        why = "not a mesh file in a format meshio reads" if isinstance(exc, SystemExit) else str(exc)
        raise InputError(f"cannot read mesh: {why}", source=str(path)) from exc
    array = _pick_tag_array(raw, tag_array, path)
    metadata = _read_metadata(path)
    dim = 2 if metadata.get("axisymmetric") else 3  # an axisymmetric mesh: r-z triangles, boundary segments
    element, facet = ("triangle", "line") if dim == 2 else ("tetra", "triangle")
    tets, tet_tags = _cells_of(raw, element, array)
    if len(tets) == 0:
        what = "triangles (an axisymmetric mesh)" if dim == 2 else "tetrahedra"
        raise InputError(f"the mesh has no {what} (linear '{element}' cells are required)", source=str(path))
    facets, facet_tags = _cells_of(raw, facet, array)
    named = {name: int(tag_dim[0]) for name, tag_dim in raw.field_data.items() if len(tag_dim) >= 2}
    dims = {name: int(tag_dim[1]) for name, tag_dim in raw.field_data.items() if len(tag_dim) >= 2}
    if regions is None:
        regions = {n: t for n, t in named.items() if dims[n] == dim}
    if surfaces is None:
        surfaces = {n: t for n, t in named.items() if dims[n] == dim - 1}
    return Mesh(
        points=np.ascontiguousarray(raw.points[:, :3], dtype=float) * UNIT_SCALE[units],
        tets=tets, tet_tags=tet_tags, facets=facets, facet_tags=facet_tags,
        regions=dict(regions), surfaces=dict(surfaces), source=str(path), metadata=metadata,
    )


def _read_raw(path: Path) -> meshio.Mesh:
    # meshio prints its own complaints before it raises (or exits): keep them out of the one-line message
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if path.suffix not in COMPRESSORS:
            return meshio.read(path)
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem  # meshio picks the format from the inner suffix
            with COMPRESSORS[path.suffix](path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return meshio.read(plain)


def metadata_path(path: str | Path) -> Path:
    """The metadata sidecar of a mesh file: ``head.msh`` (or ``head.msh.xz``) -> ``head.meta.json``."""
    path = Path(path)
    if path.suffix in COMPRESSORS:
        path = path.with_suffix("")
    return path.with_suffix(".meta.json")


def _read_metadata(path: Path) -> dict:
    sidecar = metadata_path(path)
    if not sidecar.exists():
        return {}
    if not sidecar.is_file():
        raise InputError("the mesh metadata sidecar is not a regular file", source=str(sidecar))
    try:
        if sidecar.stat().st_size > MAX_METADATA_BYTES:
            raise InputError(f"the mesh metadata is larger than {MAX_METADATA_BYTES >> 20} MiB", source=str(sidecar))
        data = json.loads(sidecar.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"cannot read the mesh metadata: {str(exc)[:200]}", source=str(sidecar)) from exc
    check_metadata(data, str(sidecar))
    return data


def check_metadata(data, source: str | None = None) -> None:
    """Check the parts of a mesh's metadata that runs and pictures use (metres); other keys are free.

    ``centerlines``: name -> at least two ``[x, y, z]``; ``probes``: name -> ``tip`` and ``axis``
    (``[x, y, z]``, the axis not zero), ``diameter`` and ``active_length`` (>= 0); ``diameters``: name -> a
    positive number; ``landmarks``: name -> ``[x, y, z]``; ``phantom``: a mapping. Numbers must be finite.

    Raises
    ------
    InputError
        Naming the sidecar (``source``) and the offending key.
    """
    def bad(key: str, what: str):
        return InputError(f"malformed mesh metadata: expected {what}", source=source, key=key)

    def point(value, key: str) -> list[float]:
        if not (isinstance(value, list) and len(value) == 3 and all(_finite(v) for v in value)):
            raise bad(key, "[x, y, z], three finite numbers (metres)")
        return value

    def mapping(key: str) -> dict:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise bad(key, "a mapping of names")
        return value

    if not isinstance(data, dict):
        raise bad("(top level)", "a JSON object")
    for name, line in mapping("centerlines").items():
        if not isinstance(line, list) or len(line) < 2:
            raise bad(f"centerlines.{name}", "a list of at least two [x, y, z] points")
        for i, p in enumerate(line):
            point(p, f"centerlines.{name}.{i}")
    for name, probe in mapping("probes").items():
        if not isinstance(probe, dict):
            raise bad(f"probes.{name}", "a mapping with tip and axis")
        for key in ("tip", "axis"):
            if key in probe:
                point(probe[key], f"probes.{name}.{key}")
        if "axis" in probe and not any(probe["axis"]):
            raise bad(f"probes.{name}.axis", "a direction that is not zero")
        for key in ("diameter", "active_length"):
            if key in probe and not (_finite(probe[key]) and probe[key] >= 0):
                raise bad(f"probes.{name}.{key}", "a finite number >= 0 (metres)")
    for name, value in mapping("diameters").items():
        if not (_finite(value) and value > 0):
            raise bad(f"diameters.{name}", "a finite number > 0 (metres)")
    for name, value in mapping("landmarks").items():
        point(value, f"landmarks.{name}")
    mapping("phantom")


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pick_tag_array(raw: meshio.Mesh, wanted: str | None, path: Path) -> str:
    available = list(raw.cell_data)
    if wanted is not None:
        if wanted not in available:
            raise InputError(f"cell-data array '{wanted}' not in the file (it has: {available or 'none'})",
                             source=str(path), key="mesh.tag_array")
        return wanted
    for name in TAG_ARRAYS:
        if name in available:
            return name
    raise InputError(f"no region tags found: expected one of the cell-data arrays {list(TAG_ARRAYS)} "
                     f"(the file has: {available or 'none'}); name yours with mesh.tag_array", source=str(path))


def _cells_of(raw: meshio.Mesh, cell_type: str, array: str) -> tuple[np.ndarray, np.ndarray]:
    blocks, tags = [], []
    for block, data in zip(raw.cells, raw.cell_data[array]):
        if block.type == cell_type:
            blocks.append(np.asarray(block.data, dtype=np.int64))
            tags.append(np.asarray(data, dtype=np.int64).ravel())
    if not blocks:
        width = 4 if cell_type == "tetra" else 3
        return np.zeros((0, width), np.int64), np.zeros(0, np.int64)
    return np.concatenate(blocks), np.concatenate(tags)


def write_mesh(mesh: Mesh, path: str | Path, units: str = "mm") -> None:
    """Write a mesh with its tags and names (Gmsh 2.2 ``.msh`` keeps both; other formats keep tags).

    Coordinates are written in ``units``; a ``.xz`` or ``.gz`` suffix compresses the file. Non-empty
    :attr:`Mesh.metadata` (in metres, whatever ``units``) goes to the sidecar ``NAME.meta.json``, which
    :func:`read_mesh` picks up.
    """
    path = Path(path)
    if path.suffix in COMPRESSORS:
        _write_compressed(mesh, path, units)
        return
    dim, (element, facet) = (2, ("triangle", "line")) if mesh.axisymmetric else (3, ("tetra", "triangle"))
    field_data = {n: np.array([t, dim]) for n, t in mesh.regions.items()}
    field_data.update({n: np.array([t, dim - 1]) for n, t in mesh.surfaces.items()})
    tags = [mesh.tet_tags.astype(np.int32), mesh.facet_tags.astype(np.int32)]
    out = meshio.Mesh(
        mesh.points / UNIT_SCALE[units],
        [(element, mesh.tets.astype(np.int32)), (facet, mesh.facets.astype(np.int32))],
        cell_data={"gmsh:physical": tags, "gmsh:geometrical": tags},
        field_data=field_data,
    )
    if path.suffix == ".msh":
        meshio.write(path, out, file_format="gmsh22", binary=True)
    else:
        meshio.write(path, out)
    if mesh.metadata:
        metadata_path(path).write_text(json.dumps(mesh.metadata, indent=1))


def _write_compressed(mesh: Mesh, path: Path, units: str) -> None:
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        plain = Path(tmp) / path.stem
        write_mesh(mesh, plain, units)
        with open(plain, "rb") as src, COMPRESSORS[path.suffix](path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if metadata_path(plain).is_file():
            shutil.move(metadata_path(plain), metadata_path(path))
