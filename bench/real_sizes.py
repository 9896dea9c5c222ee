"""Size independence of the simulations themselves: P(k) of larger real boxes against the band
that `lsscore evaluate` draws for generated boxes of another size (`boxes._sizes`).

Simulates `--boxes` boxes twice the dataset's side at its cell size and particle density (the
demo's: 512 Mpc/h, 256^3 particles, 128^3 cells of 4 Mpc/h), with `lsscore simulate`'s
particle-mesh settings, and compares their P(k), in the bins of the dataset's boxes, with the
mean of the dataset's real boxes: inside the 2-sigma band sigma^2 = s^2 / count + s^2 / 8, with
s the real boxes' box-to-box spread. This is what a generated box of twice the side should
show, and the yardstick for the evaluation's size-independence check.

    python bench/real_sizes.py --data demo/dataset.h5 --boxes 3 --seed 1000
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from lsswgan_core import ops
from lsswgan_core.data import Dataset
from lsswgan_core.ops.power_spectrum import power_spectrum
from lsswgan_core.sim.simulate import run_simulation


def spectrum(x: np.ndarray, box: float, edges) -> tuple[np.ndarray, np.ndarray]:
    delta = torch.from_numpy(np.asarray(x, np.float64) / x.mean() - 1)
    k, pk, _ = power_spectrum(delta, box, bins=edges)
    return k.numpy(), pk.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a dataset with whole boxes (keep_boxes)")
    ap.add_argument("--split", default="val", help="the real boxes of the band")
    ap.add_argument("--boxes", type=int, default=3, help="large boxes to simulate")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--pm-steps", type=int, default=8)
    ap.add_argument("--particles-per-cell", type=int, default=8)
    ap.add_argument("--out", default=None, help="write the spectra here (JSON)")
    args = ap.parse_args()

    ds = Dataset(args.data)
    real = ds.boxes(args.split).physical()
    n, box = real.shape[-1], float(ds.attrs["box_size"])
    edges = list(2 * math.pi / box * (np.arange(1, n // 2 + 1) - 1e-6))
    small = np.array([spectrum(b, box, edges)[1] for b in real])
    k = spectrum(real[0], box, edges)[0]
    mean, spread = small.mean(0), small.std(0, ddof=1)
    sigma = np.sqrt(spread**2 * (1 / len(small) + 1 / 8))
    particles = round(2 * n * args.particles_per_cell ** (1 / 3))
    print(f"{len(small)} real {args.split} boxes of {n}^3 cells ({box:g} Mpc/h); "
          f"{args.boxes} simulations of {2 * box:g} Mpc/h with {particles}^3 particles")
    large = []
    for i in range(args.boxes):
        t0 = time.perf_counter()
        res = run_simulation(particles, 2 * box, args.seed + i, pm_steps=args.pm_steps,
                             mesh_factor=1)
        pos = torch.from_numpy(np.ascontiguousarray(res.positions, dtype=np.float32))
        grid = ops.paint(pos, 2 * n, 2 * box, scheme="cic").double().numpy()
        pk = spectrum(grid, 2 * box, edges)[1]
        large.append(pk)
        inside = np.abs(pk - mean) <= 2 * sigma
        high = k > 0.5
        print(f"box {i} ({time.perf_counter() - t0:.0f} s): {int(inside.sum())}/{inside.size} "
              f"bins inside the band; P_large / P_mean at k > 0.5 h/Mpc "
              f"{(pk[high] / mean[high]).min():.3f}-{(pk[high] / mean[high]).max():.3f}")
    rel = spread / mean
    print("box-to-box spread of P(k) of the real boxes, relative, at k > 0.5 h/Mpc: "
          f"{np.median(rel[k > 0.5]):.3f} (median over bins)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"k": k.tolist(), "mean": mean.tolist(), "spread": spread.tolist(),
                       "large": [p.tolist() for p in large]}, f)


if __name__ == "__main__":
    main()
