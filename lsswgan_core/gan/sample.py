"""Generate cubes from a trained generator and write them as HDF5.

BatchNorm (model.sample_bn): with 'standing' statistics (the default) the generator's
BatchNorm statistics are re-estimated over `standing_batches` full training-size batches of
fresh latents and then used in eval mode, so a cube depends on its own latent only (not on
the others of its batch); with 'batch' it runs on each batch's statistics, as in training.
Every batch is full size (the last one is padded with extra latents, which are dropped).
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
from ..resources import require_memory
from .distributed import choose_device
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
             bn: str | None = None):
    """(cubes (n, c, c, c) float32 ndarray, attributes dict, cubes per second).
    checkpoint: a path, or a checkpoint already loaded (`run.load_checkpoint`). device: cpu or
    cuda; None: cuda when a GPU is visible. bn: 'standing' or 'batch' overrides the run's
    model.sample_bn. Raises ValueError, before allocating, when the n cubes do not fit in the
    memory available."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    device = choose_device(device)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, device)
    generator, cfg, attrs = generator_from_checkpoint(ckpt, device)
    check_memory(n, cfg.model.cube)
    batch = batch or cfg.train.batch_size
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    # the generator's widest activations hold about 16 floats per output cell
    require_memory(batch * cfg.model.cube**3 * 4 * 16, f"--batch {batch}: the generator's "
                   f"activations for {batch} cubes", "choose a smaller --batch")
    bn = bn or cfg.model.sample_bn
    if bn not in SAMPLE_BN:
        raise ValueError(f"the BatchNorm mode must be one of {', '.join(SAMPLE_BN)}, got {bn!r}")
    if bn == "batch" and batch < 2:
        raise ValueError("batch must be at least 2 (the generator's BatchNorm uses batch statistics)")
    transform = Transform.from_attrs(attrs)
    rng = torch.Generator(device=device)
    rng.manual_seed(int(seed))
    t0 = time.perf_counter()
    if bn == "standing":
        standing_statistics(generator, cfg.model.standing_batches, cfg.train.batch_size,
                            torch.Generator(device=device).manual_seed(int(seed) + 1), device)
    else:
        generator.train()
    out = np.empty((n,) + (cfg.model.cube,) * 3, dtype=np.float32)
    bar = Progress(n, "sample", enabled=show_progress)
    with torch.no_grad():
        for lo in range(0, n, batch):
            z = torch.randn(batch, cfg.model.latent_dim, generator=rng, device=device)
            cubes = generator(z)[: n - lo, 0].double()
            if physical:
                cubes = transform.inverse(cubes)
            out[lo:lo + cubes.shape[0]] = cubes.float().cpu().numpy()
            bar.update(cubes.shape[0])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    rate = n / (time.perf_counter() - t0)
    meta = {**{k: v for k, v in attrs.items() if not isinstance(v, (list, dict))},
            "physical": physical, "values": "rho/rhobar" if physical else "transformed, [0, 1]",
            "checkpoint_epoch": int(ckpt["epoch"]), "sample_seed": int(seed),
            "batchnorm": bn, "ema": "generator_ema" in ckpt,
            "source_attributes": json.dumps(attrs)}
    return out, meta, rate


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
