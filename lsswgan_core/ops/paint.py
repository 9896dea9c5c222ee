"""Particle painting (mass assignment) onto a periodic grid, and its adjoint, readout.

Conventions, shared by every op: a periodic box of side ``box_size`` = L (Mpc/h) on ``n``
cells per side, cell size h = L/n; cell ``i`` covers ``[i h, (i+1) h)`` and its centre is
``(i + 1/2) h``. NGP puts a particle in cell ``floor(x / h)`` (computed in float64), which is
exactly ``numpy.histogramdd(..., range=[(0, L)] * 3)``. CIC and TSC weights are taken
relative to the same cell centres. Pylians and pmesh put their grid points at ``i h``: their
grids are ours shifted by half a cell (add h/2 to positions to compare). Positions outside
``[0, L)`` are wrapped periodically; non-finite positions are an error.

Gradients: ``paint`` is differentiable with respect to ``weights`` and, for CIC and TSC,
``positions`` (NGP is piecewise constant: its position gradient is zero). ``readout`` is
differentiable with respect to ``field`` and ``positions``. Backward passes are the
registered ops ``lsscore::readout`` / ``lsscore::readout_gradient`` (for paint) and
``lsscore::paint`` / ``lsscore::readout_gradient`` (for readout). Second derivatives are not
implemented.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _ext  # noqa: F401  (loads the compiled ops)
from ._util import SCHEME_ORDER, as_tensor, check_box_size, check_float, to_output

_ops = torch.ops.lsscore


def _scheme_order(scheme: str) -> int:
    try:
        return SCHEME_ORDER[str(scheme).lower()]
    except KeyError:
        raise ValueError(f"scheme must be one of {sorted(SCHEME_ORDER)}, got {scheme!r}") from None


def _check_positions(positions: torch.Tensor) -> None:
    check_float(positions, "positions")
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (N, 3), got {tuple(positions.shape)}")


def _check_weights(weights: torch.Tensor, positions: torch.Tensor) -> None:
    check_float(weights, "weights")
    if weights.shape != (positions.shape[0],):
        raise ValueError(f"weights must have shape (N,) = ({positions.shape[0]},), "
                         f"got {tuple(weights.shape)}")
    if weights.device != positions.device:
        raise ValueError(f"weights are on {weights.device} but positions on {positions.device}")
    if weights.dtype != positions.dtype:
        raise TypeError(f"weights dtype {weights.dtype} differs from positions dtype "
                        f"{positions.dtype}")


def _check_n(n) -> int:
    if isinstance(n, np.integer):
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n (cells per side) must be an int, got {n!r}")
    if n < 1:
        raise ValueError(f"n (cells per side) must be >= 1, got {n}")
    return n  # the kernel refuses n > 2^20


def _check_numpy_out(out: np.ndarray) -> None:
    # as_tensor copies such arrays; painting into the copy would leave ``out`` untouched
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous (painting needs to write into it in place); "
                         "pass numpy.ascontiguousarray(out) and use the returned grid")
    if not out.flags.writeable:
        raise ValueError("out is read-only: paint accumulates into it in place; "
                         "pass a writeable array (e.g. out.copy())")
    if not out.dtype.isnative:
        raise ValueError(f"out has non-native byte order ({out.dtype.str}): paint writes into "
                         f"it in place; pass out.astype(out.dtype.newbyteorder('='))")


def paint(positions, n: int, box_size: float, weights=None, scheme: str = "ngp", out=None):
    """Assign particles to a periodic ``(n, n, n)`` grid.

    Args:
        positions: ``(N, 3)`` float32/float64 positions in Mpc/h (wrapped into the box).
        n: cells per side.
        box_size: box side L in Mpc/h.
        weights: optional ``(N,)`` masses, same dtype and device; default 1 per particle.
        scheme: ``'ngp'``, ``'cic'`` or ``'tsc'``.
        out: optional ``(n, n, n)`` contiguous grid to accumulate into (in place), so a
            snapshot can be painted chunk by chunk. Positions and weights are cast to its
            dtype. If gradients are needed the result is added out of place into ``out``
            through autograd (then ``out`` must not be a leaf that requires grad).

    Returns:
        The grid (``out`` if given): the sum of the weights assigned to each cell, so the
        total equals the total weight. NumPy in, NumPy out.

    Raises:
        TypeError: ``positions``, ``weights`` or ``out`` is not a float32/float64 tensor or
            array; ``weights`` has another dtype than ``positions``; ``n`` is not an int;
            ``box_size`` is not a number.
        ValueError: a bad shape (``positions``, ``weights``, ``out``); ``n < 1``; a box size
            that is not positive and finite; an unknown scheme; arguments on different
            devices; ``out`` not contiguous, or (NumPy) read-only or not in native byte
            order.
        RuntimeError: from the kernel's own checks: non-finite positions or weights;
            ``n > 2^20``; a grid of ``n^3`` cells larger than the machine's memory (CPU; the
            message names ``n`` and the size); a box so small for ``n`` cells that cell
            coordinates would overflow (``box_size < n 2^-62``).
    """
    order = _scheme_order(scheme)
    n = _check_n(n)
    box_size = check_box_size(box_size)
    pos, numpy_in = as_tensor(positions, "positions")
    _check_positions(pos)
    w = None
    if weights is not None:
        w, _ = as_tensor(weights, "weights")
    if out is None:
        if w is not None:
            _check_weights(w, pos)
        return to_output(_ops.paint(pos, w, n, box_size, order), numpy_in)

    grid, out_numpy = as_tensor(out, "out")
    check_float(grid, "out")
    if out_numpy:
        _check_numpy_out(out)
    if tuple(grid.shape) != (n, n, n):
        raise ValueError(f"out must have shape ({n}, {n}, {n}), got {tuple(grid.shape)}")
    if not grid.is_contiguous():
        raise ValueError("out must be contiguous")
    if grid.device != pos.device:
        raise ValueError(f"out is on {grid.device} but positions on {pos.device}")
    pos = pos.to(grid.dtype)
    if w is not None:
        w = w.to(grid.dtype)
        _check_weights(w, pos)
    needs_grad = torch.is_grad_enabled() and (
        pos.requires_grad or (w is not None and w.requires_grad) or grid.requires_grad)
    if needs_grad:
        grid.add_(_ops.paint(pos, w, n, box_size, order))
    else:
        _ops.paint_into(grid, pos, w, box_size, order)
    return out if out_numpy else grid


def readout(field, positions, box_size: float, scheme: str = "ngp"):
    """Interpolate a periodic ``(n, n, n)`` field at particle positions: the adjoint of
    :func:`paint` (``<paint(x, w), f> = <w, readout(f, x)>``).

    Args:
        field: ``(n, n, n)`` float32/float64 grid.
        positions: ``(N, 3)`` positions in Mpc/h, same dtype and device as ``field``.
        box_size: box side L in Mpc/h.
        scheme: ``'ngp'``, ``'cic'`` or ``'tsc'``.

    Returns:
        ``(N,)`` interpolated values. NumPy in, NumPy out.

    Raises:
        TypeError: ``field`` or ``positions`` is not a float32/float64 tensor or array, or
            they differ in dtype; ``box_size`` is not a number.
        ValueError: ``field`` is not a non-empty cube ``(n, n, n)``; ``positions`` is not
            ``(N, 3)``; a box size that is not positive and finite; an unknown scheme;
            arguments on different devices.
        ValueError: also for a field with a NaN or inf anywhere. Under ``torch.compile`` that
            check is left out (it needs the answer on the host): a particle that reads a
            non-finite cell then gets a non-finite value.
        RuntimeError: from the kernel's own checks: non-finite positions; a box too small for
            ``n`` cells.
    """
    order = _scheme_order(scheme)
    box_size = check_box_size(box_size)
    f, numpy_in = as_tensor(field, "field")
    pos, _ = as_tensor(positions, "positions")
    check_float(f, "field")
    _check_positions(pos)
    if f.dim() != 3 or not (f.shape[0] == f.shape[1] == f.shape[2]) or f.shape[0] < 1:
        raise ValueError(f"field must be a cubic grid (n, n, n), got {tuple(f.shape)}")
    if f.dtype != pos.dtype:
        raise TypeError(f"field dtype {f.dtype} differs from positions dtype {pos.dtype}")
    if f.device != pos.device:
        raise ValueError(f"field is on {f.device} but positions on {pos.device}")
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(f).all()):
        raise ValueError(f"field has {int((~torch.isfinite(f)).sum())} non-finite cells")
    return to_output(_ops.readout(f, pos, box_size, order), numpy_in)


# ---- fake (meta) kernels: shapes only, for torch.compile and opcheck ------------------------

@torch.library.register_fake("lsscore::paint")
def _paint_fake(positions, weights, n, box_size, order):
    return positions.new_empty((n, n, n))


@torch.library.register_fake("lsscore::paint_into")
def _paint_into_fake(grid, positions, weights, box_size, order):
    return None


@torch.library.register_fake("lsscore::readout")
def _readout_fake(field, positions, box_size, order):
    return positions.new_empty((positions.shape[0],))


@torch.library.register_fake("lsscore::readout_gradient")
def _readout_gradient_fake(field, positions, weights, box_size, order):
    return positions.new_empty((positions.shape[0], 3))


# ---- autograd --------------------------------------------------------------------------------

def _paint_setup(ctx, inputs, output):
    positions, weights, n, box_size, order = inputs
    ctx.box_size, ctx.order = box_size, order
    ctx.save_for_backward(positions, weights)


def _paint_backward(ctx, grad):
    positions, weights = ctx.saved_tensors
    grad = grad.contiguous()
    grad_pos = grad_w = None
    if ctx.needs_input_grad[0]:
        # d/dx_p sum_c W(x_p, c) w_p g_c = w_p * grad(interpolated g)(x_p)
        grad_pos = _ops.readout_gradient(grad, positions, weights, ctx.box_size, ctx.order)
    if weights is not None and ctx.needs_input_grad[1]:
        # d/dw_p sum_c W(x_p, c) w_p g_c = interpolated g at x_p
        grad_w = _ops.readout(grad, positions, ctx.box_size, ctx.order)
    return grad_pos, grad_w, None, None, None


def _readout_setup(ctx, inputs, output):
    field, positions, box_size, order = inputs
    ctx.box_size, ctx.order, ctx.n = box_size, order, field.shape[0]
    ctx.save_for_backward(field, positions)


def _readout_backward(ctx, grad):
    field, positions = ctx.saved_tensors
    grad = grad.contiguous()
    grad_field = grad_pos = None
    if ctx.needs_input_grad[0]:
        # the adjoint: paint the output gradients back onto the grid
        grad_field = _ops.paint(positions, grad, ctx.n, ctx.box_size, ctx.order)
    if ctx.needs_input_grad[1]:
        grad_pos = _ops.readout_gradient(field, positions, grad, ctx.box_size, ctx.order)
    return grad_field, grad_pos, None, None


torch.library.register_autograd("lsscore::paint", _paint_backward, setup_context=_paint_setup)
torch.library.register_autograd("lsscore::readout", _readout_backward,
                                setup_context=_readout_setup)
