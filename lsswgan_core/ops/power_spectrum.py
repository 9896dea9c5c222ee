"""Shell-averaged power spectrum P(k) of periodic fields, differentiable with respect to the
field.

Convention (SPEC section 4): ``F(k) = sum_x f(x) exp(-i k.x)`` (the unnormalised DFT),
``P(k) = (L^3 / n^6) |F(k)|^2`` in (Mpc/h)^3 with k in h/Mpc, ``k_F = 2 pi / L``; the k = 0
mode is excluded; modes are counted over the full complex k-space (an rfft mode with
``0 < k_z < k_Nyq`` counts twice, as in nbodykit and powerbox; Pylians counts each independent
mode once, so its mode counts are about half ours and its P equal). Default bins: edges at
``k_F * [1, 2, ..., n//2]``, i.e. ``[i k_F, (i+1) k_F)`` up to the Nyquist frequency, with
modes assigned from the integer ``|n|^2`` (never from rounded float k). ``mas`` divides
``|F|^2`` by the mass-assignment window ``prod_i sinc(k_i h / 2)^(2p)``, p = 1, 2, 3 for
ngp, cic, tsc.

The FFT is torch's; the binning of ``|F|^2`` (read straight from the complex spectrum) and
its backward are the compiled ``lsscore::bin_power`` / ``lsscore::bin_power_backward``. The per-mode bin index and weights are cached per
(n, box size, bins, mas, device).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .. import _ext  # noqa: F401  (loads the compiled ops)
from ._util import as_tensor, check_box_size, check_float, to_output
from .peaks import check_cubes

_ops = torch.ops.lsscore
MAS_ORDER = {"ngp": 1, "cic": 2, "tsc": 3}


def _integer_sqrt(n2: np.ndarray) -> np.ndarray:
    """floor(sqrt(n2)) exactly, for non-negative int64 n2."""
    i = np.floor(np.sqrt(n2.astype(np.float64))).astype(np.int64)
    i += ((i + 1) ** 2 <= n2)
    i -= (i * i > n2)
    return i


@functools.lru_cache(maxsize=32)
def _mode_table(n: int, box_size: float, edges: tuple | None, mas: str | None):
    """Per rfft mode: bin index (-1 = left out) and weight (multiplicity / window^2); per bin:
    k_mean, n_modes and the edges. NumPy, float64 / int64."""
    k_fund = 2 * math.pi / box_size
    full = np.fft.fftfreq(n, d=1.0 / n).round().astype(np.int64)
    half = np.arange(n // 2 + 1, dtype=np.int64)
    nx, ny, nz = np.meshgrid(full, full, half, indexing="ij")
    n2 = nx**2 + ny**2 + nz**2
    multiplicity = np.where((nz == 0) | ((n % 2 == 0) & (nz == n // 2)), 1.0, 2.0)
    k = k_fund * np.sqrt(n2.astype(np.float64))
    if edges is None:
        nbins = n // 2 - 1
        if nbins < 1:
            raise ValueError(f"default bins need n >= 4 cells per side, got {n}; pass bins=")
        i = _integer_sqrt(n2)
        index = np.where((n2 > 0) & (i >= 1) & (i <= nbins), i - 1, -1)
        bin_edges = k_fund * np.arange(1, nbins + 2, dtype=np.float64)
    else:
        bin_edges = np.asarray(edges, dtype=np.float64)
        nbins = len(bin_edges) - 1
        index = np.searchsorted(bin_edges, k, side="right") - 1
        index = np.where((n2 > 0) & (index >= 0) & (index < nbins), index, -1)
    weight = multiplicity.copy()
    if mas is not None:
        p = MAS_ORDER[mas]
        window = (np.sinc(nx / n) * np.sinc(ny / n) * np.sinc(nz / n)) ** (2 * p)
        weight = weight / window
    index = index.reshape(-1)
    n_modes = np.bincount(index[index >= 0], weights=multiplicity.reshape(-1)[index >= 0],
                          minlength=nbins)
    k_sum = np.bincount(index[index >= 0], weights=(multiplicity * k).reshape(-1)[index >= 0],
                        minlength=nbins)
    centres = 0.5 * (bin_edges[:-1] + bin_edges[1:])
    k_mean = np.where(n_modes > 0, k_sum / np.maximum(n_modes, 1), centres)
    return index, weight.reshape(-1), k_mean, n_modes, bin_edges


@functools.lru_cache(maxsize=32)
def _mode_tensors(n, box_size, edges, mas, device: str, dtype: torch.dtype):
    index, weight, k_mean, n_modes, _ = _mode_table(n, box_size, edges, mas)
    as_t = functools.partial(torch.as_tensor, device=device)
    scale = box_size**3 / float(n) ** 6
    inv_modes = np.where(n_modes > 0, scale / np.maximum(n_modes, 1), 0.0)
    return (as_t(index, dtype=torch.int32), as_t(weight, dtype=dtype), as_t(inv_modes, dtype=dtype),
            k_mean, n_modes)


def power_spectrum(field, box_size: float, bins=None, mas: str | None = None):
    """Shell-averaged power spectrum of periodic cubes (see the module docstring).

    Args:
        field: ``(..., n, n, n)`` float32/float64 (e.g. the overdensity); leading dimensions
            are a batch.
        box_size: the cube's side L in Mpc/h.
        bins: ``None`` for the default bins, or increasing bin edges in h/Mpc.
        mas: ``None``, ``'ngp'``, ``'cic'`` or ``'tsc'``: divide by that window.

    Returns:
        ``(k_mean (nbins,), P (..., nbins), n_modes (nbins,))``: the mean |k| of the modes of
        each bin (h/Mpc; the bin centre for an empty bin), P in (Mpc/h)^3 (0 for an empty
        bin), and the number of modes (full complex k-space). ``k_mean`` and ``n_modes`` are
        float64. NumPy in, NumPy out.
    """
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    n = check_cubes(f)
    box_size = check_box_size(box_size)
    if box_size > 1e30:  # (L^3 / n^6) must stay a finite float64
        raise ValueError(f"box_size {box_size!r} is too large for a power spectrum in (Mpc/h)^3")
    if mas is not None and mas not in MAS_ORDER:
        raise ValueError(f"mas must be None or one of {sorted(MAS_ORDER)}, got {mas!r}")
    edges = None
    if bins is not None:
        arr = np.asarray(bins.detach().cpu() if isinstance(bins, torch.Tensor) else bins,
                         dtype=np.float64)
        if arr.ndim != 1 or arr.size < 2 or not np.all(np.isfinite(arr)) or np.any(
                np.diff(arr) <= 0):
            raise ValueError("bins must be at least two finite, strictly increasing edges "
                             "(h/Mpc)")
        edges = tuple(arr.tolist())
    if n == 0:
        raise ValueError("field must have at least one cell per side")
    index, weight, inv_modes, k_mean, n_modes = _mode_tensors(
        n, box_size, edges, mas, str(f.device), f.dtype)
    spectrum = torch.fft.rfftn(f, dim=(-3, -2, -1))
    pairs = torch.view_as_real(spectrum.reshape(*f.shape[:-3], -1))
    pk = _ops.bin_power(pairs, index, weight, len(n_modes)) * inv_modes
    # a NaN or inf anywhere in the field spreads to every mode: checking the (..., nbins)
    # result is as good as checking the field, and nearly free
    if not bool(torch.isfinite(pk).all()):
        bad = int((~torch.isfinite(f)).sum())
        raise ValueError(f"field contains {bad} non-finite values" if bad else
                         "the power spectrum overflowed: rescale the field")
    if numpy_in:
        return k_mean.copy(), to_output(pk, True), n_modes.copy()
    return (torch.as_tensor(k_mean, device=f.device), pk,
            torch.as_tensor(n_modes, device=f.device))


@torch.library.register_fake("lsscore::bin_power")
def _bin_power_fake(spectrum, index, weight, nbins):
    return spectrum.new_empty((*spectrum.shape[:-2], nbins))


@torch.library.register_fake("lsscore::bin_power_backward")
def _bin_power_backward_fake(grad, spectrum, index, weight):
    return torch.empty_like(spectrum, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    spectrum, index, weight, nbins = inputs
    ctx.save_for_backward(spectrum, index, weight)


def _backward(ctx, grad):
    spectrum, index, weight = ctx.saved_tensors
    grad_spectrum = _ops.bin_power_backward(grad.contiguous(), spectrum, index, weight)
    return grad_spectrum, None, None, None


torch.library.register_autograd("lsscore::bin_power", _backward, setup_context=_setup)
