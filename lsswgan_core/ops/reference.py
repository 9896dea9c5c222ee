"""Pure-torch float64 oracles for the compiled ops: slow, simple, written from the
definitions rather than from the kernels, and differentiable through torch's autograd.

Painting is written with the assignment kernels W(d) of the distance d (in cells) between a
particle and a cell centre: NGP W = [cell contains x], CIC W = max(0, 1 - |d|),
TSC W = 3/4 - d^2 for |d| < 1/2, (3/2 - |d|)^2 / 2 for 1/2 <= |d| < 3/2.
"""
from __future__ import annotations

import torch

_ORDERS = {"ngp": 1, "cic": 2, "tsc": 3}


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
