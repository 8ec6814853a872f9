"""Isotherm volumes: the exact per-tetrahedron fraction, and the ice-local evaluation."""

import numpy as np
import pytest

from cryofield.config.case import parse_case
from cryofield.fem.metrics import RegionMeasures, fraction_below, volumes_below
from cryofield.mesh.sources import mesh_of
from cryofield.problem.assemble import build_problem


@pytest.mark.parametrize("values", [[0, 1e-9, 1, 2], [0, 0.3, 0.3000001, 2], [0, 0.5, 1, 1 + 1e-10], [-3, -1, 2, 5]])
def test_fraction_below_matches_monte_carlo(values):
    u = np.array(values, float)
    bary = np.random.default_rng(1).dirichlet(np.ones(4), size=200_000)
    samples = bary @ u
    for level in (-2.0, 0.0, 0.1, 0.3, 0.5, 1.5, 6.0):
        assert fraction_below(u[None], level)[0] == pytest.approx((samples <= level).mean(), abs=4e-3)


def test_region_measures_equal_full_evaluation():
    case = parse_case("""
mesh: {generate: {kind: slab, size: [10, 10, 10], cells: [8, 8, 8]}, units: mm}
tissues: {tissue: {library: muscle}}
""")
    p = build_problem(case, mesh_of(case))
    T = 37 - 100 * np.exp(-np.linalg.norm(p.mesh.points - 0.005, axis=1) / 0.002)
    rm = RegionMeasures(p.mesh.tets, p.volumes, p.elem_mat, p.region_names, p.node_ptr, p.node_slot)
    levels = [-1.0, -20.0, -40.0]
    full = volumes_below(T, p.mesh.tets, p.volumes, p.elem_mat, 1, levels)
    np.testing.assert_allclose(rm.volumes_below(T, levels), full, rtol=1e-12)
    assert full[0, 0] > full[1, 0] > full[2, 0] > 0
    np.testing.assert_allclose(rm.volumes_below(np.full(p.n_nodes, 37.0), levels), 0.0)
