"""Generate cubes, or whole periodic boxes, from a trained generator and write them as HDF5.

BatchNorm (model.sample_bn): with 'standing' statistics (the default) the generator's
BatchNorm statistics are re-estimated over `standing_batches` full training-size batches of
fresh latents and then used in eval mode, so a cube depends on its own latent only (not on
the others of its batch); with 'batch' it runs on each batch's statistics, as in training.
Every batch is full size (the last one is padded with extra latents, which are dropped).
Batch k's latents are drawn from its own seed (seed, k), so a batch is the same whichever
process draws it: under torchrun (`sample_cubes`, `sample_boxes`) rank r draws the batches (or
boxes) k with k % world == r and the union is the single-process output for the same seed and
batch size, bit for bit on the same kind of device. Cubes are gathered to rank 0, which writes
the file; boxes, which may be too large to gather, are streamed by each rank into a part file
beside the output (a file system every rank sees) and rank 0 copies them, tile by tile, into
the one output file.
The generator is the moving average of the weights when the run kept one. Transformed values
lie in [0, 1]; with `physical=True` they are mapped back to rho/rhobar through the dataset's
exact inverse.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..config import SAMPLE_BN
from ..data.transform import Transform
from ..files import atomic_hdf5
from ..progress import Progress
from ..ranks import Ranks
from ..resources import available_memory, require_memory
from .distributed import choose_device
from .models import periodic_window
from .run import generator_from_checkpoint, load_checkpoint


def check_memory(n: int, cube: int) -> None:
    """Refuses to allocate n float32 cubes of cube^3 cells that do not fit in memory."""
    require_memory(n * cube**3 * 4, f"--n-cubes {n}: {n} cubes of {cube}^3 float32",
                   "ask for fewer cubes (--n-cubes) and write several files")


@torch.no_grad()
def standing_statistics(generator, batches: int, batch_size: int, rng: torch.Generator,
                        device="cpu") -> None:
    """Re-estimate the BatchNorm running statistics as the plain average over `batches`
    batches of fresh latents, then put the generator in eval mode."""
    norms = [m for m in generator.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # a cumulative average
    generator.train()
    for _ in range(batches):
        generator(torch.randn(batch_size, generator.latent_dim, generator=rng, device=device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    generator.eval()


def generate(checkpoint, n: int, *, batch: int | None = None, physical: bool = False,
             seed: int = 0, device: str | None = None, show_progress: bool = False,
             bn: str | None = None, rank: int = 0, world: int = 1):
    """(cubes (n, c, c, c) float32 ndarray, attributes dict, cubes per second).
    rank, world: only the batches k with k % world == rank, their cubes in order (the rows
    `cube_rows(n, batch, rank, world)` of the whole output).
    checkpoint: a path, or a checkpoint already loaded (`run.load_checkpoint`). device: cpu or
    cuda; None: cuda when a GPU is visible. bn: 'standing' or 'batch' overrides the run's
    model.sample_bn (the box generator has no BatchNorm: its cubes are c^3 windows of boxes,
    drawn as in training). Raises ValueError, before allocating, when the n cubes do not fit
    in the memory available."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    device = choose_device(device)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    generator, cfg, attrs = generator_from_checkpoint(ckpt, device)
    batch = batch or cfg.train.batch_size
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    count = _count(n, batch, rank, world)
    check_memory(count, cfg.model.cube)
    # the generator's widest activations hold about 16 floats per output cell
    require_memory(batch * cfg.model.cube**3 * 4 * 16, f"--batch {batch}: the generator's "
                   f"activations for {batch} cubes", "choose a smaller --batch")
    boxes = cfg.model.generator == "box"
    bn = "none" if boxes else bn or cfg.model.sample_bn
    if bn not in SAMPLE_BN and not boxes:
        raise ValueError(f"the BatchNorm mode must be one of {', '.join(SAMPLE_BN)}, got {bn!r}")
    if bn == "batch" and batch < 2:
        raise ValueError("batch must be at least 2 (the generator's BatchNorm uses batch statistics)")
    transform = Transform.from_attrs(attrs)
    t0 = time.perf_counter()
    if bn == "standing":
        standing_statistics(generator, cfg.model.standing_batches, cfg.train.batch_size,
                            torch.Generator(device=device).manual_seed(int(seed) + 1), device)
    else:
        generator.train(not boxes)
    out = np.empty((count,) + (cfg.model.cube,) * 3, dtype=np.float32)
    bar = Progress(count, "sample", enabled=show_progress)
    row = 0
    with torch.no_grad():
        for k in range(rank, -(-n // batch), world):
            rng = torch.Generator(device=device).manual_seed(_batch_seed(seed, k))
            z = generator.sample_latent(batch, generator=rng, device=device)
            cubes = generator(z)[: n - k * batch, 0].double()
            if physical:
                cubes = transform.inverse(cubes)
            out[row:row + cubes.shape[0]] = cubes.float().cpu().numpy()
            row += cubes.shape[0]
            bar.update(cubes.shape[0])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    rate = count / (time.perf_counter() - t0)
    meta = {**{k: v for k, v in attrs.items() if not isinstance(v, (list, dict))},
            "physical": physical, "values": "rho/rhobar" if physical else "transformed, [0, 1]",
            "checkpoint_epoch": int(ckpt["epoch"]), "sample_seed": int(seed),
            "batch": batch, "batchnorm": bn, "ema": "generator_ema" in ckpt,
            "source_attributes": json.dumps(attrs)}
    return out, meta, rate


def cube_rows(n: int, batch: int, rank: int = 0, world: int = 1) -> np.ndarray:
    """The indices of the cubes (among n, in batches of `batch`) that rank `rank` of `world`
    draws: the batches k with k % world == rank."""
    index = np.arange(n)
    return index[(index // batch) % world == rank]


def _count(n: int, batch: int, rank: int, world: int) -> int:
    """len(cube_rows(n, batch, rank, world)), without listing them."""
    batches = -(-n // batch)
    count = len(range(rank, batches, world)) * batch
    return count - (batches * batch - n if (batches - 1) % world == rank else 0)


def _batch_seed(seed: int, k: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(k), 0x5A3B]).generate_state(1)[0])


def sample_cubes(checkpoint, path, n: int, **options) -> tuple[dict, float]:
    """`generate` (same options) and `write_samples` to `path`; (attributes, cubes per second).
    Under torchrun every rank draws its batches, rank 0 gathers and writes them; every rank
    raises the first failing rank's error (lsswgan_core.ranks). The rate is the ranks'
    together (n over the slowest rank's time)."""
    ranks = Ranks()
    try:
        cubes, meta, rate = ranks.step(generate, checkpoint, n, rank=ranks.rank,
                                       world=ranks.world, **options)
        if not ranks.active:
            write_samples(path, cubes, meta)
            return meta, rate
        seconds = ranks.gather(len(cubes) / rate if len(cubes) else 0.0)
        parts = ranks.gather_to_main(cubes)

        def assemble():
            whole = np.empty((n,) + cubes.shape[1:], dtype=np.float32)
            for r, part in enumerate(parts):
                whole[cube_rows(n, meta["batch"], r, ranks.world)] = part
            write_samples(path, whole, meta)

        ranks.step(assemble if ranks.main else lambda: None)
        return meta, n / max(seconds)
    finally:
        ranks.close()


def check_output_dir(path) -> None:
    """A ValueError when the directory of the output file `path` does not exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the directory {path.parent} does not exist; create it first")


def write_samples(path, cubes: np.ndarray, attrs: dict) -> Path:
    """Write `samples` (n, c, c, c) with the attributes, to a temporary name then rename
    (lsswgan_core.files: a failed write raises WriteError and leaves the previous file)."""
    path = Path(path)
    check_output_dir(path)
    with atomic_hdf5(path) as (f, check):
        c = cubes.shape[1]
        dset = f.create_dataset("samples", shape=cubes.shape, dtype=cubes.dtype,
                                chunks=(1, c, c, c), compression="gzip", compression_opts=1)
        for lo in range(0, len(cubes), 256):
            dset[lo:lo + 256] = cubes[lo:lo + 256]
            check()
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


# ------------------------------------------------------------------ whole boxes


def box_tile(n: int, halo: int, stride: int, budget: float) -> int:
    """The largest tile (a multiple of `stride` dividing n) whose activations, about 200
    floats per cell of the tile with its halo, fit in `budget` bytes; `stride` at least."""
    best = stride
    for t in range(stride, n + 1, stride):
        if n % t == 0 and (t + 2 * halo) ** 3 * 200 * 4 <= budget:
            best = t
    return best


def write_boxes(checkpoint, path, n_cells: int, count: int = 1, *, tile: int | None = None,
                physical: bool = False, seed: int = 0, device: str | None = None,
                show_progress: bool = False, boxes: list[int] | None = None) -> dict:
    """Generate `count` periodic boxes of n_cells^3 cells at the training data's cell size and
    stream them, tile by tile, into the HDF5 dataset `boxes` (count, n, n, n) of `path`.

    Box b's inputs are drawn whole from the seed (seed, b), so a box is the same whatever the
    tile (tiles at multiples of the generator's stride, each with its halo, equal the whole
    box to float32 rounding). tile: cells per side of a tile (a multiple of 4 dividing
    n_cells); None: the largest that fits in a quarter of the free memory. boxes: write only
    these of the `count` boxes, in this order (a rank's share; default all). Returns the
    attributes written (box and cell size in Mpc/h, seed, tile, transform, ...)."""
    device = choose_device(device)
    generator, ckpt, attrs, tile = _box_generator(checkpoint, n_cells, count, tile, device)
    halo = generator.halo
    boxes = list(range(count)) if boxes is None else list(boxes)
    transform = Transform.from_attrs(attrs)
    cell = float(generator.cell_size)
    meta = {**{k: v for k, v in attrs.items() if not isinstance(v, (list, dict))},
            "box_size": n_cells * cell, "cell_size": cell, "cells": n_cells,
            "physical": physical, "values": "rho/rhobar" if physical else "transformed, [0, 1]",
            "sample_seed": int(seed), "tile": tile, "halo": halo,
            "checkpoint_epoch": int(ckpt["epoch"]), "ema": "generator_ema" in ckpt,
            "source_attributes": json.dumps(attrs)}
    generator.eval()
    corners = _corners(n_cells, tile)
    bar = Progress(len(boxes) * len(corners), "boxes (tiles)", enabled=show_progress)
    t0 = time.perf_counter()
    with atomic_hdf5(Path(path)) as (f, check), torch.no_grad():
        dset = f.create_dataset("boxes", shape=(len(boxes), n_cells, n_cells, n_cells),
                                dtype=np.float32, chunks=(1, tile, tile, tile))
        for row, b in enumerate(boxes):
            rng = torch.Generator(device=device).manual_seed(_box_seed(seed, b))
            inputs = generator.draw_inputs(1, n_cells, rng, device)
            for i, j, k in corners:
                window = periodic_window(inputs, (i, j, k), tile + 2 * halo, halo)
                cells = generator(window)[0, 0].double()
                if physical:
                    cells = transform.inverse(cells)
                dset[row, i:i + tile, j:j + tile, k:k + tile] = cells.float().cpu().numpy()
                check()
                bar.update(1)
        for key, value in meta.items():
            f.attrs[key] = value
    meta["seconds"] = time.perf_counter() - t0
    return meta


def _box_generator(checkpoint, n_cells: int, count: int, tile: int | None, device: str):
    """(generator, checkpoint, dataset attributes, tile) for `write_boxes`, with its checks;
    tile None: the largest that fits in a quarter of the free memory."""
    from .models import BoxGenerator  # noqa: PLC0415

    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    generator, cfg, attrs = generator_from_checkpoint(ckpt, device)
    if not isinstance(generator, BoxGenerator):
        raise ValueError("the checkpoint's generator makes 32^3 cubes (model.generator = "
                         "'paper'); whole boxes need a run with model.generator = 'box'")
    stride, halo = generator.stride, generator.halo
    if n_cells < stride or n_cells % stride:
        raise ValueError(f"boxes are a multiple of {stride} cells per side, got {n_cells}")
    if count < 1:
        raise ValueError(f"the number of boxes must be at least 1, got {count}")
    # the inputs of one box and its large-scale field's FFT in float64 (and the 2LPT fields)
    per_cell = 4 * generator.in_channels + 40 + (60 if generator.source == "lpt" else 0)
    require_memory(n_cells**3 * per_cell,
                   f"a box of {n_cells}^3 cells: its inputs", "ask for a smaller box")
    free = available_memory() or 8 * 2**30
    tile = tile or box_tile(n_cells, halo, stride, free / 4)
    if tile % stride or n_cells % tile:
        raise ValueError(f"the tile ({tile}) must be a multiple of {stride} dividing the box "
                         f"({n_cells})")
    return generator, ckpt, attrs, tile


def _corners(n_cells: int, tile: int) -> list[tuple[int, int, int]]:
    return [(i, j, k) for i in range(0, n_cells, tile) for j in range(0, n_cells, tile)
            for k in range(0, n_cells, tile)]


def sample_boxes(checkpoint, path, n_cells: int, count: int = 1, *, tile: int | None = None,
                 show_progress: bool = False, **options) -> dict:
    """`write_boxes` (same options). Under torchrun, rank r writes the boxes b with
    b % world == r to the part file `<path>.rank<r>.part` (its own tiles, streamed), every rank
    on the same tile (the smallest of the ranks' defaults when none is given); rank 0 then
    copies them tile by tile into `path` and removes the parts. The output directory must be
    on a file system that every rank sees. Returns the attributes; "seconds" is the slowest
    rank's time."""
    ranks = Ranks()
    try:
        if not ranks.active:
            return write_boxes(checkpoint, path, n_cells, count, tile=tile,
                               show_progress=show_progress, **options)
        path = Path(path)
        device = choose_device(options.get("device"))
        if tile is None:   # one tile for all ranks: a box's rounding depends on it
            tile = min(ranks.gather(ranks.step(
                lambda: _box_generator(checkpoint, n_cells, count, None, device)[3])))
        part = path.with_name(f"{path.name}.rank{ranks.rank}.part")
        mine = list(range(ranks.rank, count, ranks.world))
        meta = ranks.step(write_boxes, checkpoint, part, n_cells, count, tile=tile,
                          show_progress=show_progress, boxes=mine, **options)
        seconds = max(ranks.gather(meta["seconds"]))

        def assemble():
            parts = [path.with_name(f"{path.name}.rank{r}.part") for r in range(ranks.world)]
            missing = [str(p) for p in parts if not p.is_file()]
            if missing:
                raise ValueError(f"rank 0 does not see {', '.join(missing)}: the output "
                                 "directory must be on a file system that every rank sees")
            _merge_boxes(path, parts, count, n_cells, tile, meta)
            for p in parts:
                p.unlink()

        ranks.step(assemble if ranks.main else lambda: None)
        return {**meta, "seconds": seconds}
    finally:
        ranks.close()


def _merge_boxes(path: Path, parts: list[Path], count: int, n_cells: int, tile: int,
                 meta: dict) -> None:
    """The boxes of the ranks' part files (box b is row b // world of part b % world) into the
    dataset `boxes` of `path`, tile by tile, with the attributes `meta`."""
    import h5py  # noqa: PLC0415

    world = len(parts)
    sources = [h5py.File(p, "r") for p in parts]
    try:
        with atomic_hdf5(path) as (f, check):
            dset = f.create_dataset("boxes", shape=(count, n_cells, n_cells, n_cells),
                                    dtype=np.float32, chunks=(1, tile, tile, tile))
            for b in range(count):
                src = sources[b % world]["boxes"]
                for i, j, k in _corners(n_cells, tile):
                    where = np.s_[i:i + tile, j:j + tile, k:k + tile]
                    dset[(b,) + where] = src[(b // world,) + where]
                    check()
            for key, value in meta.items():
                if key != "seconds":
                    f.attrs[key] = value
    finally:
        for src in sources:
            src.close()


def _box_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index), 0xB0C5]).generate_state(1)[0])
