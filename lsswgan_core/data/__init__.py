"""Data pipeline: the paper's transform, cube augmentation (crops and the 48 symmetries)."""
from .augment import SYMMETRIES, apply_symmetry, random_crop
from .transform import Transform

__all__ = ["SYMMETRIES", "Transform", "apply_symmetry", "random_crop"]
