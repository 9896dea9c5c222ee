"""Snapshots -> training set of density cubes (`lsscore preprocess`, SPEC section 5).

Per simulation: paint all particles chunk by chunk (NGP by default, the paper's histogram) on
a `grid`^3 mesh; x = rho / rhobar; cut `cubes_per_box` cubes of `cube`^3 cells at random
origins with periodic wrap, each under a random one of the 48 cube symmetries (the paper's
shift-and-rotate augmentation, done per cube so no augmented box is ever materialised).
Simulations, not cubes, are assigned to the train / val / dg splits. The transform is
normalised by x_max of the train split, so it is applied once every simulation is done.

Crash safety: each finished simulation's raw cubes go to `<out>.partial/sim_XXXXX.npy`,
written under a temporary name and renamed, so a kill at any moment leaves only whole files
(HDF5 itself is not safe against a kill mid-write). A rerun skips the simulations already
there, and because each simulation's random numbers come from (seed, simulation index) alone,
the result is the same as an uninterrupted run. The final file is written to `<out>.tmp` and
renamed into place; then the partial directory is removed.
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..io import open_snapshot
from ..ops import paint
from ..progress import Progress
from .augment import apply_symmetry, random_crop
from .transform import Transform

FORMAT_VERSION = 1
SPLITS = ("train", "val", "dg")


@dataclass
class PreprocessConfig:
    grid: int = 256
    cube: int = 32
    cubes_per_box: int = 64
    scheme: str = "ngp"
    split: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    workers: int = 1
    length_unit: str | None = None
    chunk: int = 1 << 20
    transform_c: float = 11.0
    transform_s: float = 0.002
    ptype: int = 1

    def validate(self):
        if self.grid < 1 or self.cube < 1:
            raise ValueError("grid and cube must be positive")
        if self.grid % self.cube:
            raise ValueError(f"the grid ({self.grid}) does not divide into cubes of {self.cube} "
                             "cells: choose a grid that is a multiple of the cube size")
        if self.cubes_per_box < 1:
            raise ValueError("cubes_per_box must be >= 1")
        if self.scheme not in ("ngp", "cic", "tsc"):
            raise ValueError(f"scheme must be ngp, cic or tsc, got {self.scheme!r}")
        split = tuple(float(s) for s in self.split)
        if len(split) != 3 or any(s < 0 or not math.isfinite(s) for s in split) or sum(split) <= 0:
            raise ValueError(f"split must be three non-negative fractions, got {self.split}")
        if split[0] <= 0:
            raise ValueError("the train split must not be empty (x_max comes from it)")
        self.split = tuple(s / sum(split) for s in split)
        if self.workers < 1:
            raise ValueError("workers must be >= 1")


def assign_splits(n_sims: int, fractions, seed: int) -> dict[str, list[int]]:
    """Simulation indices per split: shuffled with the seed, counts by the fractions (each
    non-empty fraction gets at least one simulation when there are enough)."""
    order = np.random.default_rng([seed, 0xC0FFEE]).permutation(n_sims).tolist()
    wanted = [f * n_sims for f in fractions]
    counts = [int(math.floor(w)) for w in wanted]
    for i in np.argsort([c - w for c, w in zip(counts, wanted)]):  # largest remainders first
        if sum(counts) < n_sims:
            counts[i] += 1
    for i, f in enumerate(fractions):  # a requested split is never left empty
        if f > 0 and counts[i] == 0:
            donor = int(np.argmax(counts))
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[i] += 1
    if counts[0] == 0:
        raise ValueError("no simulation left for the train split")
    out, start = {}, 0
    for name, c in zip(SPLITS, counts):
        out[name] = sorted(order[start:start + c])
        start += c
    return out


def cubes_of_simulation(path: str, index: int, cfg: PreprocessConfig, box_size: float) -> np.ndarray:
    """x = rho/rhobar cubes of one simulation: (cubes_per_box, cube, cube, cube) float32."""
    snap = open_snapshot(path, length_unit=cfg.length_unit)
    grid = np.zeros((cfg.grid,) * 3, dtype=np.float32)
    total = 0
    for block in snap.iter_positions(ptype=cfg.ptype, chunk=cfg.chunk):
        block = np.ascontiguousarray(block, dtype=np.float32)
        paint(block, cfg.grid, box_size, scheme=cfg.scheme, out=grid)
        total += len(block)
    if total == 0:
        raise ValueError(f"{path}: no particles of type {cfg.ptype}")
    mean = grid.mean(dtype=np.float64)
    rng = np.random.default_rng([cfg.seed, index])
    out = np.empty((cfg.cubes_per_box,) + (cfg.cube,) * 3, dtype=np.float32)
    for c in range(cfg.cubes_per_box):
        origin = rng.integers(0, cfg.grid, 3)
        sym = int(rng.integers(0, 48))
        out[c] = apply_symmetry(random_crop(grid, cfg.cube, origin), sym) / mean
    return out


def _worker(args):
    path, index, cfg, box, threads = args
    torch.set_num_threads(threads)
    return index, cubes_of_simulation(path, index, cfg, box)


def preprocess(inputs, out, cfg: PreprocessConfig | None = None, show_progress: bool = True) -> Path:
    """Builds the HDF5 dataset `out` from the snapshots `inputs` (one per simulation)."""
    import h5py  # noqa: PLC0415

    cfg = cfg or PreprocessConfig()
    cfg.validate()
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise ValueError("no input snapshots")
    out = Path(out)
    boxes = []
    for p in inputs:
        snap = open_snapshot(p, length_unit=cfg.length_unit)
        boxes.append(snap.box_size)
    if not np.allclose(boxes, boxes[0], rtol=1e-6):
        raise ValueError("the inputs have different box sizes: " + ", ".join(
            f"{Path(p).name}={b:g}" for p, b in zip(inputs, boxes)) + " Mpc/h")
    box = float(boxes[0])
    splits = assign_splits(len(inputs), cfg.split, cfg.seed)
    partial = out.with_name(out.name + ".partial")
    settings = {**{k: v for k, v in asdict(cfg).items() if k != "workers"}, "inputs": inputs}
    fingerprint = json.dumps(settings, sort_keys=True, default=str)
    partial.mkdir(exist_ok=True)
    stamp = partial / "settings.json"
    if stamp.exists() and stamp.read_text() != fingerprint:
        raise ValueError(f"{partial} belongs to a run with other settings or inputs; remove it "
                         "to start over")
    stamp.write_text(fingerprint)

    def sim_file(index):
        return partial / f"sim_{index:05d}.npy"

    done = [i for i in range(len(inputs)) if sim_file(i).exists()]
    todo = [i for i in range(len(inputs)) if not sim_file(i).exists()]
    bar = Progress(len(inputs), "preprocess", enabled=show_progress)
    bar.update(len(done))
    slow = float(os.environ.get("LSSCORE_PREPROCESS_SLOW", "0"))  # tests: time to kill

    def store(index, cubes):
        if slow:
            time.sleep(slow)
        tmp = partial / f"sim_{index:05d}.tmp.npy"
        np.save(tmp, cubes)
        os.replace(tmp, sim_file(index))
        bar.update(1, f"sim {index}")

    if cfg.workers > 1 and len(todo) > 1:
        threads = max(1, torch.get_num_threads() // cfg.workers)
        ctx = mp.get_context("spawn")
        with ctx.Pool(min(cfg.workers, len(todo))) as pool:
            jobs = [(inputs[i], i, cfg, box, threads) for i in todo]
            for index, cubes in pool.imap_unordered(_worker, jobs):
                store(index, cubes)
    else:
        for i in todo:
            store(i, cubes_of_simulation(inputs[i], i, cfg, box))

    # the transform's x_max comes from the train split
    x_max = max(float(np.load(sim_file(i)).max()) for i in splits["train"])
    transform = Transform(x_max=x_max, c=cfg.transform_c, s=cfg.transform_s)
    tmp = out.with_name(out.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        for name in SPLITS:
            sims = splits[name]
            shape = (len(sims) * cfg.cubes_per_box,) + (cfg.cube,) * 3
            dset = f.create_dataset(name, shape, dtype="f4",
                                    chunks=(1,) + (cfg.cube,) * 3 if sims else None,
                                    compression="gzip" if sims else None,
                                    compression_opts=4 if sims else None)
            for k, index in enumerate(sims):
                dset[k * cfg.cubes_per_box:(k + 1) * cfg.cubes_per_box] = transform.forward(
                    np.load(sim_file(index)))
            dset.attrs["simulations"] = np.array(sims, dtype=np.int64)
        attrs = {**transform.attrs(), "x_max": x_max, "box_size": box,
                 "cube_size": box * cfg.cube / cfg.grid, "grid": cfg.grid, "cube": cfg.cube,
                 "cubes_per_box": cfg.cubes_per_box, "scheme": cfg.scheme, "seed": cfg.seed,
                 "split": np.array(cfg.split), "source_files": np.array(inputs, dtype="S"),
                 "package_version": __version__, "format_version": FORMAT_VERSION,
                 "units": "box_size and cube_size in Mpc/h; values are transformed rho/rhobar"}
        for key, value in attrs.items():
            f.attrs[key] = value
    os.replace(tmp, out)
    shutil.rmtree(partial)
    return out


class CubeDataset(torch.utils.data.Dataset):
    """A split of a preprocessed dataset as a torch Dataset of (1, n, n, n) float32 tensors
    (transformed values). The HDF5 file is opened lazily in each worker process."""

    def __init__(self, path, split: str = "train"):
        import h5py  # noqa: PLC0415

        self.path, self.split = str(path), split
        with h5py.File(self.path, "r") as f:
            if split not in f:
                raise KeyError(f"{path} has no split {split!r} (has {sorted(f.keys())})")
            self.length = f[split].shape[0]
            self.attrs = dict(f.attrs)
        self.transform = Transform.from_attrs(self.attrs)
        self._file = None

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        import h5py  # noqa: PLC0415

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return torch.from_numpy(self._file[self.split][i][None])
