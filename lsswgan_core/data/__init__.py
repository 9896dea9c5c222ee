"""Data pipeline: the paper's transform, cube augmentation (crops and the 48 symmetries),
`preprocess` (the one writer of the dataset file) and `Dataset` (its one reader), with its
splits of cubes and of whole boxes (`BoxSplit`, served as random crops by `CropSplit`)."""
from ..config import DataConfig
from .augment import SYMMETRIES, apply_symmetry, periodic_crop
from .dataset import (BoxSplit, CropSplit, CubeDataset, Dataset, DatasetError, Split,
                      SplitNotFoundError, data_config_of)
from .preprocess import assign_splits, preprocess
from .transform import Transform

__all__ = ["SYMMETRIES", "BoxSplit", "CropSplit", "CubeDataset", "DataConfig", "Dataset", "DatasetError", "Split",
           "SplitNotFoundError", "Transform", "apply_symmetry", "assign_splits", "data_config_of",
           "periodic_crop", "preprocess"]
