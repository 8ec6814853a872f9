"""Element quality and a human-readable sanity report for any tetrahedral mesh.

Measures (per tetrahedron):

* dihedral angles: the six angles between pairs of faces (70.53° for a regular tetrahedron; slivers
  have some near 0° or 180°);
* aspect ratio: longest edge / (2 sqrt(6) inradius), 1 for a regular tetrahedron and growing without
  bound as it degenerates;
* signed volume: a tetrahedron is inverted when it is not positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryofield.fem import geometry as fem
from cryofield.mesh.checks import signed_volumes
from cryofield.mesh.core import Mesh
from cryofield.mesh.io import UNIT_SCALE
from cryofield.mesh.topology import TET_FACES

#: Pairs of faces (by the vertex they are opposite) that meet along each of the six edges.
_FACE_PAIRS = np.array([[2, 3], [1, 3], [1, 2], [0, 3], [0, 2], [0, 1]])
_CHUNK = 500_000


def dihedral_angles(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """(E, 6) dihedral angles in degrees (orientation independent)."""
    out = np.empty((len(tets), 6))
    for start in range(0, len(tets), _CHUNK):
        p = points[tets[start:start + _CHUNK]]
        faces = p[:, TET_FACES]  # (e, 4, 3 vertices, 3)
        normals = np.cross(faces[:, :, 1] - faces[:, :, 0], faces[:, :, 2] - faces[:, :, 0])
        normals /= np.linalg.norm(normals, axis=2, keepdims=True)
        a, b = _FACE_PAIRS.T
        cos = -np.einsum("eij,eij->ei", normals[:, a], normals[:, b])
        out[start:start + _CHUNK] = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return out


def aspect_ratios(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Longest edge / (2 sqrt(6) inradius): 1 for a regular tetrahedron."""
    out = np.empty(len(tets))
    pairs = fem.EDGES
    for start in range(0, len(tets), _CHUNK):
        t = tets[start:start + _CHUNK]
        p = points[t]
        volume = np.abs(signed_volumes(points, t))
        faces = p[:, TET_FACES]
        area = 0.5 * np.linalg.norm(np.cross(faces[:, :, 1] - faces[:, :, 0], faces[:, :, 2] - faces[:, :, 0]),
                                    axis=2).sum(axis=1)
        longest = np.max(np.linalg.norm(p[:, pairs[:, 0]] - p[:, pairs[:, 1]], axis=2), axis=1)
        with np.errstate(divide="ignore"):
            out[start:start + _CHUNK] = longest / (2 * np.sqrt(6) * 3 * volume / area)
    return out


@dataclass
class QualityReport:
    """Counts, sizes and element quality of a mesh, lengths in the declared units."""

    units: str
    n_nodes: int
    n_tets: int
    bounding_box: tuple[np.ndarray, np.ndarray]
    regions: dict[str, tuple[int, float]]  # name -> (tetrahedra, volume)
    surfaces: dict[str, tuple[int, float]]  # name -> (triangles, area)
    min_dihedral: float
    max_dihedral: float
    dihedral_below: dict[float, int]
    max_aspect: float
    aspect_p99: float
    inverted: int
    edge_range: tuple[float, float]

    def lines(self) -> list[str]:
        u = self.units
        lo, hi = self.bounding_box
        extent = ", ".join(f"{axis} {a:.4g} .. {b:.4g}" for axis, a, b in zip("xyz", lo, hi))
        size = " x ".join(f"{v:.4g}" for v in hi - lo)
        out = [f"{self.n_nodes} nodes, {self.n_tets} tetrahedra",
               f"bounding box ({u}): {extent} (size {size})",
               f"edge lengths ({u}): {self.edge_range[0]:.3g} .. {self.edge_range[1]:.3g}",
               f"{'region':<24}{'tetrahedra':>12}{f'volume {u}3':>16}"]
        out += [f"{name:<24}{n:>12}{vol:>16.6g}" for name, (n, vol) in self.regions.items()]
        out.append(f"{'surface':<24}{'triangles':>12}{f'area {u}2':>16}")
        out += [f"{name:<24}{n:>12}{area:>16.6g}" for name, (n, area) in self.surfaces.items()]
        below = ", ".join(f"{n} below {a:g}°" for a, n in self.dihedral_below.items())
        out += [f"dihedral angles: min {self.min_dihedral:.2f}°, max {self.max_dihedral:.2f}° ({below})",
                f"aspect ratio (1 = regular): worst {self.max_aspect:.3g}, 99th percentile {self.aspect_p99:.3g}",
                f"inverted or flat tetrahedra: {self.inverted}"]
        return out


def quality_report(mesh: Mesh, units: str = "mm") -> QualityReport:
    """Measure ``mesh`` (in metres) and report lengths in ``units``."""
    scale = 1.0 / UNIT_SCALE[units]
    points = mesh.points * scale
    volumes = signed_volumes(points, mesh.tets)
    angles = dihedral_angles(points, mesh.tets)
    aspect = aspect_ratios(points, mesh.tets)
    edges = np.unique(np.sort(mesh.tets[:, fem.EDGES].reshape(-1, 2), axis=1), axis=0)
    lengths = np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
    regions = {name: (int((mesh.tet_tags == tag).sum()), float(np.abs(volumes[mesh.tet_tags == tag]).sum()))
               for name, tag in mesh.regions.items()}
    surfaces = {}
    for name in mesh.surfaces:
        tri = mesh.surface_facets(name)
        surfaces[name] = (len(tri), float(fem.facet_areas(points, tri).sum()))
    worst = angles.min(axis=1)
    return QualityReport(
        units=units, n_nodes=mesh.n_nodes, n_tets=mesh.n_tets,
        bounding_box=(points.min(axis=0), points.max(axis=0)), regions=regions, surfaces=surfaces,
        min_dihedral=float(angles.min()), max_dihedral=float(angles.max()),
        dihedral_below={a: int((worst < a).sum()) for a in (5.0, 10.0, 20.0)},
        max_aspect=float(aspect.max()), aspect_p99=float(np.percentile(aspect, 99)), inverted=int((volumes <= 0).sum()),
        edge_range=(float(lengths.min()), float(lengths.max())),
    )
