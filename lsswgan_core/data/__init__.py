"""Data pipeline: the paper's transform, cube augmentation (crops and the 48 symmetries),
`preprocess` (the one writer of the dataset file) and `Dataset` (its one reader)."""
from ..config import DataConfig
from .augment import SYMMETRIES, apply_symmetry, periodic_crop
from .dataset import CubeDataset, Dataset, DatasetError, Split, SplitNotFoundError, data_config_of
from .preprocess import assign_splits, preprocess
from .transform import Transform

__all__ = ["SYMMETRIES", "CubeDataset", "DataConfig", "Dataset", "DatasetError", "Split",
           "SplitNotFoundError", "Transform", "apply_symmetry", "assign_splits", "data_config_of",
           "periodic_crop", "preprocess"]
