import numpy as np
import pytest

from cryofield.backends.cpu import k as compiled
from cryofield.kernels import pointwise
from cryofield.model.materials import Material, build_tables, library_material


@pytest.fixture
def generic():
    return library_material("generic")


def test_canonical_enthalpy_matches_physics_definition(generic):
    Ts, Tl, Cf, Cu, L = -8.0, -1.0, 1.8e6, 3.6e6, 250e6
    Cm = (Cf + Cu) / 2 + L / (Tl - Ts)
    T = np.array([-50.0, -8.0, -5.0, -1.0, 10.0, 37.0])
    expected = np.where(T <= Ts, Cf * (T - Ts), np.where(T < Tl, Cm * (T - Ts), Cm * (Tl - Ts) + Cu * (T - Tl)))
    np.testing.assert_allclose(generic.enthalpy(T), expected, rtol=1e-13, atol=1e-3)


def test_temperature_is_exact_inverse(generic):
    T = np.linspace(-200, 60, 2001)
    np.testing.assert_allclose(generic.temperature(generic.enthalpy(T)), T, atol=1e-9)


def test_kernel_laws_agree_with_numpy(generic):
    skin = library_material("skin", conductivity_table=((-40.0, 2.0), (-5.0, 1.2), (0.0, 0.5), (40.0, 0.4)),
                            specific_heat_table=((-40.0, 1800.0), (-5.0, 2000.0), (40.0, 3400.0)))
    tables = build_tables([generic, skin])
    for m, mat in enumerate([generic, skin]):
        T = np.linspace(-120, 60, 777)
        H = mat.enthalpy(T)
        got = np.array([compiled.temperature_of(h, m, tables.h_T, tables.h_H, tables.h_n, tables.h_slope) for h in H])
        np.testing.assert_allclose(got, T, atol=1e-9)
        k = np.array([compiled.conductivity_of(t, m, tables.k_T, tables.k_k, tables.k_n) for t in T])
        np.testing.assert_allclose(k, mat.conductivity_at(T), rtol=1e-12)
        py = np.array([pointwise.enthalpy_of(t, m, tables.h_T, tables.h_H, tables.h_n, tables.h_slope) for t in T])
        np.testing.assert_allclose(py, H, rtol=1e-12, atol=1e-6)


def test_canonical_conductivity_is_linear_in_liquid_fraction(generic):
    T = np.linspace(-20, 10, 301)
    expected = generic.conductivity_frozen + (generic.conductivity - generic.conductivity_frozen) * \
        generic.liquid_fraction(T)
    np.testing.assert_allclose(generic.conductivity_at(T), expected, rtol=1e-12)


def test_tabulated_heat_capacity_integrates_latent_and_sensible_heat():
    mat = Material("x", 1000, 3600, 0.5, 2.0, 1.8e6, 250e6, 0, 0,
                   specific_heat_table=((-100.0, 1800.0), (100.0, 3600.0)))
    # between table points H is exact: the integral of the linear c(T) times density plus the latent heat
    sensible = 1000 * (1800 + 3600) / 2 * 200
    dH = mat.enthalpy(np.array([100.0]))[0] - mat.enthalpy(np.array([-100.0]))[0]
    assert dH == pytest.approx(sensible + 250e6, rel=1e-12)


def test_water_and_gels_freeze_at_zero_with_ice_tables():
    from cryofield.model.materials import ice_conductivity, ice_specific_heat, library_material

    water = library_material("water")
    assert water.liquidus == 0.0 and water.solidus == -1.0 and water.perfusion == 0.0
    H = water.enthalpy([-1.0, 0.0])
    assert (H[1] - H[0]) / 1e6 == pytest.approx(333.55e3 * 998 / 1e6 + 4.2, rel=0.01)  # latent + 1 K sensible
    assert water.conductivity_at([-20.0])[0] == pytest.approx(2.397, abs=1e-3)  # Fukusako: 488.19/253.15 + 0.4685
    assert water.conductivity_at([-150.0])[0] > 4.0 > water.conductivity_at([-40.0])[0]  # ice conducts more when colder
    assert water.conductivity_at([20.0])[0] == pytest.approx(0.598, abs=1e-3)
    assert ice_specific_heat(0.0) == pytest.approx(2067, abs=1) and ice_conductivity(0.0) == pytest.approx(2.256, 1e-3)
    gelatin, agar = library_material("gelatin"), library_material("agar")
    assert gelatin.latent_heat < agar.latent_heat < water.latent_heat
    assert gelatin.latent_heat == pytest.approx(0.90 * 333.55e3 * 1030)


def test_a_gel_takes_its_water_fraction_and_only_a_gel_does():
    from cryofield.config.case import parse_case
    from cryofield.errors import InputError

    base = """
mesh: {generate: {kind: slab, size: [4, 3, 3], cells: [2, 2, 2]}, units: mm}
tissues: {tissue: TISSUE}
probes: [{name: tip, surface: xmin}]
protocol: [{kind: freeze, duration: 1}]
"""
    case = parse_case(base.replace("TISSUE", "{library: gelatin, water_fraction: 0.8}"))
    material = case.tissues["tissue"].material("tissue")
    assert material.latent_heat == pytest.approx(0.8 * 333.55e3 * 1030)
    with pytest.raises(InputError, match="tissues.tissue.*water_fraction belongs to an aqueous"):
        parse_case(base.replace("TISSUE", "{library: muscle, water_fraction: 0.8}"))
