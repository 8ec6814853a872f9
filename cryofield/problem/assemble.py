"""From a validated case and a checked mesh to the arrays the kernels work on.

Semi-discrete system (P1, lumped mass), for every node ``i`` not held at a fixed temperature::

    V_i dH_i/dt = -sum_e k_e (K_e T)_i  -  hA_i (T_i - T_amb,i)  +  qA_i  +  V_i f_l(T_i) [P_i (T_a - T_i) + Q_i]

``V_i`` is the lumped volume, ``k_e`` the element conductivity (mean of k(T) at its nodes, with the
element's tissue), ``hA_i`` the lumped convective conductance of Robin surfaces, ``qA_i`` the lumped heat
flow imposed through flux surfaces, ``P_i = w_b rho_b c_b``
and ``Q_i`` the volume-weighted perfusion and metabolic heat of the tissues around the node. The
enthalpy law ``H(T)`` of a node is that of the tissue holding most of its lumped volume.

On an axisymmetric mesh (r–z triangles, :mod:`cryofield.fem.geometry`) the same equation holds with every volume,
area and stiffness coefficient weighted by ``2 pi r``: the arrays below are those of the solid of revolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from cryofield.config.case import Case
from cryofield.errors import InputError
from cryofield.fem import geometry as fem
from cryofield.mesh import Mesh
from cryofield.mesh.io import UNIT_SCALE
from cryofield.mesh.topology import interior_facets
from cryofield.model import boundaries
from cryofield.model.boundaries import BoundarySet, BoundaryState, Context, Surface
from cryofield.model.materials import Material, MaterialTables, build_tables, maximum_conductivity, minimum_capacity
from cryofield.model.schedule import Phase


@dataclass
class Probe:
    """A probe as the outputs see it: its name and the nodes of its active surface."""

    name: str
    nodes: np.ndarray


@dataclass
class Problem:
    """Everything the time stepper needs, as plain arrays (see the module docstring for the equation)."""

    mesh: Mesh
    original_index: np.ndarray  # (N,) node index in the input mesh
    materials: list[Material]
    region_names: list[str]  # region name of material index m
    elem_mat: np.ndarray  # (E,) int32
    node_mat: np.ndarray  # (N,) int32
    volumes: np.ndarray  # (E,) m³ (an axisymmetric triangle: the ring it sweeps)
    edge_coef: np.ndarray  # (E, 6), fem.EDGES order
    lumped: np.ndarray  # (N,) m³
    perfusion: np.ndarray  # (N,) W/m³/K
    metabolic: np.ndarray  # (N,) W/m³
    arterial_temperature: float
    tables: MaterialTables
    node_ptr: np.ndarray  # (N+1,) incidence CSR: slots of node i are node_slot[node_ptr[i]:node_ptr[i+1]]
    node_slot: np.ndarray  # (4E or 3E,) slot = 4*element + local node
    boundaries: BoundarySet
    probes: list[Probe] = field(default_factory=list)

    @property
    def n_nodes(self) -> int:
        return self.mesh.n_nodes

    @property
    def n_elems(self) -> int:
        return self.mesh.n_tets

    @property
    def axisymmetric(self) -> bool:
        """Whether the mesh is the r–z half plane of an axisymmetric problem."""
        return fem.is_axisymmetric(self.mesh.tets)

    def boundary_state(self, phase: Phase | None, t: float = 0.0) -> BoundaryState:
        """Boundary arrays at ``t`` during ``phase`` (None: probes off, as for the basal state)."""
        return self.boundaries.state(phase, t)

    def enthalpy(self, T: np.ndarray) -> np.ndarray:
        """Nodal H(T) with each node's own enthalpy law."""
        H = np.empty(self.n_nodes)
        for m, mat in enumerate(self.materials):
            sel = self.node_mat == m
            H[sel] = mat.enthalpy(T[sel])
        return H

    def liquid_fraction(self, T: np.ndarray) -> np.ndarray:
        """Nodal liquid fraction with each node's tissue."""
        return np.clip((T - self.tables.solidus[self.node_mat])
                       / (self.tables.liquidus[self.node_mat] - self.tables.solidus[self.node_mat]), 0.0, 1.0)

    def element_conductivity(self, T: np.ndarray) -> np.ndarray:
        """k_e: mean of k(T) at the element's nodes, evaluated with the element's tissue."""
        k = np.empty(self.mesh.tets.shape)
        for m, mat in enumerate(self.materials):
            sel = self.elem_mat == m
            k[sel] = mat.conductivity_at(T[self.mesh.tets[sel]])
        return k.mean(axis=1)

    def nodal_spectral_radius(self, robin_coef: np.ndarray, fixed: np.ndarray) -> np.ndarray:
        """(N,) Gershgorin bound of each row of the linearised operator dF/dH (1/s); 0 on fixed nodes.

        Row i of ``(V C)^-1 (K + R) + P/C`` with the largest conductivity and the smallest dH/dT each
        tissue can have, so the bound holds for every temperature. ``2 / rho_i`` is node i's own
        forward-Euler limit: on a graded mesh most nodes' limits are far above the smallest.
        """
        k_max = np.array([maximum_conductivity(m) for m in self.materials])[self.elem_mat]
        c_min = np.array([minimum_capacity(m) for m in self.materials])[self.node_mat]
        tets = self.mesh.tets
        pairs, slots = fem.edges_of(tets)
        coef = self.edge_coef[:, slots]
        w = np.abs(coef) * k_max[:, None]
        a, b = pairs.T
        off = np.bincount(tets[:, a].ravel(), w.ravel(), self.n_nodes) + np.bincount(tets[:, b].ravel(), w.ravel(),
                                                                                       self.n_nodes)
        diag_w = (coef * k_max[:, None]).ravel()
        diag = -(np.bincount(tets[:, a].ravel(), diag_w, self.n_nodes) + np.bincount(tets[:, b].ravel(), diag_w,
                                                                                        self.n_nodes))
        rho = (off + np.abs(diag) + robin_coef) / (self.lumped * c_min) + self.perfusion / c_min
        return np.where(fixed, 0.0, rho)

    def spectral_radius_bound(self, robin_coef: np.ndarray, fixed: np.ndarray) -> float:
        """Gershgorin bound on the eigenvalues of the linearised operator dF/dH (1/s): the largest
        :meth:`nodal_spectral_radius`."""
        rho = self.nodal_spectral_radius(robin_coef, fixed)
        return float(rho.max()) if len(rho) else 0.0


def build_problem(case: Case, mesh: Mesh) -> Problem:
    """Assemble the :class:`Problem` for ``case`` on ``mesh`` (checks that names match first)."""
    _check_names(case, mesh)
    perm = _locality_order(mesh) if case.solver.reorder else np.arange(mesh.n_nodes)
    mesh = _renumber(mesh, perm)
    region_names = list(case.tissues)
    materials_by_region = case.materials()
    materials = [materials_by_region[r] for r in region_names]
    tag_to_mat = {mesh.regions[r]: m for m, r in enumerate(region_names)}
    elem_mat = _map_tags(mesh.tet_tags, tag_to_mat)
    volumes = fem.cell_volumes(mesh.points, mesh.tets)
    n = mesh.n_nodes
    lumped = fem.lumped_volumes(mesh.points, mesh.tets, n)
    share = np.stack([fem.lumped_volumes(mesh.points, mesh.tets, n, (elem_mat == m).astype(float))
                      for m in range(len(materials))], axis=1)
    blood = case.blood.heat_capacity
    perfusion = share @ np.array([m.perfusion * blood for m in materials]) / lumped
    metabolic = share @ np.array([m.metabolic_heat for m in materials]) / lumped
    node_ptr, node_slot = fem.incidence(mesh.tets, n)
    problem = Problem(
        mesh=mesh, original_index=perm, materials=materials, region_names=region_names,
        elem_mat=elem_mat, node_mat=np.argmax(share, axis=1).astype(np.int32), volumes=volumes,
        edge_coef=fem.edge_coefficients(mesh.points, mesh.tets), lumped=lumped, perfusion=perfusion,
        metabolic=metabolic, arterial_temperature=case.blood.arterial_temperature, tables=build_tables(materials),
        node_ptr=node_ptr, node_slot=node_slot,
        boundaries=_boundary_models(case, mesh),
        probes=[Probe(p.name, mesh.surface_nodes(p.surface)) for p in case.probes],
    )
    return problem


def _map_tags(tags: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    lut = np.full(int(tags.max()) + 1, -1, np.int32)
    for tag, m in mapping.items():
        lut[tag] = m
    return lut[tags]


def _check_names(case: Case, mesh: Mesh) -> None:
    for region in case.tissues:
        if region not in mesh.regions:
            raise InputError(f"no region named '{region}' in the mesh (regions: {', '.join(mesh.regions)})",
                             source=case.source, key=f"tissues.{region}")
    for region in mesh.regions:
        if region not in case.tissues:
            raise InputError(f"mesh region '{region}' has no tissue; add it under 'tissues'", source=case.source,
                             key="tissues")
    for i, probe in enumerate(case.probes):
        own_cold = not getattr(boundaries.MODELS.get(("probe", probe.model)), "freeze_temperature", True)
        for j, phase in enumerate(case.protocol):  # a cryogen probe freezes at its cryogen's temperature
            if own_cold and phase.kind == "freeze" and phase.temperature is not None:
                raise InputError(f"probe '{probe.name}' ({probe.model}) freezes at its cryogen's temperature: remove "
                                 "the freeze phase's temperature (or set the probe's cryogen_temperature)",
                                 source=case.source, key=f"protocol.{j}.temperature")
        if probe.surface not in mesh.surfaces:
            raise InputError(f"no surface named '{probe.surface}' in the mesh (surfaces: "
                             f"{', '.join(mesh.surfaces) or 'none'})", source=case.source, key=f"probes.{i}.surface")
    for i, bc in enumerate(case.boundaries):
        if bc.surface not in mesh.surfaces:
            raise InputError(f"no surface named '{bc.surface}' in the mesh (surfaces: "
                             f"{', '.join(mesh.surfaces) or 'none'})", source=case.source,
                             key=f"boundaries.{i}.surface")


def _locality_order(mesh: Mesh) -> np.ndarray:
    """Reverse Cuthill–McKee order of the node graph: neighbours get nearby indices (cache locality)."""
    t = mesh.tets
    rows = np.repeat(t, t.shape[1], axis=1).ravel()
    cols = np.tile(t, (1, t.shape[1])).ravel()
    graph = sp.csr_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(mesh.n_nodes, mesh.n_nodes))
    return np.asarray(reverse_cuthill_mckee(graph, symmetric_mode=True), np.int64)


def _renumber(mesh: Mesh, perm: np.ndarray) -> Mesh:
    """Nodes in ``perm`` order (new i = old perm[i]); elements sorted by their lowest new node."""
    new_of_old = np.empty_like(perm)
    new_of_old[perm] = np.arange(len(perm))
    tets = new_of_old[mesh.tets]
    order = np.lexsort((tets.max(axis=1), tets.min(axis=1)))
    return Mesh(points=mesh.points[perm], tets=tets[order], tet_tags=mesh.tet_tags[order],
                facets=new_of_old[mesh.facets], facet_tags=mesh.facet_tags, regions=mesh.regions,
                surfaces=mesh.surfaces, source=mesh.source, notes=mesh.notes, metadata=mesh.metadata)


def _boundary_models(case: Case, mesh: Mesh) -> BoundarySet:
    """The registered model of every boundary and probe of the case, on its surface (boundaries first).

    A surface between two tetrahedra (an internal interface) is refused unless its model acts inside the
    tissue (``allows_interior``): a boundary condition there would silently cut the heat flow in two.
    """
    inside = np.zeros(len(mesh.facets), bool)
    inside[interior_facets(mesh.tets, mesh.facets)] = True

    def build(role: str, kind: str, params, name: str, key: str, owner: str | None = None) -> boundaries.BoundaryModel:
        facets = mesh.surface_facets(name)
        interior = int(inside[mesh.facet_tags == mesh.surfaces[name]].sum())
        if interior and not boundaries.MODELS[(role, kind)].allows_interior:
            raise InputError(f"surface '{name}' has {interior} of its {len(facets)} triangles inside the mesh, between "
                             f"two tetrahedra: a '{kind}' condition needs the outer boundary or the wall of a hole",
                             source=case.source, key=key)
        nodes = mesh.surface_nodes(name)
        area = fem.lumped_facet_areas(mesh.points, facets, mesh.n_nodes)[nodes]
        context = Context(owner or name, mesh.points, mesh.tets, mesh.metadata, UNIT_SCALE[case.mesh.units],
                          key.rsplit(".", 1)[0])
        return boundaries.build(role, kind, params, Surface(name, nodes, area, facets), context)

    models = [build("surface", bc.type, bc.params, bc.surface, f"boundaries.{i}.surface")
              for i, bc in enumerate(case.boundaries)]
    models += [build("probe", p.model, p.params, p.surface, f"probes.{i}.surface", p.name)
               for i, p in enumerate(case.probes)]
    return BoundarySet(models, mesh.n_nodes)
