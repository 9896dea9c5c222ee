"""Peak finding: strict local maxima of a field over (2r+1)^3 neighbourhoods."""
from __future__ import annotations

import torch

from .. import _ext  # noqa: F401  (loads the compiled ops)
from ._util import as_tensor, check_cubes, check_float, to_output

_ops = torch.ops.lsscore
BOUNDARIES = ("periodic", "open")


def find_peaks(field, radius: int = 2, boundary: str = "periodic"):
    """Boolean mask of strict local maxima.

    A voxel is a peak when it is greater than every other voxel of its ``(2r+1)^3``
    neighbourhood (124 neighbours for ``radius=2``, the paper's 5^3). Ties are never peaks, so a
    voxel on a plateau is not one. A NaN voxel is never a peak, and a voxel with a NaN in its
    neighbourhood is not one either (every comparison with NaN fails).

    Args:
        field: ``(..., n, n, n)`` float32/float64; leading dimensions are a batch.
        radius: neighbourhood half-width r, 1 to 5.
        boundary: ``'periodic'`` (neighbours wrap; needs ``n >= 2r + 1``) or ``'open'``
            (neighbours outside the cube are ignored: for cropped, non-periodic cubes).

    Returns:
        bool mask of the field's shape. NumPy in, NumPy out. Not differentiable; to put
        gradients on peak values, index the field with the mask.

    Raises:
        TypeError: ``field`` is not a float32/float64 tensor or array.
        ValueError: ``field`` is not ``(..., n, n, n)``; ``radius`` is not an int from 1 to 5;
            an unknown boundary; a periodic cube smaller than the neighbourhood
            (``n < 2 radius + 1``).
    """
    f, numpy_in = as_tensor(field, "field")
    check_float(f, "field")
    n = check_cubes(f)
    if isinstance(radius, bool) or not isinstance(radius, int) or not 1 <= radius <= 5:
        raise ValueError(f"radius must be an int from 1 to 5, got {radius!r}")
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    if boundary == "periodic" and n < 2 * radius + 1:
        raise ValueError(f"a periodic cube of {n} cells per side is smaller than the "
                         f"neighbourhood of radius {radius}; use boundary='open'")
    return to_output(_ops.find_peaks(f, radius, boundary == "periodic"), numpy_in)


@torch.library.register_fake("lsscore::find_peaks")
def _find_peaks_fake(field, radius, periodic):
    return torch.empty_like(field, dtype=torch.bool)
