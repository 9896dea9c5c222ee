"""The paper's transform of x = rho / rhobar (section IV) and its exact inverse.

    f'(x) = 3 ln(x + 1)                    for x <= c
    f'(x) = 3 (ln(c + 1) + x / c - 1)      for x >  c       (continuous at c)
    f(x)  = (f'(x + s) - f'(s)) / f(x_max)

with c = 11 and s = 0.002 by default; x_max is the largest x of the training split, so the
training cubes lie in [0, 1]. The logarithm compresses voids and filaments, the linear branch
keeps the densest knots from being squashed, and s keeps empty voxels (x = 0) finite.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Transform:
    x_max: float
    c: float = 11.0
    s: float = 0.002
    name: str = "paper_log_linear"

    def __post_init__(self):
        for key in ("x_max", "c", "s"):
            value = float(getattr(self, key))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"transform parameter {key} must be positive and finite, got "
                                 f"{value!r}")

    # f' and its inverse, on numpy or torch arrays (float64 inside)
    def _f_prime(self, x, lib):
        c = self.c
        return lib.where(x <= c, 3 * lib.log1p(x), 3 * (math.log1p(c) + x / c - 1))

    def _f_prime_inverse(self, v, lib):
        c = self.c
        knee = 3 * math.log1p(c)
        return lib.where(v <= knee, lib.expm1(v / 3), c * (v / 3 - math.log1p(c) + 1))

    @property
    def scale(self) -> float:
        """f(x_max) before normalisation: f'(x_max + s) - f'(s)."""
        x = np.array([self.x_max + self.s, self.s])
        fp = self._f_prime(x, np)
        return float(fp[0] - fp[1])

    def forward(self, x):
        """rho / rhobar -> transformed value (in [0, 1] for 0 <= x <= x_max)."""
        lib, arr, dtype = _lib(x)
        offset = float(self._f_prime(np.array(self.s), np))
        y = (self._f_prime(arr + self.s, lib) - offset) / self.scale
        return _back(y, dtype, lib)

    def inverse(self, y):
        """Transformed value -> rho / rhobar; the exact inverse of forward."""
        lib, arr, dtype = _lib(y)
        offset = float(self._f_prime(np.array(self.s), np))
        x = self._f_prime_inverse(arr * self.scale + offset, lib) - self.s
        return _back(x, dtype, lib)

    __call__ = forward

    def attrs(self) -> dict:
        """Everything needed to rebuild the transform, for HDF5 attributes."""
        return {f"transform_{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs) -> "Transform":
        try:
            return cls(x_max=float(attrs["transform_x_max"]), c=float(attrs["transform_c"]),
                       s=float(attrs["transform_s"]), name=str(attrs["transform_name"]))
        except KeyError as exc:
            raise ValueError(f"the dataset does not record the transform parameter {exc}") from None


def _lib(x):
    if isinstance(x, torch.Tensor):
        return torch, x.to(torch.float64), x.dtype
    arr = np.asarray(x)
    return np, arr.astype(np.float64), arr.dtype if arr.dtype.kind == "f" else np.float64


def _back(y, dtype, lib):
    return y.to(dtype) if lib is torch else y.astype(dtype)
