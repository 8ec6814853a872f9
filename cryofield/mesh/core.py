"""The mesh container passed between layers: plain numpy arrays plus name ↔ tag maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """A linear tetrahedral mesh in metres, or the r–z half plane of an axisymmetric one.

    Attributes
    ----------
    points
        (N, 3) node coordinates in metres.
    tets
        (E, 4) node indices of each tetrahedron; (E, 3) of each triangle of an *axisymmetric* mesh, whose
        points are ``(r, 0, z)`` (r >= 0) about the z axis (:mod:`cryofield.fem.geometry`).
    tet_tags
        (E,) integer region tag of each element.
    facets
        (F, 3) node indices of tagged boundary triangles; (F, 2) boundary segments of an axisymmetric mesh.
    facet_tags
        (F,) integer surface tag of each triangle.
    regions, surfaces
        Name → tag maps.
    source
        Where the mesh came from (a file name or a generator description).
    notes
        Things the checks fixed on the way in (e.g. reoriented tetrahedra).
    metadata
        JSON-serialisable facts about the geometry, in metres, carried into results. Conventions:
        ``probes: {name: {tip, axis, diameter, active_length}}`` (axis a unit vector from the tip towards
        the handle), ``centerlines: {region: [[x, y, z], ...]}`` (nerves, arteries), ``landmarks: {name: [x, y, z]}``;
        the occipital phantom adds ``diameters: {region: d}``, ``frame`` (a description of its axes) and
        ``phantom`` (its parameters and hash, see :mod:`.phantom`).
    """

    points: np.ndarray
    tets: np.ndarray
    tet_tags: np.ndarray
    facets: np.ndarray
    facet_tags: np.ndarray
    regions: dict[str, int]
    surfaces: dict[str, int]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def n_tets(self) -> int:
        return len(self.tets)

    @property
    def axisymmetric(self) -> bool:
        """Whether this is the r–z half plane of an axisymmetric mesh (triangles, not tetrahedra)."""
        return self.tets.shape[1] == 3

    def surface_facets(self, name: str) -> np.ndarray:
        """(F_s, 3) triangles of the named surface."""
        return self.facets[self.facet_tags == self.surfaces[name]]

    def surface_nodes(self, name: str) -> np.ndarray:
        """Sorted unique node indices on the named surface."""
        return np.unique(self.surface_facets(name))

