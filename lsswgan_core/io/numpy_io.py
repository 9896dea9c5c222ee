"""Plain NumPy catalogues: an (N, 3) array in `.npy` (memory-mapped) or under the key
'positions' (or the only array) of an `.npz`."""
from __future__ import annotations

import math
import os
from tokenize import TokenError
from pathlib import Path
from typing import Iterator

import numpy as np

from .base import Snapshot, SnapshotError


class NumpySnapshot(Snapshot):
    def _iter_raw(self, ptype: int, chunk: int) -> Iterator[np.ndarray]:
        if ptype != 1:
            return
        array = _load(self.files[0])
        for start in range(0, array.shape[0], chunk):
            yield self.files[0], "the positions array", np.asarray(array[start:start + chunk])


def _check_npy_header(path: Path) -> None:
    """The header must end with a newline right before the data, as every writer of the
    format pads it, and the data must be exactly what the header's shape and dtype say: a
    corrupt header would otherwise shift or drop values silently."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise SnapshotError(path, f"unknown .npy format version {version}")
        # version 3 differs from 2 only in the header's text encoding (utf-8)
        shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)(f)
        end = f.tell()
        f.seek(end - 1)
        if f.read(1) != b"\n":
            raise SnapshotError(path, f"the .npy header does not end where its length says "
                                f"(byte {end}): a corrupt header")
        data = os.fstat(f.fileno()).st_size - end
        need = math.prod(shape) * dtype.itemsize
        if data != need:   # a shape or dtype changed by corruption, or a truncated file
            raise SnapshotError(path, f"the header says {shape} {dtype} ({need} bytes), the "
                                f"file holds {data} bytes of data")


def _load(path: Path):
    try:
        if path.suffix == ".npy":
            _check_npy_header(path)
            return np.load(path, mmap_mode="r", allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            key = "positions" if "positions" in z.files else (z.files[0] if len(z.files) == 1
                                                             else None)
            if key is None:
                raise SnapshotError(path, f"npz without a 'positions' array: {z.files}")
            return z[key]
    except (ValueError, OSError, EOFError, SyntaxError, TokenError, UnicodeDecodeError,
            TypeError, KeyError) as exc:   # what a corrupt header makes np.load raise
        raise SnapshotError(path, f"not a readable NumPy file ({exc})") from None


def open_numpy(path: Path, box_size: float | None, factor: float | None) -> NumpySnapshot:
    if box_size is None or not math.isfinite(box_size) or box_size <= 0:
        raise SnapshotError(path, "a NumPy catalogue needs a positive box_size (Mpc/h)")
    array = _load(path)
    if array.ndim != 2 or array.shape[1] != 3 or array.dtype.kind != "f":
        raise SnapshotError(path, f"expected a float (N, 3) array, got {array.dtype} {array.shape}")
    factor = 1.0 if factor is None else factor
    npart = np.zeros(6, dtype=np.int64)
    npart[1] = array.shape[0]
    return NumpySnapshot(files=[path], format="numpy", box_size=float(box_size), npart=npart,
                         length_factor=factor, length_unit_source="argument")
