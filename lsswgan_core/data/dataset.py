"""The one reader of the preprocessed HDF5 dataset (`data/preprocess.py` is its one writer).

    ds = Dataset("dataset.h5")
    ds.attrs, ds.transform, ds.splits            # {'train': 992, 'val': 128, 'dg': 128}
    with ds.split("train") as train:             # checked: 4-D, cubic, finite, in range
        train.batch(torch.tensor([5, 1, 7]))     # (3, 1, n, n, n) float32, transformed values
        train.physical()                         # (M, n, n, n) float64 rho/rhobar
        train.torch_dataset()                    # a torch Dataset of (1, n, n, n) tensors

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
            self.splits = {k: int(f[k].shape[0]) for k in f.keys() if len(f[k].shape) >= 1}
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
