"""Tetrahedral meshes with named regions and tagged boundary facets."""

from cryofield.mesh.core import Mesh
from cryofield.mesh.io import read_mesh, write_mesh

__all__ = ["Mesh", "read_mesh", "write_mesh"]
