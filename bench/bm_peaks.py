"""Peak-finding benchmark: find_peaks against scipy.ndimage.maximum_filter, on 256^3 fields
(lognormal white noise, where every voxel is its own structure, and a smooth Gaussian-filtered
field) and a batch of 16 x 32^3 cubes, 2 threads, medians. SciPy is benchmark-only. Ours has a
roofline column: the field read once and the mask written once, over its time, as a fraction
of the measured copy bandwidth.

  strict SciPy: maximum_filter with the 5^3 footprint minus its centre, then `field > max`
                (the same answer as ours)
  non-strict:   maximum_filter(size=5), then `field == max` (plateaus count: a lower bound
                on what SciPy can do)

    python bench/bm_peaks.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, print_table, roofline, set_threads, write_json  # noqa: E402

from lsswgan_core import ops  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_peaks.json"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None
        print("SciPy not installed: only our timings are printed")
    rng = np.random.default_rng(0)
    side = 128 if args.quick else 256
    white = np.exp(rng.normal(size=(side,) * 3)).astype(np.float32)
    smooth = rng.normal(size=(side,) * 3)
    if ndimage is not None:
        smooth = ndimage.gaussian_filter(smooth, 4.0, mode="wrap")
    else:  # the same idea without SciPy: a 9^3 box average by rolled sums
        for axis in range(3):
            smooth = sum(np.roll(smooth, s, axis=axis) for s in range(-4, 5)) / 9
    cases = [(f"{side}^3 periodic, white noise", white, "periodic"),
             (f"{side}^3 periodic, smooth", smooth.astype(np.float32), "periodic"),
             ("16 x 32^3 open", rng.normal(size=(16, 32, 32, 32)).astype(np.float32), "open")]
    footprint = np.ones((5, 5, 5), dtype=bool)
    footprint[2, 2, 2] = False
    rows = []
    for name, field, boundary in cases:
        tensor = torch.from_numpy(field)
        mode = "wrap" if boundary == "periodic" else "constant"
        cval = -np.inf

        def scipy_strict():
            if field.ndim == 3:
                return field > ndimage.maximum_filter(field, footprint=footprint, mode=mode, cval=cval)
            return np.stack([f > ndimage.maximum_filter(f, footprint=footprint, mode=mode, cval=cval)
                             for f in field])

        def scipy_plain():
            if field.ndim == 3:
                return field == ndimage.maximum_filter(field, size=5, mode=mode, cval=cval)
            return np.stack([f == ndimage.maximum_filter(f, size=5, mode=mode, cval=cval)
                             for f in field])

        t_ours = median_time(lambda: ops.find_peaks(tensor, radius=2, boundary=boundary), 7)
        row = {"case": name, "impl": "ours", "ms": 1e3 * t_ours, "ours x faster": 1.0,
               "peaks": int(ops.find_peaks(tensor, 2, boundary).sum()),
               **roofline(field.nbytes + field.size, t_ours)}
        rows.append(row)
        if ndimage is not None:
            same = np.array_equal(scipy_strict(), ops.find_peaks(field, 2, boundary))
            for impl, fn in (("scipy strict footprint", scipy_strict),
                             ("scipy size=5 (non-strict)", scipy_plain)):
                t = median_time(fn, 3)
                rows.append({"case": name, "impl": impl, "ms": 1e3 * t, "ours x faster": t / t_ours,
                             "same peaks": same if impl.startswith("scipy strict") else None})
    print_table(rows, ["case", "impl", "ms", "ours x faster", "same peaks", "peaks", "GB/s",
                       "of_copy"])
    write_json(args.out, {"benchmark": "find_peaks", "rows": rows})
    return rows


if __name__ == "__main__":
    main()
