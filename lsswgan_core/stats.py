"""Summary statistics of density cubes, built on the compiled ops: overdensity, mass and peak
histograms, the bispectrum, and the paper's compatibility metric and a Frechet distance
between sets of summaries. Every function takes NumPy arrays or torch tensors and returns the
same kind; fields are ``(..., n, n, n)`` with leading batch dimensions."""
from __future__ import annotations

import math

import numpy as np
import torch

from .ops import find_peaks, soft_histogram
from .ops._util import SCHEME_ORDER, as_tensor, check_box_size, check_cubes, check_float, to_output
from .ops.kspace import kgrid, sinc_window

__all__ = ["overdensity", "mass_histogram", "peak_histogram", "bispectrum", "compatibility",
           "frechet_distance"]


def overdensity(field):
    """delta = rho / mean(rho) - 1 per cube (the mean over the last three dimensions)."""
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    check_cubes(f)
    mean = f.mean(dim=(-3, -2, -1), keepdim=True)
    if bool((mean == 0).any()):
        raise ValueError("a cube has zero mean density: its overdensity is undefined")
    return to_output(f / mean - 1, numpy_in)


def mass_histogram(field, lo: float, hi: float, nbins: int, log10: bool = False):
    """Soft histogram of the voxel values of each cube, ``(..., nbins)``; with ``log10=True``
    of log10(value) (e.g. log10 rho/rhobar; non-positive voxels then fall out of range).
    Differentiable with respect to the field."""
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    check_cubes(f)
    values = f.flatten(-3)
    if log10:
        values = torch.log10(values.clamp(min=torch.finfo(values.dtype).tiny))
    return to_output(soft_histogram(values, lo, hi, nbins), numpy_in)


def peak_histogram(field, lo: float, hi: float, nbins: int, radius: int = 2,
                   boundary: str = "open"):
    """Soft histogram of the values at strict local maxima (``find_peaks``) of each cube,
    ``(..., nbins)``. The peaks are found on the detached field; the histogram is
    differentiable with respect to the peak voxels' values (other voxels get no gradient)."""
    f, numpy_in = as_tensor(field, "field")
    mask = find_peaks(f.detach(), radius=radius, boundary=boundary)
    hist = soft_histogram(f.flatten(-3), lo, hi, nbins, weights=mask.flatten(-3).to(f.dtype))
    return to_output(hist, numpy_in)


def bispectrum(field, box_size: float, k1: float, k2: float, theta, width: float | None = None,
               mas: str | None = None):
    """Bispectrum B(k1, k2, k3(theta)) by the FFT shell estimator, in (Mpc/h)^6.

    With ``F`` the unnormalised DFT of the field and shells ``S_i = {k : |k_i - |k|| <= w}``
    (``k_i - w <= |k| < k_i + w``, ``w = width``, default ``k_F = 2 pi / L``, as in Pylians),
    ``delta_i(x)`` is the inverse FFT of ``F`` restricted to ``S_i`` and ``I_i(x)`` that of the
    shell's indicator. Then ``sum_x delta_1 delta_2 delta_3 / sum_x I_1 I_2 I_3`` is the mean of
    ``F(q1) F(q2) F(q3)`` over the closed triangles ``q1 + q2 + q3 = 0`` with ``q_i`` in ``S_i``,
    and ``B = L^6 / n^9`` times that (so that P = L^3 / n^6 |F|^2 goes with it).
    ``k3 = sqrt(k1^2 + k2^2 + 2 k1 k2 cos theta)``, theta the angle between k1 and k2.

    Args:
        field: ``(..., n, n, n)`` float32/float64 (e.g. the overdensity).
        box_size: L in Mpc/h.
        k1, k2: shell centres in h/Mpc.
        theta: a float or 1-D array of angles (radians).
        width: shell half-width in h/Mpc (default k_F).
        mas: None or 'ngp' / 'cic' / 'tsc': divide F by that assignment window first.

    Returns:
        ``(..., len(theta))`` B; NaN where a shell triple closes no triangle.
    """
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    n = check_cubes(f)
    box_size = check_box_size(box_size)
    if box_size > 1e30:  # L^6 / n^9 must stay a finite float64
        raise ValueError(f"box_size {box_size!r} is too large for a bispectrum in (Mpc/h)^6")
    if not math.isfinite(2 * math.pi * n / box_size):  # |k| up to about k_F n
        raise ValueError(f"box_size {box_size!r} is too small: the wavenumbers 2 pi n / L overflow")
    k_fund = 2 * math.pi / box_size
    width = k_fund if width is None else float(width)
    thetas = np.atleast_1d(np.asarray(theta, dtype=np.float64))
    if thetas.ndim != 1 or not np.all(np.isfinite(thetas)):
        raise ValueError("theta must be a finite float or 1-D array of angles")
    for name, value in (("k1", k1), ("k2", k2), ("width", width)):
        if not math.isfinite(float(value)) or float(value) <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    if mas is not None and mas not in SCHEME_ORDER:
        raise ValueError(f"mas must be None, 'ngp', 'cic' or 'tsc', got {mas!r}")
    if not bool(torch.isfinite(f).all()):
        raise ValueError("field contains non-finite values")
    if f.numel() == 0:  # no cubes, or cubes of no cells (no triangles): the FFT would refuse
        return to_output(f.new_full((*f.shape[:-3], len(thetas)), float("nan")), numpy_in)
    spectrum = torch.fft.rfftn(f, dim=(-3, -2, -1))
    if mas is not None:
        window = sinc_window(n) ** SCHEME_ORDER[mas]  # the amplitude's window
        spectrum = spectrum / window.to(device=f.device, dtype=f.dtype)
    kmag = (k_fund * torch.sqrt(kgrid(n).n2.double())).to(f.device)

    def shell(k):
        sel = (kmag >= k - width) & (kmag < k + width) & (kmag > 0)
        indicator = sel.to(f.dtype)
        delta = torch.fft.irfftn(spectrum * indicator, s=(n, n, n), dim=(-3, -2, -1))
        count = torch.fft.irfftn(indicator.to(spectrum.dtype), s=(n, n, n), dim=(-3, -2, -1))
        return delta, count

    d1, i1 = shell(float(k1))
    d2, i2 = shell(float(k2))
    d12, i12 = d1 * d2, i1 * i2
    scale = box_size**6 / float(n) ** 9
    out = []
    for t in thetas:
        k3 = math.sqrt(max(k1 * k1 + k2 * k2 + 2 * k1 * k2 * math.cos(t), 0.0))
        d3, i3 = shell(k3)
        triangles = (i12 * i3).sum(dim=(-3, -2, -1))
        numerator = (d12 * d3).sum(dim=(-3, -2, -1))
        has = triangles.abs() > 0.5 / n**6  # at least one triangle (counts are integers / n^6)
        out.append(torch.where(has, scale * numerator / torch.where(has, triangles, 1.0),
                               torch.full_like(numerator, float("nan"))))
    return to_output(torch.stack(out, dim=-1), numpy_in)


def compatibility(real, fake):
    """The paper's compatibility per bin, ``|mu_f - mu_r| / sqrt(sigma_f^2 + sigma_r^2)``, with
    means and sample standard deviations (ddof = 1) over the first axis (the samples).
    0 where both spreads and the means' difference are 0; inf where only the spreads are."""
    r, numpy_in = as_tensor(real, "real")
    f, _ = as_tensor(fake, "fake")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"real {tuple(r.shape)} and fake {tuple(f.shape)} must agree beyond "
                         "the first (sample) axis")
    if r.shape[0] < 2 or f.shape[0] < 2:
        raise ValueError("compatibility needs at least 2 samples of each")
    r, f = r.to(torch.float64), f.to(torch.float64)
    diff = (f.mean(0) - r.mean(0)).abs()
    spread = torch.sqrt(f.var(0, unbiased=True) + r.var(0, unbiased=True))
    out = torch.where(spread > 0, diff / torch.where(spread > 0, spread, 1.0),
                      torch.where(diff > 0, torch.full_like(diff, float("inf")),
                                  torch.zeros_like(diff)))
    return to_output(out, numpy_in)


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(real, fake):
    """Frechet distance between Gaussian fits of two sets of summary vectors ``(S, D)``:
    ``|mu_r - mu_f|^2 + Tr(C_r + C_f - 2 (C_r^1/2 C_f C_r^1/2)^1/2)`` (float64)."""
    r, numpy_in = as_tensor(real, "real")
    f, _ = as_tensor(fake, "fake")
    if r.dim() != 2 or f.dim() != 2 or r.shape[1] != f.shape[1]:
        raise ValueError(f"real and fake must be (S, D) with the same D, got {tuple(r.shape)} "
                         f"and {tuple(f.shape)}")
    if r.shape[0] < 2 or f.shape[0] < 2:
        raise ValueError("frechet_distance needs at least 2 samples of each")
    r, f = r.to(torch.float64), f.to(torch.float64)
    mu_r, mu_f = r.mean(0), f.mean(0)
    c_r, c_f = torch.cov(r.T).reshape(r.shape[1], -1), torch.cov(f.T).reshape(f.shape[1], -1)
    root = _sqrtm_psd(c_r)
    cross = _sqrtm_psd(root @ c_f @ root)
    value = ((mu_r - mu_f) ** 2).sum() + torch.trace(c_r) + torch.trace(c_f) - 2 * torch.trace(cross)
    value = value.clamp(min=0)
    return float(value) if numpy_in else value
