"""Statistics that see seams, grids and lost large scales in whole periodic boxes.

Each takes boxes of overdensity delta (b, n, n, n) (float64) and returns per-box numbers, so
that a generated set can be compared with the same statistic on real boxes. Their null is the
real boxes each rolled by a random offset (`rolled`): a real box has no tile and its wrap face
is like any other plane, so rolled real boxes show what a seam-free field gives.

    lattice_spikes   power on the reciprocal lattice of a tile of t cells (every component of
                     the mode a multiple of n / t, not all zero) over the mean power of the
                     other modes of the same |n| shell: 1 without a tile pattern
    axis_excess      per k shell, the mean power of the modes within `angle` of a grid axis
                     over that of the rest: 1 for an isotropic field
    face_increments  <(delta_{i+1} - delta_i)^2> across the faces of tiles of t cells (planes
                     i = t - 1 -> t, 2t - 1 -> 2t, ...) and across the box's wrap face
                     (n - 1 -> 0), each over the same mean over all other planes: 1 when the
                     faces are like any plane
    phase_profile    the spread, over positions modulo t along each axis, of the mean of
                     delta, in units of its expected scatter: about 1 without a pattern
    crop_variance    the variance of delta averaged over the crops of c^3 cells that tile the
                     box: the power above the crop scale
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..ops.kspace import kgrid


def rolled(boxes: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each box rolled by its own random offset along each axis: the seam-free null."""
    rng = np.random.default_rng(seed)
    return np.stack([np.roll(b, tuple(rng.integers(0, b.shape[-1], 3)), axis=(0, 1, 2))
                     for b in boxes])


def _power(delta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """|F|^2 of each box on the full fftn grid (b, n, n, n), and the integer |n|^2 (n, n, n)."""
    f = torch.fft.fftn(torch.as_tensor(delta, dtype=torch.float64), dim=(-3, -2, -1))
    return f.abs() ** 2, kgrid(delta.shape[-1], rfft=False).n2


def lattice_spikes(delta: np.ndarray, tile: int) -> np.ndarray:
    """(b,) the mean ratio of the power of tile-lattice modes to the mean power of the other
    modes of their shell (|n| in [i, i + 1))."""
    n = delta.shape[-1]
    if n % tile or tile >= n:
        return np.full(len(delta), np.nan)
    power, n2 = _power(delta)
    g = kgrid(n, rfft=False)
    step = n // tile
    shell = n2.double().sqrt().floor().long()
    on = ((g.nx % step == 0) & (g.ny % step == 0) & (g.nz % step == 0)) & (n2 > 0)
    out = []
    for p in power:
        ratios = []
        for i in torch.unique(shell[on]).tolist():
            same = shell == i
            others = same & ~on
            if bool(others.any()):
                ratios.append(float(p[same & on].mean() / p[others].mean()))
        out.append(np.mean(ratios) if ratios else np.nan)
    return np.array(out)


def axis_excess(delta: np.ndarray, box_size: float, angle_deg: float = 18.0,
                shells: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(k (shells,), ratio (b, shells)): the mean power of the modes within `angle_deg` of a
    grid axis over that of the rest, in `shells` bins of |n| from 2 to n/2. Each mode's power
    is first divided by a smooth P(|n|) (log-linear through the mean power of thin shells,
    |n| in [i, i + 1), at their mean |n|), taken at the mode's own |n|: the axis modes sit at
    the inner edge of their shell, and the slope of P(k) would otherwise favour them."""
    n = delta.shape[-1]
    power, n2 = _power(delta)
    g = kgrid(n, rfft=False)
    norm = n2.double().sqrt()
    thin = norm.floor().long()
    centres, levels = [], []
    for i in torch.unique(thin).tolist():
        same = thin == i
        centres.append(float(norm[same].mean()))
        levels.append(power[:, same].mean(1).clamp_min(1e-300).log())
    centres_t = torch.tensor(centres, dtype=torch.float64)
    levels_t = torch.stack(levels, 1)                                  # (b, shells)
    # each mode over the smooth P(|n|) through the shells' means, at its own |n|
    j = torch.searchsorted(centres_t, norm.flatten()).clamp(1, len(centres) - 1)
    t = ((norm.flatten() - centres_t[j - 1]) / (centres_t[j] - centres_t[j - 1])).clamp(0, 1)
    fit = (levels_t[:, j - 1] * (1 - t) + levels_t[:, j] * t).exp().reshape(power.shape)
    flat = power / fit
    biggest = torch.maximum(torch.maximum(g.nx.abs(), g.ny.abs()), g.nz.abs()).double()
    near = biggest >= norm * math.cos(math.radians(angle_deg))
    edges = np.unique(np.linspace(2, n // 2, shells + 1).round())
    k, ratio = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        shell = (norm >= lo) & (norm < hi)
        a, b = shell & near, shell & ~near
        if not (bool(a.any()) and bool(b.any())):
            continue
        k.append(2 * math.pi / box_size * float(norm[shell].mean()))
        ratio.append((flat[:, a].mean(1) / flat[:, b].mean(1)).numpy())
    return np.array(k), np.stack(ratio, 1) if ratio else np.zeros((len(delta), 0))


def face_increments(delta: np.ndarray, tile: int | None) -> dict:
    """{'tile': (b,), 'wrap': (b,)}: the mean squared increment across tile faces and across
    the wrap face, over the mean over every other pair of neighbouring planes, all three axes
    together."""
    n = delta.shape[-1]
    inc = [(np.roll(delta, -1, axis=a) - delta) ** 2 for a in (1, 2, 3)]   # plane i -> i + 1
    per_plane = np.stack([x.mean(axis=tuple(d for d in (1, 2, 3) if d != a))
                          for x, a in zip(inc, (1, 2, 3))], 1).mean(1)       # (b, n)
    wrap = np.zeros(n, bool)
    wrap[n - 1] = True
    faces = np.zeros(n, bool)
    if tile and tile < n and n % tile == 0:
        faces[tile - 1:n - 1:tile] = True
    interior = ~(wrap | faces)
    base = per_plane[:, interior].mean(1)
    return {"wrap": per_plane[:, wrap].mean(1) / base,
            "tile": per_plane[:, faces].mean(1) / base if faces.any() else np.full(len(delta), np.nan)}


def phase_profile(delta: np.ndarray, tile: int) -> np.ndarray:
    """(b,): along each axis (averaged), the standard deviation over the positions modulo
    `tile` of the mean of delta at that position, in units of the scatter such a mean has
    from the spread of its own planes (the n / tile planes of one position): about 1 without
    a pattern that repeats with the tile."""
    n = delta.shape[-1]
    if n % tile or tile >= n:
        return np.full(len(delta), np.nan)
    out = []
    for axis in (1, 2, 3):
        planes = delta.mean(axis=tuple(d for d in (1, 2, 3) if d != axis))   # (b, n)
        repeats = planes.reshape(len(delta), n // tile, tile)                   # (b, m, tile)
        profile = repeats.mean(1)
        scatter = np.sqrt(repeats.var(1, ddof=1).mean(1) / (n // tile))
        out.append(profile.std(1, ddof=1) / np.where(scatter > 0, scatter, np.nan))
    return np.mean(out, 0)


def crop_variance(delta: np.ndarray, crop: int) -> np.ndarray:
    """(b,): the variance of delta averaged over the (n / crop)^3 crops that tile a box."""
    b, n = len(delta), delta.shape[-1]
    m = n // crop
    if m < 2:
        return np.full(b, np.nan)
    d = delta[:, :m * crop, :m * crop, :m * crop].reshape(b, m, crop, m, crop, m, crop)
    return d.mean(axis=(2, 4, 6)).reshape(b, -1).var(1)


def null_percentile(real: np.ndarray, q: float = 99.0) -> float:
    return float(np.nanpercentile(real, q)) if np.isfinite(real).any() else float("nan")
