"""Data pipeline: the paper's transform, cube augmentation (crops and the 48 symmetries)."""
from .augment import SYMMETRIES, apply_symmetry, random_crop
from .preprocess import CubeDataset, PreprocessConfig, assign_splits, preprocess
from .transform import Transform

__all__ = ["SYMMETRIES", "CubeDataset", "PreprocessConfig", "Transform", "apply_symmetry",
           "assign_splits", "preprocess", "random_crop"]
