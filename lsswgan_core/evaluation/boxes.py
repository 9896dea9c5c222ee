"""The whole-box report (`lsscore evaluate --boxes`): generated periodic boxes against held-out
real boxes of the same size, each statistic beside its real-vs-real null, and beside a
baseline that learns nothing.

Sets compared, all of n^3 cells at the data's cell size:
    real       the split's whole boxes (val by default): simulations training never saw
    generated  as many boxes from the checkpoint's box generator, drawn as `write_boxes` does
    baseline   a Gaussian field with the train boxes' P(k), remapped voxel by voxel onto the
               train boxes' one-point distribution: P(k) and the mass histogram almost by
               construction, and no web; a generator earns its keep on the rest
    null       the real boxes, each rolled by a random offset (no tile, the wrap face a plane
               like any other): the seam statistics' reference

Statistics (metrics.json, key `boxes`): P(k) of delta from the fundamental to the corner
(mean, spread, the Gaussian band sqrt(2 / N_modes), ratios, the bins above the training
crop's scale against the real 2-sigma band); mass and peak histograms of log10 x; the reduced
bispectrum Q of equilateral and squeezed triangles; tiled against whole; the seam statistics
of `seams` with the 99th percentile of their null; P(k) of boxes of other sizes from the same
weights, each against the band of the generated boxes of the real size and against the band
of the real boxes' own box-to-box spread (size independence); the generated boxes' spread of
P(k) from box to box over the real boxes' (spread_ratio: below 1, the generated boxes vary
less from box to box than simulations do).
Figures: box_slices.png, box_power.png, box_seams.png, box_large.png (the largest box).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import Dataset
from ..gan.models import BoxGenerator, input_spectrum
from ..gan.run import generator_from_checkpoint, load_checkpoint
from ..gan.sample import _box_seed
from ..ops import find_peaks, power_spectrum
from ..sim.simulate import gaussian_field
from ..stats import bispectrum
from . import seams

def generated_boxes(generator: BoxGenerator, n: int, count: int, seed: int,
                    tile: int | None = None) -> np.ndarray:
    """(count, n, n, n) float64 transformed values: box b from the seed (seed, b), whole or
    tile by tile."""
    out = []
    with torch.no_grad():
        for b in range(count):
            rng = torch.Generator().manual_seed(_box_seed(seed, b))
            inputs = generator.draw_inputs(1, n, rng)
            box = generator.tiled_box(inputs, tile) if tile else generator.box(inputs)
            out.append(box[0, 0].double().numpy())
    return np.stack(out)


def remapped_gaussian(train: np.ndarray, n: int, count: int, cell_size: float,
                      seed: int = 0, iterations: int = 4) -> np.ndarray:
    """(count, n, n, n) x = rho/rhobar: Gaussian fields remapped by rank onto the train boxes'
    voxel values, their input spectrum corrected `iterations` times so that the remapped
    fields' P(k) is the train boxes' (the remap alone changes it)."""
    k, target = input_spectrum("data", cell_size, torch.from_numpy(train))
    lk = np.log(k)
    values = np.sort(train.ravel())
    box = n * cell_size
    spectrum = target.copy()

    def draw():
        lp = np.log(spectrum)

        def power(q):
            return np.exp(np.interp(np.log(np.maximum(q, k[0])), lk, lp))

        out = []
        for b in range(count):
            g = gaussian_field(n, box, power, seed=int(seed) * 1000 + b)
            ranks = np.argsort(np.argsort(g.ravel()))
            picks = ((ranks + 0.5) / ranks.size * values.size).astype(np.int64)
            out.append(values[picks].reshape(g.shape))
        return np.stack(out)

    boxes = draw()
    for _ in range(iterations):
        delta = boxes / boxes.mean(axis=(1, 2, 3), keepdims=True) - 1
        kb, pb, modes = power_spectrum(torch.from_numpy(delta), box)
        kb, pb = kb.numpy(), pb.numpy().mean(0)
        good = (modes.numpy() > 0) & (pb > 0)
        want = np.exp(np.interp(np.log(kb[good]), lk, np.log(target)))
        ratio = np.exp(np.interp(lk, np.log(kb[good]), np.log(want / pb[good])))
        spectrum = spectrum * ratio
        boxes = draw()
    return boxes


def reduced_bispectrum(delta: np.ndarray, box_size: float, k1: float,
                       theta: np.ndarray) -> np.ndarray:
    """Q(k1, k1, theta) = B / (P1 P2 + P2 P3 + P3 P1) per box, (b, len(theta)), with P at
    k1 and k3 from the boxes' own P(k) (default bins, interpolated)."""
    t = torch.from_numpy(delta)
    b = bispectrum(t, box_size, k1, k1, theta).numpy()
    k, pk, _ = power_spectrum(t, box_size)
    k, pk = k.numpy(), pk.numpy()
    k3 = np.sqrt(2 * k1**2 + 2 * k1**2 * np.cos(theta))
    p1 = np.array([np.interp(k1, k, row) for row in pk])[:, None]
    p3 = np.stack([np.interp(k3, k, row) for row in pk])
    return b / (p1 * p1 + 2 * p1 * p3)


def _block(values: np.ndarray) -> dict:
    return {"mean": np.nanmean(values, 0), "std": np.nanstd(values, 0, ddof=1)
            if len(values) > 1 else np.zeros(values.shape[1:])}


def _histograms(x: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per box: the fraction of voxels and the number of peaks (periodic, 5^3) per bin of
    log10 x."""
    logx = np.log10(np.clip(x, 1e-12, None))
    mass = np.stack([np.histogram(v, edges)[0] / v.size for v in logx])
    peaks = find_peaks(torch.from_numpy(x), radius=2).numpy()
    peak = np.stack([np.histogram(v[m], edges)[0] for v, m in zip(logx, peaks)])
    return mass, peak


def box_statistics(x: np.ndarray, box_size: float, tile: int | None, crop: int,
                   edges: np.ndarray) -> dict:
    """Every statistic of the report for boxes x = rho/rhobar (b, n, n, n)."""
    delta = x / x.mean(axis=(1, 2, 3), keepdims=True) - 1
    k, pk, modes = power_spectrum(torch.from_numpy(delta), box_size, bins="corner")
    k_f = 2 * math.pi / box_size
    n = x.shape[-1]
    # triangles at k1 = k2 = 4 k_F of a 32^3 crop: equilateral (theta = 2 pi / 3 between k1
    # and k2, k3 = k1) and squeezed (theta = 0.95 pi, k3 = 0.16 k1)
    k1 = 4 * k_f * n / 32
    q_eq = reduced_bispectrum(delta, box_size, k1, np.array([2 * math.pi / 3]))
    q_sq = reduced_bispectrum(delta, box_size, k1, np.array([0.95 * math.pi]))
    mass, peak = _histograms(x, edges)
    _, axis = seams.axis_excess(delta, box_size)
    faces = seams.face_increments(delta, tile)
    return {
        "k": k.numpy(), "n_modes": modes.numpy(), "power_spectrum": pk.numpy(),
        "mass_histogram": mass, "peak_histogram": peak,
        "q_equilateral": q_eq[:, 0], "q_squeezed": q_sq[:, 0],
        "lattice_tile": seams.lattice_spikes(delta, tile) if tile else np.full(len(x), np.nan),
        "lattice_crop": seams.lattice_spikes(delta, crop),
        "axis_excess": axis.mean(1),
        "face_tile": faces["tile"], "face_wrap": faces["wrap"],
        "phase_tile": seams.phase_profile(delta, tile) if tile else np.full(len(x), np.nan),
        "crop_variance": seams.crop_variance(delta, crop),
    }


SEAM_KEYS = ("lattice_tile", "lattice_crop", "axis_excess", "face_tile", "face_wrap",
             "phase_tile")


def evaluate_boxes(checkpoint, data, out, *, split: str = "val", count: int | None = None,
                   tile: int | None = None, seed: int = 0, sizes=(2, 4),
                   show_progress: bool = False) -> dict:
    """The whole-box comparison (see the module docstring); writes figures into `out` and
    returns the `boxes` block of metrics.json. tile: the tile of the tiled check and of the
    seam statistics (default: half the box). sizes: multiples of the real boxes' side for the
    size-independence check (one box each)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    generator, cfg, _ = generator_from_checkpoint(ckpt)
    if not isinstance(generator, BoxGenerator):
        raise ValueError("whole boxes need a run with model.generator = 'box'")
    generator.eval()
    dataset = Dataset(data)
    transform = dataset.box_transform
    real = dataset.boxes(split).physical()
    train = dataset.boxes("train").physical()
    count = count or len(real)
    n = real.shape[-1]
    cell = float(dataset.attrs["box_size"]) / n
    box_size = n * cell
    tile = tile or max(generator.stride, n // 2)
    crop = cfg.model.cube
    t_gen = generated_boxes(generator, n, count, seed)
    fake = transform.inverse(t_gen)
    tiled = generated_boxes(generator, n, 1, seed, tile=tile)
    baseline = remapped_gaussian(train, n, count, cell, seed=seed + 1)
    edges = np.linspace(-1.5, 2.0, 31)
    sets = {"real": real, "generated": fake, "baseline": baseline,
            "null": seams.rolled(real, seed=seed)}
    stats = {name: box_statistics(x, box_size, tile, crop, edges) for name, x in sets.items()}
    report = _compare(stats, box_size, crop, n)
    report.update(cells=n, box_size=box_size, cell_size=cell, tile=tile, crop=crop,
                  count=count, split=split,
                  tiled_vs_whole=float(np.abs(tiled[0] - t_gen[0]).max()))
    largest = {}
    report["size_independence"] = _sizes(generator, transform, n, sizes, cell, seed, report,
                                         largest)
    from . import figures  # noqa: PLC0415  (matplotlib only when drawing)

    report["figures"] = [str(p) for p in (
        figures.box_slices(real[0], fake[0], baseline[0], box_size, out / "box_slices.png"),
        figures.box_power(report, out / "box_power.png"),
        figures.box_seams(report, out / "box_seams.png"))]
    if largest:
        report["figures"].append(str(figures.large_box_slice(
            largest["box"], cell, box_size, tile=largest["tile"], path=out / "box_large.png")))
    return report


def _compare(stats: dict, box_size: float, crop: int, n: int) -> dict:
    real, gen, base = stats["real"], stats["generated"], stats["baseline"]
    k, modes = real["k"], real["n_modes"]
    pr, pg = _block(real["power_spectrum"]), _block(gen["power_spectrum"])
    band = np.sqrt(2 / np.maximum(modes, 1))
    n_real = len(real["power_spectrum"])
    sigma = np.sqrt(pr["std"] ** 2 / n_real + pg["std"] ** 2 / len(gen["power_spectrum"]))
    above_crop = k < 2 * math.pi / (box_size * crop / n)    # scales longer than a crop
    # box-to-box spread of P(k), generated over real, in the bins below a crop's Nyquist
    # frequency with at least 100 modes (the small scales: the real spread there is the
    # response of small scales to each box's large ones, not mode counting)
    small = (k > 2 * math.pi / (box_size * crop / n)) & (k <= math.pi * n / box_size) \
        & (modes >= 100)
    report = {
        "spread_ratio": float(np.median(pg["std"][small] / pr["std"][small]))
        if small.any() and n_real > 1 else None,
        "k": k, "n_modes": modes, "power_real": pr, "power_generated": pg,
        "power_baseline": _block(base["power_spectrum"]),
        "gaussian_band": band, "ratio": pg["mean"] / pr["mean"],
        "ratio_baseline": _block(base["power_spectrum"])["mean"] / pr["mean"],
        "above_crop_inside_2sigma": bool(np.all(np.abs(pg["mean"] - pr["mean"])[above_crop]
                                                <= 2 * sigma[above_crop])),
    }
    for name in ("mass_histogram", "peak_histogram", "q_equilateral", "q_squeezed",
                 "crop_variance"):
        report[name] = {s: _block(stats[s][name]) for s in ("real", "generated", "baseline")}
    q_real = np.array([real["q_equilateral"].mean(), real["q_squeezed"].mean()])
    for s in ("generated", "baseline"):
        q = np.array([stats[s]["q_equilateral"].mean(), stats[s]["q_squeezed"].mean()])
        report[f"bispectrum_distance_{s}"] = float(np.mean(np.abs(q - q_real)))
        peak_r, peak_s = real["peak_histogram"].mean(0), stats[s]["peak_histogram"].mean(0)
        report[f"peak_distance_{s}"] = float(np.abs(peak_s - peak_r).sum() / max(peak_r.sum(), 1))
    report["seams"] = {key: {"generated": float(np.nanmean(gen[key])),
                             "baseline": float(np.nanmean(base[key])),
                             "real": float(np.nanmean(real[key])),
                             "null_p99": seams.null_percentile(
                                 np.concatenate([real[key], stats["null"][key]]))}
                       for key in SEAM_KEYS}
    return report


LARGE_TILE = 128  # boxes above this many cells per side are made tile by tile (bounded memory;
#                  a 256^3 box in 128^3 tiles: 30 s against 52 s in 64^3 tiles, 1.6 GB)


def _sizes(generator, transform, n, sizes, cell, seed, report, largest: dict) -> dict:
    """P(k) of one generated box of each size (n times each factor) in the bins of n, and
    whether each common bin lies inside the band of the generated n^3 boxes' mean: 2 sigma
    of the difference, sigma^2 = s^2 / count + s^2 / factor^3 with s the n^3 boxes' spread
    per box (a box of factor^3 times the volume has factor^3 times the modes). `largest`
    receives the largest box (rho/rhobar) and its tile. Of n/2 bins, about 5 % fall outside
    a 2-sigma band by chance alone (all inside: 0.95^(n/2), 19 % for 32 bins), hence
    bins_inside beside all_inside.

    The same with s the real n^3 boxes' spread (inside_real_band, bins_inside_real_band):
    simulations vary more from box to box at small scales than the generated boxes do
    (`spread_ratio`), and three real 512 Mpc/h simulations lay 30-31 of 31 bins inside the
    band of 8 real 256 Mpc/h ones, 2-4 % off their mean at k > 0.5 h/Mpc (docs/fidelity.md)."""
    out = {}
    mean = np.asarray(report["power_generated"]["mean"], float)
    spread = np.asarray(report["power_generated"]["std"], float)
    spread_real = np.asarray(report["power_real"]["std"], float)
    count = int(report["count"])
    for factor in sorted(int(f) for f in sizes):
        m = n * factor
        tile = LARGE_TILE if m > LARGE_TILE and m % LARGE_TILE == 0 else None
        x = transform.inverse(generated_boxes(generator, m, 1, seed + 7, tile=tile)[0])
        delta = torch.from_numpy(x / x.mean() - 1)
        edges = list(2 * math.pi / (n * cell) * (np.arange(1, n // 2 + 1) - 1e-6))
        k, pk, _ = power_spectrum(delta, m * cell, bins=edges)
        k, pk = k.numpy(), pk.numpy()
        sigma = np.sqrt(spread[:len(pk)] ** 2 * (1 / max(count, 1) + 1 / factor**3))
        inside = np.abs(pk - mean[:len(pk)]) <= 2 * sigma
        sigma_real = np.sqrt(spread_real[:len(pk)] ** 2 * (1 / max(count, 1) + 1 / factor**3))
        inside_real = np.abs(pk - mean[:len(pk)]) <= 2 * sigma_real
        out[str(m)] = {"k": k, "power": pk, "inside_band": inside,
                       "all_inside": bool(inside.all()) if count > 1 else None,
                       "bins_inside": int(inside.sum()), "bins": int(inside.size),
                       "inside_real_band": inside_real,
                       "bins_inside_real_band": int(inside_real.sum())}
        largest.update(box=x, tile=tile, cells=m)
    return out
