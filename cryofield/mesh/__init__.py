"""Tetrahedral meshes with named regions and tagged boundary facets."""

from .core import Mesh
from .io import read_mesh, write_mesh

__all__ = ["Mesh", "read_mesh", "write_mesh"]
