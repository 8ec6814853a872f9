import numpy as np
import pytest

from cryofield import pointwise
from cryofield.backends.cpu import k as compiled
from cryofield.materials import Material, build_tables, library_material


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
