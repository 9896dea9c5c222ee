"""Small helpers shared by the op wrappers: the assignment schemes, NumPy/torch conversion and
argument checks."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..config import SCHEMES

# Mass-assignment schemes and their orders p: a scheme of order p touches p cells per
# dimension, and its Fourier window is prod_i sinc(k_i h / 2)^p.
SCHEME_ORDER = {scheme: p for p, scheme in enumerate(SCHEMES, start=1)}


def as_tensor(x, name: str) -> tuple[torch.Tensor, bool]:
    """(tensor, came_from_numpy). Accepts torch tensors and NumPy arrays only."""
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f" or x.dtype.itemsize not in (4, 8):
            raise TypeError(f"{name} must be float32 or float64, got NumPy dtype {x.dtype}")
        if not (x.flags.c_contiguous and x.flags.writeable and x.dtype.isnative):
            x = x.astype(x.dtype.newbyteorder("="), order="C", copy=True)  # keeps 0-d as 0-d
        return torch.from_numpy(x), True
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_float(t: torch.Tensor, name: str) -> None:
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")


def check_cubes(field: torch.Tensor, name: str = "field") -> int:
    """n of a (..., n, n, n) batch of cubes, or a ValueError naming the argument."""
    if field.dim() < 3 or not (field.shape[-1] == field.shape[-2] == field.shape[-3]):
        raise ValueError(f"{name} must have shape (..., n, n, n), got {tuple(field.shape)}")
    return field.shape[-1]


def check_box_size(box_size) -> float:
    # float() would also read "1" and True: a box size is a number, not a string or a flag
    if isinstance(box_size, (str, bytes, bool)):
        raise TypeError(f"box_size must be a number, got {box_size!r}")
    try:
        value = float(box_size)
    except (TypeError, ValueError):
        raise TypeError(f"box_size must be a number, got {box_size!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"box_size must be a positive finite number (Mpc/h), got {box_size!r}")
    return value


def to_output(t: torch.Tensor | None, numpy_out: bool):
    if t is None or not numpy_out:
        return t
    return t.detach().cpu().numpy()
