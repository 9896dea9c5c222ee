"""Pure-torch float64 oracles for the compiled ops: slow, simple, written from the
definitions rather than from the kernels, and differentiable through torch's autograd.

Painting is written with the assignment kernels W(d) of the distance d (in cells) between a
particle and a cell centre: NGP W = [cell contains x], CIC W = max(0, 1 - |d|),
TSC W = 3/4 - d^2 for |d| < 1/2, (3/2 - |d|)^2 / 2 for 1/2 <= |d| < 3/2.
"""
from __future__ import annotations

import math

import torch

from ._util import SCHEME_ORDER
from .kspace import kgrid, sinc_window


def _kernel(d: torch.Tensor, scheme: str) -> torch.Tensor:
    a = d.abs()
    if scheme == "cic":
        return torch.clamp(1.0 - a, min=0.0)
    if scheme == "tsc":
        inner = 0.75 - d * d
        outer = 0.5 * torch.clamp(1.5 - a, min=0.0) ** 2
        return torch.where(a < 0.5, inner, outer)
    raise ValueError(scheme)


def _cells_and_weights(positions: torch.Tensor, n: int, box_size: float, scheme: str):
    """Per particle and per dimension: candidate cells (N, 3, K) and weights (N, 3, K)."""
    x = positions.to(torch.float64)
    h = box_size / n
    u = torch.remainder(x, box_size) / h            # in [0, n]
    base = torch.floor(u).clamp(max=n - 1)           # the cell that contains x
    if scheme == "ngp":
        return base.long().unsqueeze(-1) % n, torch.ones_like(u).unsqueeze(-1)
    offsets = torch.arange(-2, 3, dtype=torch.float64)
    cells = base.unsqueeze(-1) + offsets             # (N, 3, 5)
    d = u.unsqueeze(-1) - (cells + 0.5)
    return cells.long() % n, _kernel(d, scheme)


def paint_reference(positions, n, box_size, weights=None, scheme="ngp"):
    """(n, n, n) float64 grid: sum over particles of weight * W_x W_y W_z."""
    cells, w = _cells_and_weights(positions, n, box_size, scheme)
    k = cells.shape[-1]
    ix = cells[:, 0, :, None, None].expand(-1, k, k, k)
    iy = cells[:, 1, None, :, None].expand(-1, k, k, k)
    iz = cells[:, 2, None, None, :].expand(-1, k, k, k)
    wt = w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]
    if weights is not None:
        wt = wt * weights.to(torch.float64)[:, None, None, None]
    flat = (ix * n + iy) * n + iz
    grid = torch.zeros(n * n * n, dtype=torch.float64)
    grid = grid.index_add(0, flat.reshape(-1), wt.reshape(-1))
    return grid.reshape(n, n, n)


def readout_reference(field, positions, box_size, scheme="ngp"):
    """(N,) float64: sum over cells of W_x W_y W_z field[cell]."""
    n = field.shape[0]
    cells, w = _cells_and_weights(positions, n, box_size, scheme)
    f = field.to(torch.float64)
    k = cells.shape[-1]
    ix = cells[:, 0, :, None, None].expand(-1, k, k, k)
    iy = cells[:, 1, None, :, None].expand(-1, k, k, k)
    iz = cells[:, 2, None, None, :].expand(-1, k, k, k)
    wt = w[:, 0, :, None, None] * w[:, 1, None, :, None] * w[:, 2, None, None, :]
    return (wt * f[ix, iy, iz]).sum(dim=(1, 2, 3))


def neighbour_offsets_reference(radius):
    return [(dx, dy, dz) for dx in range(-radius, radius + 1) for dy in range(-radius, radius + 1)
            for dz in range(-radius, radius + 1) if (dx, dy, dz) != (0, 0, 0)]


def find_peaks_reference(field, radius=2, boundary="periodic"):
    """Brute force over all (2r+1)^3 - 1 offsets, strict comparison; NaN never a peak."""
    f = field.to(torch.float64)
    n = f.shape[-1]
    peak = ~torch.isnan(f)
    coords = torch.arange(n)
    for d in neighbour_offsets_reference(radius):
        shifted = torch.roll(f, shifts=tuple(-s for s in d), dims=(-3, -2, -1))  # f[x + d]
        beaten = ~(f > shifted)
        if boundary == "open":
            valid = [((coords + s) >= 0) & ((coords + s) < n) for s in d]
            inside = valid[0][:, None, None] & valid[1][None, :, None] & valid[2][None, None, :]
            beaten = beaten & inside
        peak &= ~beaten
    return peak


def power_spectrum_reference(field, box_size, edges=None, mas=None):
    """Full complex FFT, per-mode binning, float64. Returns (k_mean, P, n_modes)."""
    f = field.to(torch.float64)
    n = f.shape[-1]
    spectrum = torch.fft.fftn(f, dim=(-3, -2, -1))
    power = spectrum.real**2 + spectrum.imag**2
    n2 = kgrid(n, rfft=False).n2
    if mas is not None:
        power = power / sinc_window(n, rfft=False) ** (2 * SCHEME_ORDER[mas])
    k_fund = 2 * torch.pi / box_size
    k = k_fund * n2.double().sqrt()
    if edges is None:
        nbins = n // 2 - 1
        # bin i - 1 holds i^2 <= |n|^2 < (i + 1)^2, decided on integers
        index = torch.full_like(n2, -1)
        for i in range(1, nbins + 1):
            index[(n2 >= i * i) & (n2 < (i + 1) ** 2)] = i - 1
    else:
        e = torch.as_tensor(edges, dtype=torch.float64)
        nbins = len(e) - 1
        index = torch.full_like(n2, -1)
        for b in range(nbins):
            index[(k >= e[b]) & (k < e[b + 1]) & (n2 > 0)] = b
    scale = box_size**3 / float(n) ** 6
    pk = torch.zeros((*f.shape[:-3], nbins), dtype=torch.float64)
    k_mean = torch.zeros(nbins, dtype=torch.float64)
    n_modes = torch.zeros(nbins, dtype=torch.float64)
    for b in range(nbins):
        sel = index == b
        count = int(sel.sum())
        n_modes[b] = count
        if count:
            pk[..., b] = scale * power[..., sel].mean(-1)
            k_mean[b] = k[sel].mean()
    return k_mean, pk, n_modes


def soft_histogram_reference(values, lo, hi, nbins, weights=None):
    """Triangle kernel around the bin centres, with values clamped into [c_0, c_last] so the
    edge bins take everything up to lo and hi; values outside [lo, hi] are dropped."""
    v = values.to(torch.float64)
    width = (hi - lo) / nbins
    centres = lo + (torch.arange(nbins, dtype=torch.float64) + 0.5) * width
    inside = (v >= lo) & (v <= hi)
    vc = v.clamp(float(centres[0]), float(centres[-1]))
    share = torch.clamp(1 - (vc[..., None] - centres).abs() / width, min=0.0)
    w = torch.ones_like(v) if weights is None else weights.to(torch.float64)
    return (share * (w * inside)[..., None]).sum(-2)


def bispectrum_reference(field, box_size, k1, k2, thetas, width=None):
    """Brute-force triangle sum over the full complex FFT: the mean of F(q1) F(q2) F(q3) over
    q1 in S1, q2 in S2, q3 = -(q1 + q2) (mod n) in S3, times L^6 / n^9. Small grids only."""
    f = field.to(torch.float64)
    n = f.shape[-1]
    k_fund = 2 * math.pi / box_size
    width = k_fund if width is None else width
    spectrum = torch.fft.fftn(f, dim=(-3, -2, -1))
    kmag = k_fund * torch.sqrt(kgrid(n, rfft=False).n2.double())

    def members(k):
        return ((kmag >= k - width) & (kmag < k + width) & (kmag > 0))

    s1, s2 = members(k1).nonzero(), members(k2).nonzero()
    q1 = s1[:, None, :].expand(-1, len(s2), -1).reshape(-1, 3)
    q2 = s2[None, :, :].expand(len(s1), -1, -1).reshape(-1, 3)
    q3 = (-(q1 + q2)) % n
    out = []
    for t in thetas:
        k3 = math.sqrt(max(k1 * k1 + k2 * k2 + 2 * k1 * k2 * math.cos(t), 0.0))
        closed = members(k3)[q3[:, 0], q3[:, 1], q3[:, 2]]
        if not closed.any():
            out.append(torch.full(f.shape[:-3], float("nan"), dtype=torch.float64))
            continue
        a, b, c = q1[closed], q2[closed], q3[closed]
        prod = (spectrum[..., a[:, 0], a[:, 1], a[:, 2]] * spectrum[..., b[:, 0], b[:, 1], b[:, 2]]
                * spectrum[..., c[:, 0], c[:, 1], c[:, 2]])
        out.append(box_size**6 / float(n) ** 9 * prod.mean(-1).real)
    return torch.stack(out, dim=-1)
