"""Flat LambdaCDM background, linear growth, and the Eisenstein & Hu (1998) linear power
spectrum with baryon acoustic oscillations, normalised to sigma_8. Units: k in h/Mpc,
P in (Mpc/h)^3, time in 1/H0. Formulas from Eisenstein & Hu, ApJ 496, 605 (1998)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cosmology:
    """WMAP7 by default, as the Indra suite."""

    omega_m: float = 0.272
    omega_b: float = 0.045
    h: float = 0.704
    n_s: float = 0.967
    sigma8: float = 0.81
    t_cmb: float = 2.7255

    @property
    def omega_lambda(self) -> float:
        return 1.0 - self.omega_m

    def efunc(self, a):
        """H(a) / H0."""
        return np.sqrt(self.omega_m * np.asarray(a, dtype=np.float64) ** -3 + self.omega_lambda)

    # ---- linear growth ----------------------------------------------------------------------
    def _growth_integral(self, a):
        """int_0^a da' / (a' E(a'))^3, on a log grid (the integrand ~ a'^(3/2) near 0)."""
        a = np.atleast_1d(np.asarray(a, dtype=np.float64))
        out = np.empty_like(a)
        for i, ai in enumerate(a):
            x = np.geomspace(1e-8, ai, 4000)
            y = x / (x * self.efunc(x)) ** 3  # d(ln x) measure: dx = x dlnx
            out[i] = np.trapezoid(y, np.log(x)) + (1e-8) ** 2.5 / (2.5 * self.omega_m ** 1.5)
        return out

    def growth(self, a):
        """D(a), normalised to D(1) = 1."""
        a = np.asarray(a, dtype=np.float64)
        raw = lambda x: 2.5 * self.omega_m * self.efunc(x) * self._growth_integral(x)  # noqa: E731
        return (raw(a) / raw(1.0)).reshape(a.shape)

    def growth_derivative(self, a):
        """dD/da."""
        a = np.asarray(a, dtype=np.float64)
        e = self.efunc(a)
        de = -1.5 * self.omega_m * a**-4 / e
        norm = 2.5 * self.omega_m * float(self.efunc(1.0)) * float(self._growth_integral(1.0)[0])
        val = 2.5 * self.omega_m * (de * self._growth_integral(a).reshape(a.shape)
                                    + e / (a * e) ** 3)
        return val / norm

    def omega_m_at(self, a):
        a = np.asarray(a, dtype=np.float64)
        return self.omega_m * a**-3 / self.efunc(a) ** 2

    # ---- Eisenstein & Hu (1998) transfer function --------------------------------------------
    def transfer(self, k):
        """T(k), k in h/Mpc, with baryon wiggles."""
        k = np.asarray(k, dtype=np.float64) * self.h  # to 1/Mpc
        om, ob = self.omega_m * self.h**2, self.omega_b * self.h**2
        fb = self.omega_b / self.omega_m
        fc = 1 - fb
        theta = self.t_cmb / 2.7
        z_eq = 2.50e4 * om * theta**-4
        k_eq = 7.46e-2 * om * theta**-2
        b1 = 0.313 * om**-0.419 * (1 + 0.607 * om**0.674)
        b2 = 0.238 * om**0.223
        z_d = 1291 * om**0.251 / (1 + 0.659 * om**0.828) * (1 + b1 * ob**b2)
        r_d = 31.5 * ob * theta**-4 * (1000 / z_d)
        r_eq = 31.5 * ob * theta**-4 * (1000 / z_eq)
        s = (2 / (3 * k_eq) * math.sqrt(6 / r_eq)
             * math.log((math.sqrt(1 + r_d) + math.sqrt(r_d + r_eq)) / (1 + math.sqrt(r_eq))))
        k_silk = 1.6 * ob**0.52 * om**0.73 * (1 + (10.4 * om) ** -0.95)
        q = k / (13.41 * k_eq)
        a1 = (46.9 * om) ** 0.670 * (1 + (32.1 * om) ** -0.532)
        a2 = (12.0 * om) ** 0.424 * (1 + (45.0 * om) ** -0.582)
        alpha_c = a1**-fb * a2 ** (-(fb**3))
        bb1 = 0.944 / (1 + (458 * om) ** -0.708)
        bb2 = (0.395 * om) ** -0.0266
        beta_c = 1 / (1 + bb1 * (fc**bb2 - 1))

        def t0(alpha, beta):
            lg = np.log(math.e + 1.8 * beta * q)
            c = 14.2 / alpha + 386 / (1 + 69.9 * q**1.08)
            return lg / (lg + c * q * q)

        ks = k * s
        f = 1 / (1 + (ks / 5.4) ** 4)
        t_c = f * t0(1.0, beta_c) + (1 - f) * t0(alpha_c, beta_c)
        y = (1 + z_eq) / (1 + z_d)
        sq = math.sqrt(1 + y)
        g = y * (-6 * sq + (2 + 3 * y) * math.log((sq + 1) / (sq - 1)))
        alpha_b = 2.07 * k_eq * s * (1 + r_d) ** -0.75 * g
        beta_node = 8.41 * om**0.435
        beta_b = 0.5 + fb + (3 - 2 * fb) * math.sqrt((17.2 * om) ** 2 + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s_tilde = s / (1 + (beta_node / ks) ** 3) ** (1 / 3)
            x = k * s_tilde
            j0 = np.where(x > 1e-8, np.sin(x) / np.where(x > 1e-8, x, 1), 1.0)
            t_b = (t0(1.0, 1.0) / (1 + (ks / 5.2) ** 2)
                   + alpha_b / (1 + (beta_b / ks) ** 3) * np.exp(-((k / k_silk) ** 1.4))) * j0
        return np.where(k > 0, fb * t_b + fc * t_c, 1.0)

    def _unnormalised_power(self, k):
        k = np.asarray(k, dtype=np.float64)
        return k**self.n_s * self.transfer(k) ** 2

    def sigma_r(self, radius: float, norm: float = 1.0) -> float:
        k = np.geomspace(1e-5, 1e3, 20000)
        x = k * radius
        w = 3 * (np.sin(x) - x * np.cos(x)) / x**3
        integrand = k**3 * norm * self._unnormalised_power(k) * w**2 / (2 * math.pi**2)
        return math.sqrt(np.trapezoid(integrand, np.log(k)))

    def linear_power(self, k, a: float = 1.0):
        """P_lin(k, a) in (Mpc/h)^3, normalised to sigma_8 at a = 1."""
        norm = (self.sigma8 / self.sigma_r(8.0)) ** 2
        return norm * self._unnormalised_power(k) * float(self.growth(a)) ** 2
