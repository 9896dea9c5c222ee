"""Snapshots -> training set of density cubes (`lsscore preprocess`).

Per simulation: paint all particles chunk by chunk (NGP by default, the paper's histogram) on
a `grid`^3 mesh; x = rho / rhobar; cut `cubes_per_box` cubes of `cube`^3 cells at random
origins with periodic wrap, each under a random one of the 48 cube symmetries (the paper's
shift-and-rotate augmentation, done per cube so no augmented box is ever materialised).
Simulations, not cubes, are assigned to the train / val / dg splits. The transform is
normalised by x_max of the train split, so it is applied once every simulation is done.

Each snapshot is opened (its headers read) once: that Snapshot gives the box size and the
files to stamp (below), and is then read chunk by chunk to paint, here or in a worker process,
which is sent the Snapshot itself.

Crash safety: each finished simulation's raw cubes go to `<out>.partial/sim_XXXXX.npy`,
written under a temporary name and renamed, so a kill at any moment leaves only whole files
(HDF5 itself is not safe against a kill mid-write). Next to it, `sim_XXXXX.json` records the
size and modification time of every file of that simulation's snapshot, taken before it was
read. A rerun skips the simulations already there whose input files are unchanged, and
recomputes the others; because each simulation's random numbers come from (seed, simulation
index) alone, the result is the same as an uninterrupted run on the current inputs. The final
file is written to a temporary name and renamed into place; then the partial directory is
removed. Every file goes through lsswgan_core.files (temporary name, fsync, rename): a failed
write (disk full, a file-size limit) leaves no temporary file and raises WriteError.

Many ranks (`torchrun ... -m lsscore preprocess`, lsswgan_core.ranks): every rank opens every
snapshot's headers, and the ranks compare their listings (inputs, files, sizes) before any
work; rank 0 takes the lock and stamps `<out>.partial/`, which must be on a file system all
ranks see. Simulation i is rank i % world's: it paints, cuts and stores it in the partial
directory exactly as one process would (same seeds, same files), and records the cubes' (and
box's) largest x next to its input stamp. x_max is the largest of the ranks' maxima over the
train split; rank 0 then writes the final file from the partial directory (the cubes are a
small fraction of the snapshots' bytes, see bench/bm_scaleout.py). The result is the same file
as one process makes; a killed rank's simulations are missing from the partial directory and
are redone by a rerun, at any number of ranks.
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .._version import __version__
from ..config import SPLITS, DataConfig
from ..files import atomic_file, atomic_hdf5, exclusive_lock, write_text
from ..io import Snapshot, open_snapshot
from ..ops import paint
from ..progress import Progress
from ..ranks import Ranks
from ..resources import require_disk, require_memory
from .augment import apply_symmetry, periodic_crop
from .transform import Transform

FORMAT_VERSION = 2   # 2: the group `boxes` and box_x_max (data.keep_boxes)


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


def cubes_per_simulation(splits: dict[str, list[int]], cfg: DataConfig) -> dict[int, int]:
    """How many cubes each simulation gives: cubes_per_box when it is set, else the split's
    total from cfg.split_cubes spread evenly over its simulations (the first ones take the
    remainder)."""
    counts = {}
    for k, name in enumerate(SPLITS):
        sims = splits[name]
        for j, index in enumerate(sims):
            if not cfg.cubes_per_box:
                total = int(cfg.split_cubes[k])
                counts[index] = total // len(sims) + (1 if j < total % len(sims) else 0)
            else:
                counts[index] = cfg.cubes_per_box
    return counts


def cubes_of_simulation(snap: Snapshot, index: int, cfg: DataConfig, box_size: float,
                        count: int) -> tuple[np.ndarray, np.ndarray | None]:
    """x = rho/rhobar cubes of simulation `index` from its opened snapshot, (count, cube,
    cube, cube) float32, and its whole box x (grid^3 float32; None unless cfg.keep_boxes)."""
    grid = np.zeros((cfg.grid,) * 3, dtype=np.float32)
    total = 0
    for block in snap.iter_positions(ptype=cfg.ptype, chunk=cfg.chunk):
        block = np.ascontiguousarray(block, dtype=np.float32)
        paint(block, cfg.grid, box_size, scheme=cfg.scheme, out=grid)
        total += len(block)
    if total == 0:
        raise ValueError(f"{snap.files[0]}: no particles of type {cfg.ptype}")
    mean = grid.mean(dtype=np.float64)
    rng = np.random.default_rng([cfg.seed, index])
    out = np.empty((count,) + (cfg.cube,) * 3, dtype=np.float32)
    for c in range(count):
        origin = rng.integers(0, cfg.grid, 3)
        sym = int(rng.integers(0, 48))
        out[c] = apply_symmetry(periodic_crop(grid, cfg.cube, origin), sym) / mean
    return out, ((grid / mean).astype(np.float32) if cfg.keep_boxes else None)


def _worker(args):
    snap, index, cfg, box, count, threads = args
    torch.set_num_threads(threads)
    return index, *cubes_of_simulation(snap, index, cfg, box, count)


def preprocess(inputs, out, cfg: DataConfig | None = None, show_progress: bool = True) -> Path:
    """Builds the HDF5 dataset `out` from the snapshots `inputs` (one per simulation).

    Under torchrun (WORLD_SIZE > 1) every rank runs this with the same arguments: the
    simulations are divided among the ranks (see the module docstring), and each rank's
    failure stops every rank with one RankError naming it."""
    cfg = cfg or DataConfig()
    cfg.validate()
    inputs = [str(p) for p in inputs]
    if not inputs:
        raise ValueError("no input snapshots")
    out = Path(out)
    ranks = Ranks()
    try:
        ranks.step(_check_room, inputs, out, cfg)
        with contextlib.ExitStack() as held:
            # two runs into one output would share <out>.partial/: the second is refused.
            # The lock is rank 0's; the other ranks work under it.
            if ranks.main:
                ranks.step(held.enter_context, exclusive_lock(
                    out.with_name(out.name + ".lock"), str(out), ValueError))
            else:
                ranks.step(lambda: None)
            return _build(inputs, out, cfg, show_progress, ranks)
    finally:
        ranks.close()


def _check_room(inputs: list[str], out: Path, cfg: DataConfig) -> None:
    workers = max(1, min(cfg.workers, len(inputs)))
    require_memory(workers * (4 * cfg.grid**3 + 24 * cfg.chunk),   # the mesh, a chunk
                   f"--grid {cfg.grid}: a {cfg.grid}^3 float32 mesh per worker ({workers})",
                   "choose a smaller --grid (or fewer --workers)")
    if not out.parent.is_dir():
        raise ValueError(f"{out}: the directory {out.parent} does not exist; create it first")


def _open_inputs(inputs: list[str], cfg: DataConfig):
    """(snapshots, box size, stamps): the only opening of each snapshot."""
    snaps = [_open(p, cfg) for p in inputs]
    return snaps, _common_box_size(inputs, snaps), [_input_stamp(s) for s in snaps]


def _same_inputs(listings: list) -> str | None:
    """None when every rank's listing (its inputs, and its stamps: path, size and mtime of
    every file of every snapshot) has the inputs, files and sizes of rank 0's; else the first
    difference, naming the rank and the file. (Modification times are not compared: nodes
    may see other ones for the same file.)"""
    inputs, ref = listings[0]
    for rank, (given, listing) in enumerate(listings[1:], start=1):
        if given != inputs:
            first = next((i for i, (a, b) in enumerate(zip(inputs, given)) if a != b),
                         min(len(inputs), len(given)))
            return (f"rank {rank} was given other inputs than rank 0 (input {first + 1}: "
                    f"{given[first] if first < len(given) else 'none'} against "
                    f"{inputs[first] if first < len(inputs) else 'none'}); every rank must "
                    "run the same command")
        for path, mine, theirs in zip(inputs, ref, listing):
            files0 = {f: size for f, size, _ in mine}
            files = {f: size for f, size, _ in theirs}
            for f in sorted(set(files0) | set(files)):
                if f not in files:
                    return (f"rank {rank} does not see {f} (a file of the snapshot {path} "
                            "that rank 0 reads); every rank must see the same inputs")
                if f not in files0:
                    return (f"rank {rank} sees {f} as part of the snapshot {path}, rank 0 "
                            "does not; every rank must see the same inputs")
                if files[f] != files0[f]:
                    return (f"rank {rank} sees {f} with {files[f]} bytes, rank 0 with "
                            f"{files0[f]} bytes; every rank must see the same inputs")
    return None


def _build(inputs: list[str], out: Path, cfg: DataConfig, show_progress: bool,
           ranks: Ranks) -> Path:
    snaps, box, stamps = ranks.step(_open_inputs, inputs, cfg)
    ranks.agree(_same_inputs(ranks.gather((inputs, stamps))) if ranks.active else None)
    splits = assign_splits(len(inputs), cfg.fractions(), cfg.seed)
    counts = cubes_per_simulation(splits, cfg)
    partial = out.with_name(out.name + ".partial")
    ranks.step(_check_disk, inputs, out, cfg, counts)
    # rank 0 stamps the directory; the others must see it (a file system shared by all)
    ranks.step(_partial_dir if ranks.main else lambda *a: None, out, cfg, inputs)
    if not ranks.main:
        ranks.step(_shared_partial_dir, out, cfg, inputs)
    else:
        ranks.step(lambda: None)

    def sim_file(index):
        return partial / f"sim_{index:05d}.npy"

    def box_file(index):
        return partial / f"box_{index:05d}.npy"

    def stamp_file(index):
        return partial / f"sim_{index:05d}.json"

    def record(index):
        """What sim_XXXXX.json holds: the input stamp and the cubes' and box's maxima."""
        try:
            return json.loads(stamp_file(index).read_text())
        except (OSError, ValueError):
            return None

    def done(index):
        rec = record(index)
        return isinstance(rec, dict) and rec.get("files") == stamps[index] and \
            sim_file(index).exists() and (box_file(index).exists() or not cfg.keep_boxes)

    mine = ranks.mine(len(inputs))   # every simulation when there is one rank
    todo = [i for i in mine if not done(i)]
    for i in todo:  # cubes of an input that has changed since are never reused
        sim_file(i).unlink(missing_ok=True)
        stamp_file(i).unlink(missing_ok=True)
    bar = Progress(len(mine), "preprocess" + (f" (rank {ranks.rank})" if ranks.active else ""),
                   enabled=show_progress)
    bar.update(len(mine) - len(todo))

    def store(index, cubes, whole):
        rec = {"files": stamps[index], "x_max": float(cubes.max()) if cubes.size else None,
               "box_x_max": float(whole.max()) if whole is not None else None}
        write_text(stamp_file(index), json.dumps(rec))  # first: cubes never lack it
        if whole is not None:    # before the cubes, which mark the simulation done
            with atomic_file(box_file(index)) as f:
                np.save(f, whole)
        with atomic_file(sim_file(index)) as f:
            np.save(f, cubes)
        bar.update(1, f"sim {index}")

    def work():
        if cfg.workers > 1 and len(todo) > 1:
            threads = max(1, torch.get_num_threads() // cfg.workers)
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(cfg.workers, len(todo))) as pool:
                jobs = [(snaps[i], i, cfg, box, counts[i], threads) for i in todo]
                for index, cubes, whole in pool.imap_unordered(_worker, jobs):
                    store(index, cubes, whole)
        else:
            for i in todo:
                store(i, *cubes_of_simulation(snaps[i], i, cfg, box, counts[i]))
        changed = [inputs[i] for i in todo if _input_stamp(snaps[i]) != stamps[i]]
        if changed:
            raise ValueError(f"input files changed while they were read: {', '.join(changed)}; "
                             "rerun to recompute those simulations")
        # the transform's statistics, over this rank's simulations of the train split
        train = [record(i) for i in sorted(set(mine) & set(splits["train"]))]
        return (_largest(r["x_max"] for r in train),
                _largest(r["box_x_max"] for r in train) if cfg.keep_boxes else None)

    x_max, box_x_max = ranks.step(work)
    x_max, box_x_max = ranks.maximum(x_max), ranks.maximum(box_x_max)
    if x_max is None:
        raise ValueError("the train split has no cubes; ask for more (--cubes-per-box, "
                         "--split-cubes)")
    def assemble():
        _write(out, cfg, inputs, box, splits, sim_file, box_file, x_max, box_x_max)
        shutil.rmtree(partial)

    ranks.step(assemble if ranks.main else lambda: None)   # one writer; all learn its outcome
    return out


def _largest(values) -> float | None:
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _check_disk(inputs: list[str], out: Path, cfg: DataConfig, counts: dict[int, int]) -> None:
    cube_bytes = 4 * cfg.cube**3
    what = f"--cubes-per-box / --split-cubes ({sum(counts.values())} cubes of {cfg.cube}^3)"
    require_memory(max(counts.values()) * cube_bytes * 2 + 4 * cfg.grid**3, what,
                   "ask for fewer cubes")
    require_disk(sum(counts.values()) * cube_bytes * 2, out, what, "ask for fewer cubes")
    if cfg.keep_boxes:
        require_disk(len(inputs) * 4 * cfg.grid**3 * 2, out,
                     f"the whole boxes ({len(inputs)} of {cfg.grid}^3 float32)",
                     "pass --no-keep-boxes (the cube generator does not need them)")


def _open(path: str, cfg: DataConfig):
    return open_snapshot(path, length_unit=cfg.length_unit or None, hubble=cfg.hubble or None)


def _input_stamp(snap) -> list:
    """[path, size, mtime_ns] of every file a snapshot is read from: what a resume compares."""
    stamp = []
    for p in snap.files:
        st = os.stat(p)
        stamp.append([str(p), st.st_size, st.st_mtime_ns])
    return stamp


def _common_box_size(inputs: list[str], snaps) -> float:
    boxes = [s.box_size for s in snaps]
    if not np.allclose(boxes, boxes[0], rtol=1e-6):
        raise ValueError("the inputs have different box sizes: " + ", ".join(
            f"{Path(p).name}={b:g}" for p, b in zip(inputs, boxes)) + " Mpc/h")
    return float(boxes[0])


def _partial_dir(out: Path, cfg: DataConfig, inputs: list[str]) -> Path:
    """`<out>.partial/`, stamped with the settings; a stamp of other settings is refused.
    (What the input files hold is stamped per simulation, see the module docstring.)"""
    partial = out.with_name(out.name + ".partial")
    fingerprint = _fingerprint(cfg, inputs)
    partial.mkdir(exist_ok=True)
    stamp = partial / "settings.json"
    if stamp.exists() and stamp.read_text() != fingerprint:
        raise ValueError(f"{partial} belongs to a run with other settings or inputs; remove it "
                         "to start over")
    write_text(stamp, fingerprint)
    return partial


def _fingerprint(cfg: DataConfig, inputs: list[str]) -> str:
    settings = {**{k: v for k, v in asdict(cfg).items() if k != "workers"}, "inputs": inputs}
    return json.dumps(settings, sort_keys=True, default=str)


def _shared_partial_dir(out: Path, cfg: DataConfig, inputs: list[str]) -> None:
    """On a rank other than 0: rank 0's `<out>.partial/` must be visible here, with the same
    settings (the ranks write their simulations into it and rank 0 reads them back)."""
    stamp = out.with_name(out.name + ".partial") / "settings.json"
    try:
        seen = stamp.read_text()
    except OSError:
        seen = None
    if seen != _fingerprint(cfg, inputs):
        raise ValueError(f"{stamp} written by rank 0 is not visible here: the output "
                         "directory must be on a file system that every rank sees")


def _write(out: Path, cfg: DataConfig, inputs, box: float, splits, sim_file, box_file,
           x_max: float, box_x_max: float | None) -> None:
    """The transformed splits and the attributes, to a temporary name, then renamed to
    `out`. The transform's x_max is the largest x of the train split's cubes. With cfg.keep_boxes, the group
    `boxes` holds each split's whole boxes as rho/rhobar (float32, (S, grid, grid, grid),
    chunks of 32^3), and `box_x_max` the largest x of the train boxes (the box generator's
    transform: a box holds larger x than the cubes cut from it). Written through
    lsswgan_core.files.atomic_hdf5: the file is streamed simulation by simulation (never
    whole in memory), and a failed write stops the loop, removes the temporary file and
    raises WriteError, the previous `out` (if any) untouched."""
    transform = Transform(x_max=x_max, c=cfg.transform_c, s=cfg.transform_s)
    with atomic_hdf5(out) as (f, check):
        for name in SPLITS:
            sims = splits[name]
            cubes = [np.load(sim_file(index), mmap_mode="r") for index in sims]
            shape = (sum(len(c) for c in cubes),) + (cfg.cube,) * 3
            dset = f.create_dataset(name, shape, dtype="f4",
                                    chunks=(1,) + (cfg.cube,) * 3 if shape[0] else None,
                                    compression="gzip" if shape[0] else None,
                                    compression_opts=4 if shape[0] else None)
            start = 0
            for block in cubes:
                dset[start:start + len(block)] = transform.forward(np.asarray(block))
                start += len(block)
                check()
            dset.attrs["simulations"] = np.array(sims, dtype=np.int64)
        if cfg.keep_boxes:
            _write_boxes(f, cfg, splits, box_file, check)
        attrs = {**transform.attrs(), "x_max": x_max, "box_size": box,
                 "cube_size": box * cfg.cube / cfg.grid, "grid": cfg.grid, "cube": cfg.cube,
                 "cubes_per_box": cfg.cubes_per_box, "split_cubes": np.array(cfg.split_cubes, np.int64),
                 "scheme": cfg.scheme, "seed": cfg.seed,
                 "split": np.array(cfg.fractions()), "source_files": np.array(inputs, dtype="S"),
                 "package_version": __version__, "format_version": FORMAT_VERSION,
                 "units": "box_size and cube_size in Mpc/h; values are transformed rho/rhobar"}
        if cfg.keep_boxes:
            attrs["box_x_max"] = box_x_max
        for key, value in attrs.items():
            f.attrs[key] = value


def _write_boxes(f, cfg: DataConfig, splits, box_file, check) -> None:
    """The group `boxes`: one dataset per split of whole boxes (rho/rhobar)."""
    group = f.create_group("boxes")
    group.attrs["values"] = "rho/rhobar (x = 1 + delta), the simulation's mean as rhobar"
    chunk = (1,) + (min(cfg.grid, 32),) * 3
    for name in SPLITS:
        sims = splits[name]
        dset = group.create_dataset(name, (len(sims),) + (cfg.grid,) * 3, dtype="f4",
                                    chunks=chunk if sims else None,
                                    compression="gzip" if sims else None,
                                    compression_opts=4 if sims else None)
        for row, index in enumerate(sims):
            dset[row] = np.load(box_file(index))
            check()
        dset.attrs["simulations"] = np.array(sims, dtype=np.int64)
