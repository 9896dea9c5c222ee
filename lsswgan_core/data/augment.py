"""Cube augmentation: periodic crops and the 48 symmetries of the cube (axis permutations
times reflections: the rotations and reflections that map the cube onto itself)."""
from __future__ import annotations

import itertools

import numpy as np

# (permutation of the three axes, which axes are then flipped)
SYMMETRIES = tuple((perm, flips) for perm in itertools.permutations(range(3))
                   for flips in itertools.product((False, True), repeat=3))
assert len(SYMMETRIES) == 48


def apply_symmetry(cube: np.ndarray, index: int) -> np.ndarray:
    """Cube under symmetry `index` (0..47); the last three axes are transformed."""
    if not 0 <= index < len(SYMMETRIES):
        raise ValueError(f"symmetry index must be in [0, 48), got {index}")
    perm, flips = SYMMETRIES[index]
    lead = cube.ndim - 3
    out = np.transpose(cube, (*range(lead), *(lead + p for p in perm)))
    axes = tuple(lead + i for i, f in enumerate(flips) if f)
    return np.flip(out, axis=axes) if axes else out


def periodic_crop(grid: np.ndarray, size: int, origin) -> np.ndarray:
    """A (size,)*3 sub-cube of a periodic (n, n, n) grid starting at `origin`, wrapping
    around the box edges (no copy of the whole grid is made)."""
    n = grid.shape[-1]
    if size > n:
        raise ValueError(f"cube size {size} exceeds the grid's {n} cells")
    idx = [(np.arange(size) + int(o)) % n for o in origin]
    return grid[np.ix_(*idx)]
