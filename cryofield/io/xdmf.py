"""XDMF 3 sidecar so that ParaView (and meshio) open the HDF5 result as a time series."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from cryofield.io.results import CELLS


def write_xdmf(h5_path: Path, xdmf_path: Path) -> Path:
    """Describe every snapshot of ``h5_path`` as one grid of a temporal collection.

    Node fields of each snapshot, the per-node summary fields and the region id are attributes of each grid.
    """
    h5_name = os.path.relpath(h5_path, xdmf_path.parent)
    with h5py.File(h5_path, "r") as f:
        n_nodes = f["mesh/points"].shape[0]
        cells = next(f"/mesh/{k}" for k in CELLS if k in f["mesh"])
        n_tets, width = f[cells].shape
        times = f["snapshots/time"][()]
        snap_fields = [k for k in f["snapshots"] if isinstance(f["snapshots"][k], h5py.Group)]
        static = [(k, f["fields"][k].shape) for k in f["fields"]]

    def item(path: str, shape: tuple[int, ...], number: str = "Float", precision: int = 8) -> str:
        dims = " ".join(str(s) for s in shape)
        return (f'<DataItem DataType="{number}" Precision="{precision}" Dimensions="{dims}" Format="HDF">'
                f"{h5_name}:{path}</DataItem>")

    grids = []
    for i, t in enumerate(times):
        attrs = [f'<Attribute Name="{name}" AttributeType="Scalar" Center="Node">'
                 f'{item(f"/snapshots/{name}/{i:06d}", (n_nodes,))}</Attribute>' for name in snap_fields]
        attrs.append('<Attribute Name="region_id" AttributeType="Scalar" Center="Cell">'
                     f'{item("/mesh/region_id", (n_tets,), "Int", 4)}</Attribute>')
        for name, shape in static:
            if len(shape) == 1:
                attrs.append(f'<Attribute Name="{name}" AttributeType="Scalar" Center="Node">'
                             f'{item(f"/fields/{name}", shape)}</Attribute>')
        grids.append(
            f'<Grid Name="t{i:06d}" GridType="Uniform"><Time Value="{float(t)!r}"/>'
            f'<Topology TopologyType="{"Tetrahedron" if width == 4 else "Triangle"}" NumberOfElements="{n_tets}">'
            f'{item(cells, (n_tets, width), "Int", 4)}'
            f'</Topology><Geometry GeometryType="XYZ">{item("/mesh/points", (n_nodes, 3))}</Geometry>'
            + "".join(attrs) + "</Grid>")
    text = ('<?xml version="1.0"?>\n<Xdmf Version="3.0"><Domain>'
            '<Grid Name="cryofield" GridType="Collection" CollectionType="Temporal">\n'
            + "\n".join(grids) + "\n</Grid></Domain></Xdmf>\n")
    tmp = xdmf_path.with_name(f".{xdmf_path.name}.partial")
    tmp.write_text(text)
    os.replace(tmp, xdmf_path)
    return xdmf_path
