"""Soft (triangle-kernel) histograms: differentiable with respect to values and weights."""
from __future__ import annotations

import math

import torch

from .. import _ext  # noqa: F401  (loads the compiled ops)
from ._util import as_tensor, check_float, to_output

_ops = torch.ops.lsscore


def soft_histogram(values, lo: float, hi: float, nbins: int, weights=None):
    """Linear-interpolation histogram of the last dimension.

    ``nbins`` bins of width ``D = (hi - lo) / nbins`` with centres ``lo + (j + 1/2) D``. Each
    value splits its weight between the two nearest bin centres in proportion to its distance
    from them (a triangle kernel of half-width D), so the histogram is piecewise linear, hence
    differentiable, in the values. Values between ``lo`` and the first centre (or the last
    centre and ``hi``) give all their weight to the edge bin, so the histogram sums to the
    total weight of the values in ``[lo, hi]``; values outside ``[lo, hi]`` (and +-inf)
    contribute nothing and get zero gradient. A value on a bin centre counts in that bin
    alone, as in ``numpy.histogram``. NaN values are an error.

    Args:
        values: ``(..., M)`` float32/float64; leading dimensions are a batch.
        lo, hi: the range, finite, ``lo < hi``.
        nbins: number of bins, >= 1.
        weights: optional ``(..., M)`` weights, same dtype and device.

    Returns:
        ``(..., nbins)`` histogram. NumPy in, NumPy out.

    Raises:
        TypeError: ``values`` or ``weights`` is not a float32/float64 tensor or array, or they
            differ in dtype.
        ValueError: ``values`` is a scalar; ``lo``, ``hi`` are not finite with ``lo < hi``, or
            ``[lo, hi]`` cannot be cut into ``nbins`` bins of a finite, non-zero width;
            ``nbins`` is not an int >= 1; ``weights`` differ from ``values`` in shape or
            device.
        RuntimeError: from the kernel's own checks: NaN values; non-finite weights;
            ``nbins > 2^26``; on CUDA, more than 65535 rows.
    """
    v, numpy_in = as_tensor(values, "values")
    check_float(v, "values")
    if v.dim() < 1:
        raise ValueError("values must have shape (..., M), got a scalar")
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi, got lo={lo}, hi={hi}")
    if isinstance(nbins, bool) or not isinstance(nbins, int) or nbins < 1:
        raise ValueError(f"nbins must be an int >= 1, got {nbins!r}")
    if not (math.isfinite(hi - lo) and math.isfinite(nbins / (hi - lo))):
        raise ValueError(f"the range [{lo}, {hi}] cannot be cut into {nbins} bins of a finite, "
                         "non-zero width")
    w = None
    if weights is not None:
        w, _ = as_tensor(weights, "weights")
        check_float(w, "weights")
        if w.shape != v.shape:
            raise ValueError(f"weights must have the shape of values {tuple(v.shape)}, "
                             f"got {tuple(w.shape)}")
        if w.dtype != v.dtype:
            raise TypeError(f"weights dtype {w.dtype} differs from values dtype {v.dtype}")
        if w.device != v.device:
            raise ValueError(f"weights are on {w.device} but values on {v.device}")
    return to_output(_ops.soft_histogram(v, w, lo, hi, nbins), numpy_in)


@torch.library.register_fake("lsscore::soft_histogram")
def _soft_histogram_fake(values, weights, lo, hi, nbins):
    return values.new_empty((*values.shape[:-1], nbins))


@torch.library.register_fake("lsscore::soft_histogram_backward")
def _soft_histogram_backward_fake(grad, values, weights, lo, hi, nbins, output_mask):
    return tuple(torch.empty_like(values) if wanted else values.new_empty(0)
                 for wanted in output_mask)


def _setup(ctx, inputs, output):
    values, weights, lo, hi, nbins = inputs
    ctx.lo, ctx.hi, ctx.nbins = lo, hi, nbins
    ctx.save_for_backward(values, weights)


def _backward(ctx, grad):
    values, weights = ctx.saved_tensors
    # the weights' gradient is a second pass over the values: only when asked for
    output_mask = [ctx.needs_input_grad[0], weights is not None and ctx.needs_input_grad[1]]
    grad_values, grad_weights = _ops.soft_histogram_backward(
        grad, values, weights, ctx.lo, ctx.hi, ctx.nbins, output_mask)
    return (grad_values if output_mask[0] else None, grad_weights if output_mask[1] else None,
            None, None, None)


torch.library.register_autograd("lsscore::soft_histogram", _backward, setup_context=_setup)
