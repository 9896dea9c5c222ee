"""The FFT modes of an ``n^3`` grid in k-space: their integer wavenumbers and the sinc window of
mass assignment. One helper for the power spectrum's mode table, the bispectrum's shells, the
simulation's Poisson solve and the references.

Modes are in torch.fft order, ``0, 1, ..., -1`` (``torch.fft.fftfreq(n, 1/n)``), along x and y;
along z the first ``n // 2 + 1`` (the half space of ``rfftn``) or all ``n``. A mode's wavevector
is ``k = k_F (nx, ny, nz)``, ``k_F = 2 pi / L``. The wavenumbers are integers (int64), so
``|n|^2`` is exact and modes are binned without rounding (``fftfreq(n, 1/n)`` in floating point
is not always integral: for n = 49 it is off by one ulp).
"""
from __future__ import annotations

from typing import NamedTuple

import torch


class KGrid(NamedTuple):
    """Integer wavenumbers, int64, shaped to broadcast against an ``(n, n, m)`` spectrum."""
    nx: torch.Tensor  # (n, 1, 1)
    ny: torch.Tensor  # (1, n, 1)
    nz: torch.Tensor  # (1, 1, m), m = n // 2 + 1 (rfft) or n
    n2: torch.Tensor  # (n, n, m): |n|^2 = nx^2 + ny^2 + nz^2


def _frequencies(n: int, device) -> torch.Tensor:
    """0, 1, ..., (n - 1) // 2, -(n // 2), ..., -1: fftfreq(n, 1/n) as int64."""
    i = torch.arange(n, dtype=torch.int64, device=device)
    return torch.where(i <= (n - 1) // 2, i, i - n)


def kgrid(n: int, rfft: bool = True, device=None) -> KGrid:
    """The integer wavenumbers of the FFT modes of an ``n^3`` grid (``rfft``: the half space
    ``0 <= nz <= n // 2`` of ``torch.fft.rfftn``; otherwise the full ``fftn`` grid)."""
    full = _frequencies(n, device)
    half = torch.arange(n // 2 + 1, dtype=torch.int64, device=device) if rfft else full
    nx, ny, nz = full[:, None, None], full[None, :, None], half[None, None, :]
    return KGrid(nx, ny, nz, nx**2 + ny**2 + nz**2)


def sinc_window(n: int, rfft: bool = True, device=None) -> torch.Tensor:
    """``W = prod_i sinc(n_i / n)`` = ``prod_i sinc(k_i h / 2)`` (``sinc(x) = sin(pi x) / (pi x)``)
    per mode, float64 ``(n, n, m)``: the Fourier window of NGP assignment. A scheme of order p
    (:data:`SCHEME_ORDER`) has the window ``W^p``; its power spectrum ``W^(2p)``."""
    g = kgrid(n, rfft, device)
    return (torch.sinc(g.nx.double() / n) * torch.sinc(g.ny.double() / n)
            * torch.sinc(g.nz.double() / n))
