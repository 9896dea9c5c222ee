"""Shell-averaged power spectrum P(k) of periodic fields, differentiable with respect to the
field.

Convention (that of nbodykit and Pylians): ``F(k) = sum_x f(x) exp(-i k.x)`` (the unnormalised DFT),
``P(k) = (L^3 / n^6) |F(k)|^2`` in (Mpc/h)^3 with k in h/Mpc, ``k_F = 2 pi / L``; the k = 0
mode is excluded; modes are counted over the full complex k-space (an rfft mode with
``0 < k_z < k_Nyq`` counts twice, as in nbodykit and powerbox; Pylians counts each independent
mode once, so its mode counts are about half ours and its P equal). Default bins: edges at
``k_F * [1, 2, ..., n//2]``, i.e. ``[i k_F, (i+1) k_F)`` up to the Nyquist frequency, with
modes assigned from the integer ``|n|^2`` (never from rounded float k). ``mas`` divides
``|F|^2`` by the mass-assignment window ``prod_i sinc(k_i h / 2)^(2p)``, p = 1, 2, 3 for
ngp, cic, tsc.

The FFT is torch's; the binning of ``|F|^2`` (read straight from the complex spectrum) and
its backward are the compiled ``lsscore::bin_power`` / ``lsscore::bin_power_backward``. The
per-mode bin index and weights are built once per (n, box size, bins, mas, device, dtype) and
cached; under ``torch.compile`` they are constants of the graph, computed when tracing.
"""
from __future__ import annotations

import functools
import math
import operator

import numpy as np
import torch

from .. import _ext  # noqa: F401  (loads the compiled ops)
from ._util import SCHEME_ORDER, as_tensor, check_box_size, check_cubes, check_float, to_output
from .kspace import kgrid, sinc_window

_ops = torch.ops.lsscore


def _integer_sqrt(n2: np.ndarray) -> np.ndarray:
    """floor(sqrt(n2)) exactly, for non-negative int64 n2."""
    i = np.floor(np.sqrt(n2.astype(np.float64))).astype(np.int64)
    i += ((i + 1) ** 2 <= n2)
    i -= (i * i > n2)
    return i


@functools.lru_cache(maxsize=32)
def _mode_table(n: int, box_size: float, edges: tuple | None, mas: str | None):
    """Per rfft mode (flattened): bin index (-1 = left out) and weight (multiplicity / window^2);
    per bin: k_mean, n_modes and the edges. NumPy, float64 / int64, on the CPU and outside any
    trace (NumPy, not torch: torch's vectorised CPU sqrt and pow can differ from the correctly
    rounded results in the last bit)."""
    k_fund = 2 * math.pi / box_size
    nx, ny, nz, n2 = (np.broadcast_to(v.numpy(), (n, n, n // 2 + 1)) for v in kgrid(n))
    # a mode off the planes nz = 0 and nz = n/2 stands for itself and its complex conjugate
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
        weight = weight / sinc_window(n).numpy() ** (2 * SCHEME_ORDER[mas])
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
    """_mode_table on the device: (index int32, weight, L^3 / (n^6 n_modes) per bin (0 for an
    empty bin), k_mean float64, n_modes float64)."""
    index, weight, k_mean, n_modes, _ = _mode_table(n, box_size, edges, mas)
    as_t = functools.partial(torch.as_tensor, device=device)
    scale = box_size**3 / float(n) ** 6
    inv_modes = np.where(n_modes > 0, scale / np.maximum(n_modes, 1), 0.0)
    return (as_t(index, dtype=torch.int32), as_t(weight, dtype=dtype), as_t(inv_modes, dtype=dtype),
            as_t(k_mean, dtype=torch.float64), as_t(n_modes, dtype=torch.float64))


@torch.compiler.assume_constant_result
def _modes(n, box_size, edges, mas, device, dtype):
    """_mode_tensors, which torch.compile calls when tracing and keeps as constants (the cached
    table is built with NumPy and data-dependent sizes, which do not trace)."""
    return _mode_tensors(n, box_size, edges, mas, device, dtype)


def corner_edges(n: int, box_size: float) -> tuple[float, ...]:
    """Bin edges [i k_F, (i+1) k_F) from i = 1 up to past the cube's corner sqrt(3) n/2, so
    that every rfft mode but k = 0 is in a bin (the edges sit a hair below the integers, so
    that |n| = i falls in bin i exactly as with the default bins). Plain floats, so that
    torch.compile traces them as constants."""
    top = math.floor(math.sqrt(3) * n / 2) + 1
    k_f = 2 * math.pi / box_size
    return tuple((i - 1e-6) * k_f for i in range(1, top + 1))


def _bin_edges(bins, n: int, box_size: float) -> tuple[float, ...] | None:
    """Explicit bin edges as a tuple of floats (a cache key), or a ValueError. Lists and tuples
    are read in plain Python, so that torch.compile can trace the check."""
    if bins is None:
        return None
    if isinstance(bins, str):
        if bins != "corner":
            raise ValueError(f"bins must be None, 'corner' or bin edges, got {bins!r}")
        return corner_edges(n, box_size)
    message = "bins must be at least two finite, strictly increasing edges (h/Mpc)"
    if isinstance(bins, (list, tuple)):
        try:
            edges = tuple(float(b) for b in bins)
        except (TypeError, ValueError):
            raise ValueError(message) from None
    else:
        arr = np.asarray(bins.detach().cpu() if isinstance(bins, torch.Tensor) else bins,
                         dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(message)
        edges = tuple(arr.tolist())
    if (len(edges) < 2 or not all(math.isfinite(e) for e in edges)
            or any(b <= a for a, b in zip(edges, edges[1:]))):
        raise ValueError(message)
    return edges


def power_spectrum(field, box_size: float, bins=None, mas: str | None = None):
    """Shell-averaged power spectrum of periodic cubes (see the module docstring).

    Args:
        field: ``(..., n, n, n)`` float32/float64 (e.g. the overdensity); leading dimensions
            are a batch.
        box_size: the cube's side L in Mpc/h.
        bins: ``None`` for the default bins (up to k_Nyq), ``'corner'`` for the same bins
            continued up to the cube's corner sqrt(3) k_Nyq (every mode but k = 0, the
            period-2 ones included), or increasing bin edges in h/Mpc.
        mas: ``None``, ``'ngp'``, ``'cic'`` or ``'tsc'``: divide by that window.

    Returns:
        ``(k_mean (nbins,), P (..., nbins), n_modes (nbins,))``: the mean |k| of the modes of
        each bin (h/Mpc; the bin centre for an empty bin), P in (Mpc/h)^3 (0 for an empty
        bin), and the number of modes (full complex k-space). ``k_mean`` and ``n_modes`` are
        float64. NumPy in, NumPy out.

    Raises:
        TypeError: ``field`` is not a float32/float64 tensor or array, or ``box_size`` is not
            a number.
        ValueError: a bad shape; a box size that is not positive and finite, or so small or
            large that k or P overflow; bad ``bins`` or ``mas``; default bins with n < 4; a
            non-finite field, or a spectrum that overflows its dtype. Under ``torch.compile``
            the last check is left out (it needs the result on the host): a non-finite field
            then gives a non-finite P.
        RuntimeError: on CUDA, a batch of more than 65535 cubes.

    Works under ``torch.compile(fullgraph=True)``; the cube side n is then a constant of the
    graph (another n compiles another graph).
    """
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    n = operator.index(check_cubes(f))  # a plain int, also when torch.compile traces a shape
    box_size = check_box_size(box_size)
    if box_size > 1e30:  # (L^3 / n^6) must stay a finite float64
        raise ValueError(f"box_size {box_size!r} is too large for a power spectrum in (Mpc/h)^3")
    if mas is not None and mas not in SCHEME_ORDER:
        raise ValueError(f"mas must be None or one of {sorted(SCHEME_ORDER)}, got {mas!r}")
    if n == 0:
        raise ValueError("field must have at least one cell per side")
    edges = _bin_edges(bins, n, box_size)
    if not math.isfinite(2 * math.pi * n / box_size):  # |k| up to about k_F n
        raise ValueError(f"box_size {box_size!r} is too small: the wavenumbers 2 pi n / L overflow")
    index, weight, inv_modes, k_mean, n_modes = _modes(
        n, box_size, edges, mas, str(f.device), f.dtype)
    nbins = n_modes.shape[0]
    if f.numel() == 0:  # an empty batch, which the FFT libraries refuse
        pk = f.sum(dim=(-3, -2, -1)).unsqueeze(-1).expand(*f.shape[:-3], nbins).clone()
    else:
        spectrum = torch.fft.rfftn(f, dim=(-3, -2, -1))
        pairs = torch.view_as_real(spectrum.reshape(*f.shape[:-3], -1))
        pk = _ops.bin_power(pairs, index, weight, nbins) * inv_modes
    # a NaN or inf anywhere in the field spreads to every mode: checking the (..., nbins)
    # result is as good as checking the field, and nearly free
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(pk).all()):
        bad = int((~torch.isfinite(f)).sum())
        raise ValueError(f"field contains {bad} non-finite values" if bad else
                         "the power spectrum overflowed: rescale the field")
    if numpy_in:
        return to_output(k_mean, True).copy(), to_output(pk, True), to_output(n_modes, True).copy()
    return k_mean.clone(), pk, n_modes.clone()


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
