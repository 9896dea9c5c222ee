"""The one reader of the preprocessed HDF5 dataset (`data/preprocess.py` is its one writer).

    ds = Dataset("dataset.h5")
    ds.attrs, ds.transform, ds.splits            # {'train': 992, 'val': 128, 'dg': 128}
    with ds.split("train") as train:             # checked: 4-D, cubic, finite, in range
        train.batch(torch.tensor([5, 1, 7]))     # (3, 1, n, n, n) float32, transformed values
        train.physical()                         # (M, n, n, n) float64 rho/rhobar
        train.torch_dataset()                    # a torch Dataset of (1, n, n, n) tensors
    ds.box_splits                                # {'train': 12, 'val': 2, 'dg': 2} whole boxes
    boxes = ds.boxes("train")                    # rho/rhobar boxes (S, grid, grid, grid)
    crops = CropSplit(boxes, 32, seed=0)         # random periodic crops, as a split of cubes
    crops.set_epoch(3); crops.batch(torch.tensor([0, 9]))   # (2, 1, 32, 32, 32), transformed

A split of at most IN_MEMORY_LIMIT bytes is read once and held in memory (its file is closed
at once); a larger one is read from the file per batch (h5py wants increasing indices: they
are sorted and the rows put back in the asked order), which gives the same batches, and holds
the file open until `close()` or the end of the `with` block.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from ..config import DataConfig
from .augment import apply_symmetry, periodic_crop
from .transform import Transform

IN_MEMORY_LIMIT = 2 << 30   # bytes of a split held in memory; larger splits are read per batch
RANGE_TOL = 1e-6            # rounding allowed around [0, 1] (float32 cubes)


class DatasetError(ValueError):
    """A dataset file that cannot be used (missing, unreadable, wrong shape, NaN)."""


class SplitNotFoundError(DatasetError, KeyError):
    """The file has no split of that name."""

    def __str__(self):   # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _plain(value):
    """HDF5 attribute -> a JSON-able value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def data_config_of(attrs: dict, base: DataConfig | None = None) -> DataConfig:
    """The [data] settings a dataset file was made with, from its attributes (keys it does
    not record keep `base`'s values): what a run's config.toml records."""
    cfg = dataclasses.replace(base) if base is not None else DataConfig()
    for key, attr in (("grid", "grid"), ("cube", "cube"), ("cubes_per_box", "cubes_per_box"),
                      ("scheme", "scheme"), ("seed", "seed"), ("transform_c", "transform_c"),
                      ("transform_s", "transform_s")):
        if attr in attrs:
            setattr(cfg, key, type(getattr(cfg, key))(attrs[attr]))
    if "split" in attrs and len(attrs["split"]) == 3:
        cfg.split_fractions = tuple(float(v) for v in attrs["split"])
    if "split_cubes" in attrs and len(attrs["split_cubes"]) == 3:
        cfg.split_cubes = tuple(int(v) for v in attrs["split_cubes"])
    return cfg


def _open(path):
    import h5py  # noqa: PLC0415

    try:
        return h5py.File(str(path), "r")
    except (OSError, FileNotFoundError) as exc:
        reason = "no such file" if not os.path.exists(str(path)) else str(exc)
        raise DatasetError(f"{path}: cannot open the dataset ({reason})") from None


class Dataset:
    """A preprocessed dataset file: its attributes, transform and splits."""

    def __init__(self, path):
        self.path = str(path)
        with _open(self.path) as f:
            self.attrs = {k: _plain(v) for k, v in f.attrs.items()}
            self.splits = {k: int(v.shape[0]) for k, v in f.items()
                           if hasattr(v, "shape") and len(v.shape) >= 1}
            group = f.get("boxes")
            self.box_splits = {k: int(v.shape[0]) for k, v in group.items()} \
                if group is not None and not hasattr(group, "shape") else {}
        self._transform = None

    @property
    def transform(self) -> Transform:
        if self._transform is None:
            try:
                self._transform = Transform.from_attrs(self.attrs)
            except (KeyError, ValueError, TypeError) as exc:
                raise DatasetError(f"{self.path}: no usable transform attributes ({exc})") from None
        return self._transform

    def split(self, name: str, *, check_finite: bool = True) -> "Split":
        if name not in self.splits:
            raise SplitNotFoundError(f"{self.path} has no split {name!r} (it has "
                                     f"{', '.join(sorted(self.splits)) or 'none'})")
        return Split(self, name, check_finite=check_finite)

    def boxes(self, name: str) -> "BoxSplit":
        """The whole boxes of a split (files made with data.keep_boxes)."""
        if name not in self.box_splits:
            raise SplitNotFoundError(
                f"{self.path} has no whole boxes of split {name!r}" + (
                    f" (it has boxes of {', '.join(sorted(self.box_splits))})" if self.box_splits
                    else "; preprocess it again with --keep-boxes (data.keep_boxes = true)"))
        return BoxSplit(self, name)

    @property
    def box_transform(self) -> Transform:
        """The transform of the box generator: the dataset's, normalised by the largest x of
        the train boxes (box_x_max) instead of the train cubes'."""
        if "box_x_max" not in self.attrs:
            raise DatasetError(f"{self.path} records no box_x_max (made without whole boxes)")
        t = self.transform
        return Transform(x_max=float(self.attrs["box_x_max"]), c=t.c, s=t.s, name=t.name)

    def summary(self) -> str:
        """One line: the cube counts per split and x_max."""
        text = ", ".join(f"{k} {v} cubes" for k, v in self.splits.items())
        if "x_max" in self.attrs:
            text += f"; x_max = {float(self.attrs['x_max']):.4g}"
        return text


class Split:
    """One split: `batch(indices)` -> (b, 1, n, n, n) float32 of transformed values.

    A split held in memory closes the file once it is read; a larger one keeps it open for
    its batches until `close()` (or the end of a `with` block); a later read opens it again.
    """

    def __init__(self, dataset: Dataset, name: str, *, check_finite: bool = True):
        self.dataset, self.name = dataset, name
        self._pid, self._file, self._dset = None, None, None
        self._data = None
        dset = self._handle()
        try:
            shape = dset.shape
            if len(shape) != 4 or len(set(shape[1:])) != 1:
                raise DatasetError(f"{dataset.path}:{name} has shape {shape}, expected "
                                   "(M, n, n, n)")
            self.cube, self._length = int(shape[1]), int(shape[0])
            self.simulations = [int(s) for s in np.asarray(dset.attrs.get("simulations", []))]
            if dset.nbytes <= IN_MEMORY_LIMIT:
                self._data = torch.from_numpy(dset[...].astype(np.float32, copy=False))
                self.close()   # all of it is in memory: the file is not needed again
                if check_finite:
                    self._check_values()
        except BaseException:
            self.close()
            raise

    def _handle(self):
        """The split's HDF5 dataset, opened by this process (a DataLoader worker, or a split
        closed before, opens the file again)."""
        if self._file is None or self._pid != os.getpid():
            self._pid, self._file = os.getpid(), _open(self.dataset.path)
            self._dset = self._file[self.name]
        return self._dset

    def _check_values(self) -> None:
        """Values a run can train on: finite, transformed values >= 0 (x >= 0), and, for the
        train split whose largest x defines x_max, <= 1; a recorded x_max positive."""
        where = f"{self.dataset.path}:{self.name}"
        if not torch.isfinite(self._data).all():
            raise DatasetError(f"{where} contains NaN or infinite values")
        for key in ("x_max", "transform_x_max"):
            if key in self.dataset.attrs:
                try:
                    value = float(self.dataset.attrs[key])
                except (TypeError, ValueError):
                    value = float("nan")
                if not (np.isfinite(value) and value > 0):
                    raise DatasetError(f"{self.dataset.path}: {key} = "
                                       f"{self.dataset.attrs[key]!r} is not a positive number; "
                                       "the file is not a usable preprocessed dataset (rerun "
                                       "lsscore preprocess)")
        if self._data.numel() == 0:
            return
        lo, hi = float(self._data.min()), float(self._data.max())
        top = 1 + RANGE_TOL if self.name == "train" else float("inf")
        if lo < -RANGE_TOL or hi > top:
            wanted = "[0, 1]" if self.name == "train" else ">= 0"
            raise DatasetError(f"{where} holds values in [{lo:.6g}, {hi:.6g}], not {wanted} as "
                               "the transform of lsscore preprocess gives; the file was not "
                               "made by it or is damaged")

    def __len__(self):
        return self._length

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    def mean(self) -> float:
        """Mean value of the split (of its first 1024 cubes when it is not in memory)."""
        if self._data is not None:
            return float(self._data.mean(dtype=torch.float64))
        return float(np.mean(self._handle()[:1024], dtype=np.float64))

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self._data is not None:
            return self._data[indices].unsqueeze(1)
        idx = np.asarray(indices)
        order = np.argsort(idx)
        rows = self._handle()[np.sort(idx)]   # h5py wants increasing indices
        out = np.empty_like(rows)
        out[order] = rows
        return torch.from_numpy(out.astype(np.float32, copy=False)).unsqueeze(1)

    def transformed(self) -> np.ndarray:
        """All cubes (M, n, n, n) as float64 transformed values."""
        return (self._data.numpy() if self._data is not None
                else self._handle()[...]).astype(np.float64)

    def physical(self) -> np.ndarray:
        """All cubes (M, n, n, n) as float64 rho/rhobar, through the exact inverse transform."""
        return self.dataset.transform.inverse(self.transformed())

    def torch_dataset(self) -> "CubeDataset":
        return CubeDataset(self)

    def close(self) -> None:
        """Closes the file (if this process has it open); closing twice is harmless."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._pid, self._file, self._dset = None, None, None

    def __enter__(self) -> "Split":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):   # a DataLoader worker under spawn reopens the file itself
        state = dict(self.__dict__)
        state["_pid"], state["_file"], state["_dset"] = None, None, None
        return state


class CubeDataset(torch.utils.data.Dataset):
    """A split as a torch Dataset of (1, n, n, n) float32 tensors (transformed values)."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        if not 0 <= i < len(self.split):
            raise IndexError(f"index {i} out of range for a split of {len(self.split)} cubes")
        return self.split.batch(torch.tensor([i]))[0]


class BoxSplit:
    """The whole boxes of one split, x = rho/rhobar (S, n, n, n) float32, read once into
    memory when they fit in IN_MEMORY_LIMIT bytes, else a box at a time from the file."""

    def __init__(self, dataset: Dataset, name: str):
        self.dataset, self.name = dataset, name
        with _open(dataset.path) as f:
            dset = f["boxes"][name]
            shape = dset.shape
            if len(shape) != 4 or len(set(shape[1:])) != 1 or shape[0] < 1:
                raise DatasetError(f"{dataset.path}:boxes/{name} has shape {shape}, expected "
                                   "(S, n, n, n) with S >= 1")
            self.n, self._length = int(shape[1]), int(shape[0])
            self._data = dset[...] if dset.nbytes <= IN_MEMORY_LIMIT else None
        if self._data is not None and not np.isfinite(self._data).all():
            raise DatasetError(f"{dataset.path}:boxes/{name} contains NaN or infinite values")
        self._cached = (None, None)

    def __len__(self):
        return self._length

    @property
    def cell_size(self) -> float:
        return float(self.dataset.attrs["box_size"]) / self.n

    def box(self, index: int) -> np.ndarray:
        """Box `index`, x = rho/rhobar (n, n, n) float32."""
        if self._data is not None:
            return self._data[index]
        if self._cached[0] != index:
            with _open(self.dataset.path) as f:
                self._cached = (index, f["boxes"][self.name][index])
        return self._cached[1]

    def physical(self) -> np.ndarray:
        """All boxes (S, n, n, n) float64 rho/rhobar."""
        return np.stack([self.box(i) for i in range(len(self))]).astype(np.float64)


class CropSplit:
    """Random periodic crops of whole boxes, served like a split of cubes (`len`, `batch`,
    `mean`, `cube`): transformed values (the dataset's box_transform), (b, 1, c, c, c).

    Crop `i` of epoch `e` is cut from box i mod S at an origin and under one of the 48 cube
    symmetries drawn from the seed (seed, e, i): every epoch other crops (periodic shifts and
    symmetries are exact augmentations of a periodic box), the same ones on a rerun or a
    resume. An epoch has S (n / c)^3 crops, the boxes' volume once."""

    def __init__(self, boxes: BoxSplit, size: int, seed: int = 0):
        if not 1 <= size <= boxes.n:
            raise DatasetError(f"crops of {size}^3 do not fit in boxes of {boxes.n}^3")
        self.boxes, self.cube, self.seed = boxes, int(size), int(seed)
        self.transform = boxes.dataset.box_transform
        self.epoch = 0
        self._length = len(boxes) * max(1, (boxes.n // size) ** 3)

    def __len__(self):
        return self._length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def crop(self, index: int) -> np.ndarray:
        """Crop `index` of the current epoch, x = rho/rhobar (c, c, c) float32."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        box = self.boxes.box(int(index) % len(self.boxes))
        origin = rng.integers(0, self.boxes.n, 3)
        return apply_symmetry(periodic_crop(box, self.cube, origin), int(rng.integers(0, 48)))

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        x = np.stack([self.crop(i) for i in np.asarray(indices).tolist()]).astype(np.float64)
        return torch.from_numpy(self.transform.forward(x).astype(np.float32)).unsqueeze(1)

    def mean(self) -> float:
        """The mean transformed value over (the first 64 crops of epoch 0 of) the split."""
        epoch, self.epoch = self.epoch, 0
        try:
            return float(self.batch(torch.arange(min(64, len(self)))).mean(dtype=torch.float64))
        finally:
            self.epoch = epoch

    def close(self) -> None:
        pass
