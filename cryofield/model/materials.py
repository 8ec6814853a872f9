"""Tissue library and the canonical enthalpy model (docs/physics.md §2–3).

Every quantity is SI: kg/m³, J/kg/K, W/m/K, 1/s, W/m³, J/m³; temperatures in °C.

The canonical model, with ``C = rho*c`` and latent heat ``L`` (J/m³) released over ``[T_s, T_l]``::

    T <= T_s:       H = C_f (T - T_s)
    T_s < T < T_l:  H = C_m (T - T_s),   C_m = (C_f + C_u)/2 + L/(T_l - T_s)
    T >= T_l:       H = C_m (T_l - T_s) + C_u (T - T_l)
    k(T) = k_f + (k_u - k_f) f_l,        f_l = clamp((T - T_s)/(T_l - T_s), 0, 1)

Optional tables replace ``k(T)`` (``conductivity_table``) or the sensible heat capacity
(``specific_heat_table``, J/kg/K against °C; latent heat is still added over ``[T_s, T_l]``). With a
heat capacity table, H is integrated exactly at the table points and joined linearly between them, so
that T(H) stays an exact piecewise-linear inverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Tissue defaults of docs/physics.md §3. ``heat_capacity_frozen`` and ``latent_heat`` are volumetric.
TISSUE_LIBRARY: dict[str, dict] = {
    "skin": dict(density=1109, specific_heat=3391, conductivity=0.37, perfusion=1.96e-3,
                 conductivity_frozen=1.6, heat_capacity_frozen=1.9e6, latent_heat=240e6, metabolic_heat=1800),
    "fat": dict(density=911, specific_heat=2348, conductivity=0.21, perfusion=5.0e-4,
                conductivity_frozen=0.35, heat_capacity_frozen=1.7e6, latent_heat=61e6, metabolic_heat=460),
    "muscle": dict(density=1090, specific_heat=3421, conductivity=0.49, perfusion=6.7e-4,
                   conductivity_frozen=1.8, heat_capacity_frozen=1.9e6, latent_heat=273e6, metabolic_heat=990),
    "nerve": dict(density=1075, specific_heat=3613, conductivity=0.49, perfusion=2.9e-3,
                  conductivity_frozen=1.5, heat_capacity_frozen=2.0e6, latent_heat=215e6, metabolic_heat=1000),
    "bone": dict(density=1908, specific_heat=1313, conductivity=0.32, perfusion=3.2e-4,
                 conductivity_frozen=0.4, heat_capacity_frozen=2.3e6, latent_heat=95e6, metabolic_heat=290),
    # Blood in a vessel lumen: IT'IS density, heat capacity and conductivity; water 0.8 [M]. Perfusion is 0:
    # the heat carried by flow in a named vessel belongs to a vessel heat-sink model, not to Pennes.
    "blood": dict(density=1050, specific_heat=3617, conductivity=0.52, perfusion=0.0,
                  conductivity_frozen=2.0, heat_capacity_frozen=2.0e6, latent_heat=280e6, metabolic_heat=0.0),
    # Injected fluids (hydrodissection), no perfusion or metabolism: isotonic saline (0.9 % NaCl) and 5 %
    # dextrose in water, both freezing from about -0.5 °C (docs/physics.md §3).
    "saline": dict(density=1005, specific_heat=4100, conductivity=0.60, perfusion=0.0, conductivity_frozen=2.2,
                   heat_capacity_frozen=1.9e6, latent_heat=332e6, metabolic_heat=0.0, solidus=-5.0, liquidus=-0.5),
    "d5w": dict(density=1017, specific_heat=3990, conductivity=0.58, perfusion=0.0, conductivity_frozen=2.1,
                heat_capacity_frozen=1.9e6, latent_heat=322e6, metabolic_heat=0.0, solidus=-5.0, liquidus=-0.5),
    # The classic cryosurgery verification set (Deng & Liu style); pair it with blood rho_b c_b = 3.6e6.
    "generic": dict(density=1000, specific_heat=3600, conductivity=0.5, perfusion=5e-4,
                    conductivity_frozen=2.0, heat_capacity_frozen=1.8e6, latent_heat=250e6, metabolic_heat=4200),
}

DEFAULT_SOLIDUS = -8.0
DEFAULT_LIQUIDUS = -1.0


def ice_conductivity(T: float) -> float:
    """k of ice (W/m/K) at ``T`` °C: 488.19 / T_K + 0.4685, Fukusako (1990), fitted over 90-273 K."""
    return 488.19 / (T + 273.15) + 0.4685


def ice_specific_heat(T: float) -> float:
    """c of ice (J/kg/K) at ``T`` °C: 185 + 6.89 T_K, Fukusako (1990), fitted over 90-273 K."""
    return 185.0 + 6.89 * (T + 273.15)


#: Liquid water at 0, 20, 40 °C: k (W/m/K, IAPWS 2011 formulation) and c_p (J/kg/K, IAPWS-95), 0.1 MPa.
WATER_CONDUCTIVITY = ((0.0, 0.5610), (20.0, 0.5984), (40.0, 0.6306))
WATER_SPECIFIC_HEAT = ((0.0, 4219.9), (20.0, 4184.1), (40.0, 4179.6))
#: Latent heat of fusion of water at 0 °C (J/kg).
WATER_LATENT_HEAT = 333.55e3
#: Table temperatures (°C) of the frozen side, down to liquid nitrogen.
ICE_TEMPERATURES = (-196.0, -160.0, -120.0, -100.0, -80.0, -60.0, -40.0, -20.0, -10.0, -1.0)
#: Aqueous media for phantom experiments: water fraction (by mass), density (kg/m³), and the conductivity
#: (W/m/K) and specific heat (J/kg/K) of the dissolved solids [M]; 1.5 % agar and 10 % gelatin gels.
AQUEOUS: dict[str, tuple[float, float, float, float]] = {
    "water": (1.0, 998.0, 0.0, 0.0),
    "agar": (0.985, 1005.0, 0.2, 1500.0),
    "gelatin": (0.90, 1030.0, 0.3, 1600.0),
}


def aqueous_entry(water_fraction: float, density: float, solids_conductivity: float,
                  solids_specific_heat: float) -> dict:
    """A library entry for water or a water gel: ice and water tables mixed with the solids by mass fraction.

    k(T) and c(T) are ``f x_water/ice(T) + (1 - f) x_solids`` (a linear mixture rule, adequate above 85 %
    water [M]); the latent heat is ``f L_water rho``, released between -1 and 0 °C (a gel's freezing point
    is depressed by well under 0.1 K); no perfusion or metabolism.

    Examples
    --------
    >>> e = aqueous_entry(*AQUEOUS["water"])
    >>> round(e["latent_heat"] / 1e6, 1), round(e["conductivity_table"][-3][1], 3)
    (332.9, 0.561)
    """
    f = water_fraction
    mix = lambda water, solids: f * water + (1.0 - f) * solids  # noqa: E731
    k_rows = [(T, mix(ice_conductivity(T), solids_conductivity)) for T in ICE_TEMPERATURES]
    k_rows += [(T, mix(k, solids_conductivity)) for T, k in WATER_CONDUCTIVITY]
    c_rows = [(T, mix(ice_specific_heat(T), solids_specific_heat)) for T in ICE_TEMPERATURES]
    c_rows += [(T, mix(c, solids_specific_heat)) for T, c in WATER_SPECIFIC_HEAT]
    return dict(density=density, specific_heat=mix(4184.1, solids_specific_heat),
                conductivity=mix(0.5984, solids_conductivity),
                conductivity_frozen=mix(ice_conductivity(-20.0), solids_conductivity),
                heat_capacity_frozen=density * mix(ice_specific_heat(-20.0), solids_specific_heat),
                latent_heat=f * WATER_LATENT_HEAT * density, perfusion=0.0, metabolic_heat=0.0, solidus=-1.0,
                liquidus=0.0, conductivity_table=tuple(k_rows), specific_heat_table=tuple(c_rows))


TISSUE_LIBRARY.update({name: aqueous_entry(*spec) for name, spec in AQUEOUS.items()})


@dataclass(frozen=True)
class Material:
    """One tissue's thermal properties (SI, °C)."""

    name: str
    density: float
    specific_heat: float
    conductivity: float
    conductivity_frozen: float
    heat_capacity_frozen: float
    latent_heat: float
    perfusion: float
    metabolic_heat: float
    solidus: float = DEFAULT_SOLIDUS
    liquidus: float = DEFAULT_LIQUIDUS
    conductivity_table: tuple[tuple[float, float], ...] | None = None
    specific_heat_table: tuple[tuple[float, float], ...] | None = None

    @property
    def heat_capacity_unfrozen(self) -> float:
        """C_u = rho c (J/m³/K)."""
        return self.density * self.specific_heat

    def liquid_fraction(self, T: np.ndarray) -> np.ndarray:
        """f_l(T) for an array of temperatures."""
        return np.clip((np.asarray(T, float) - self.solidus) / (self.liquidus - self.solidus), 0.0, 1.0)

    def sensible_capacity(self, T: float) -> float:
        """Volumetric sensible heat capacity (J/m³/K) without latent heat, at ``T``."""
        if self.specific_heat_table is not None:
            t, c = np.array(self.specific_heat_table).T
            return float(np.interp(T, t, c)) * self.density
        if T < self.solidus:
            return self.heat_capacity_frozen
        if T > self.liquidus:
            return self.heat_capacity_unfrozen
        return 0.5 * (self.heat_capacity_frozen + self.heat_capacity_unfrozen)

    def enthalpy_points(self) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Breakpoints of H(T): temperatures, enthalpies (H = 0 at the solidus), end slopes."""
        temps = {self.solidus, self.liquidus}
        if self.specific_heat_table is not None:
            temps.update(t for t, _ in self.specific_heat_table)
        T = np.array(sorted(temps))
        H = np.zeros_like(T)
        for j in range(1, len(T)):
            H[j] = H[j - 1] + self._sensible_integral(T[j - 1], T[j])
        H += self.latent_heat * self.liquid_fraction(T)
        H -= np.interp(self.solidus, T, H)
        return T, H, self.sensible_capacity(T[0] - 1.0), self.sensible_capacity(T[-1] + 1.0)

    def _sensible_integral(self, a: float, b: float) -> float:
        """Integral of the sensible capacity from ``a`` to ``b`` (exact for the piecewise-linear table)."""
        if self.specific_heat_table is None:
            return self.sensible_capacity(0.5 * (a + b)) * (b - a)
        t, c = np.array(self.specific_heat_table).T
        knots = np.unique(np.concatenate([[a, b], t[(t > a) & (t < b)]]))
        values = np.interp(knots, t, c) * self.density
        return float(np.trapezoid(values, knots))

    def conductivity_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Points of k(T); the canonical model is exactly the two points (T_s, k_f), (T_l, k_u)."""
        if self.conductivity_table is not None:
            t, k = np.array(self.conductivity_table, float).T
            return t, k
        return np.array([self.solidus, self.liquidus]), np.array([self.conductivity_frozen, self.conductivity])

    def enthalpy(self, T: np.ndarray) -> np.ndarray:
        """H(T) for an array (J/m³)."""
        t, h, s_lo, s_hi = self.enthalpy_points()
        T = np.asarray(T, float)
        out = np.interp(T, t, h)
        out = np.where(T < t[0], h[0] + s_lo * (T - t[0]), out)
        return np.where(T > t[-1], h[-1] + s_hi * (T - t[-1]), out)

    def temperature(self, H: np.ndarray) -> np.ndarray:
        """T(H) for an array: the exact inverse of :meth:`enthalpy`."""
        t, h, s_lo, s_hi = self.enthalpy_points()
        H = np.asarray(H, float)
        out = np.interp(H, h, t)
        out = np.where(H < h[0], t[0] + (H - h[0]) / s_lo, out)
        return np.where(H > h[-1], t[-1] + (H - h[-1]) / s_hi, out)

    def conductivity_at(self, T: np.ndarray) -> np.ndarray:
        """k(T) for an array."""
        t, k = self.conductivity_points()
        return np.interp(np.asarray(T, float), t, k)


def library_material(name: str, **overrides: float) -> Material:
    """A :class:`Material` from :data:`TISSUE_LIBRARY` with per-key overrides.

    Examples
    --------
    >>> round(library_material("muscle").heat_capacity_unfrozen / 1e6, 3)
    3.729
    >>> library_material("fat", conductivity=0.2).conductivity
    0.2
    """
    values = dict(TISSUE_LIBRARY[name])
    values.update(overrides)
    return Material(name=name, **values)


@dataclass
class MaterialTables:
    """Padded per-material arrays consumed by the kernels (see :mod:`cryofield.kernels.pointwise`)."""

    h_T: np.ndarray
    h_H: np.ndarray
    h_n: np.ndarray
    h_slope: np.ndarray
    k_T: np.ndarray
    k_k: np.ndarray
    k_n: np.ndarray
    solidus: np.ndarray
    liquidus: np.ndarray
    names: list[str] = field(default_factory=list)

    def astype(self, dtype: np.dtype) -> "MaterialTables":
        """The same tables with floating arrays in ``dtype``."""
        conv = {k: (v.astype(dtype) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v)
                for k, v in self.__dict__.items()}
        return MaterialTables(**conv)


def build_tables(materials: list[Material]) -> MaterialTables:
    """Pack a list of materials into the padded tables the kernels read."""
    enth = [m.enthalpy_points() for m in materials]
    cond = [m.conductivity_points() for m in materials]
    nh = max(len(e[0]) for e in enth)
    nk = max(len(c[0]) for c in cond)
    n = len(materials)
    tables = MaterialTables(
        h_T=np.zeros((n, nh)), h_H=np.zeros((n, nh)), h_n=np.zeros(n, np.int32), h_slope=np.zeros((n, 2)),
        k_T=np.zeros((n, nk)), k_k=np.zeros((n, nk)), k_n=np.zeros(n, np.int32),
        solidus=np.array([m.solidus for m in materials], float),
        liquidus=np.array([m.liquidus for m in materials], float),
        names=[m.name for m in materials],
    )
    for i, ((t, h, s_lo, s_hi), (kt, kk)) in enumerate(zip(enth, cond)):
        tables.h_T[i, : len(t)], tables.h_H[i, : len(t)], tables.h_n[i] = t, h, len(t)
        tables.h_slope[i] = s_lo, s_hi
        tables.k_T[i, : len(kt)], tables.k_k[i, : len(kt)], tables.k_n[i] = kt, kk, len(kt)
    return tables


def minimum_capacity(material: Material) -> float:
    """Smallest dH/dT of the material (J/m³/K): the stiffest case for the explicit stability bound."""
    t, h, s_lo, s_hi = material.enthalpy_points()
    slopes = np.diff(h) / np.diff(t) if len(t) > 1 else np.array([s_lo])
    return float(min(s_lo, s_hi, slopes.min()))


def maximum_conductivity(material: Material) -> float:
    """Largest k(T) of the material (W/m/K)."""
    return float(material.conductivity_points()[1].max())


__all__ = ["TISSUE_LIBRARY", "AQUEOUS", "aqueous_entry", "ice_conductivity", "ice_specific_heat", "Material",
           "MaterialTables", "build_tables", "library_material",
           "minimum_capacity", "maximum_conductivity"]
