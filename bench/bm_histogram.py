"""Soft-histogram benchmark: ours against a pure-torch two-scatter_add version (forward and
forward+backward) and np.histogram (a hard histogram, for scale), on a 256^3 field's values
and a batch of 16 x 32^3, 2 threads, medians, interleaved (a busy machine slows all alike).
Ours has a roofline column: compulsory bytes (values read once, the histogram and, backward,
the values' gradient written once) over its time, as a fraction of the measured copy
bandwidth.

    python bench/bm_histogram.py [--quick]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, print_table, roofline, set_threads, write_json  # noqa: E402

from lsswgan_core import ops  # noqa: E402


def torch_soft_histogram(values, lo, hi, nbins):
    """The same triangle kernel in plain torch: two scatter_adds."""
    width = (hi - lo) / nbins
    inside = (values >= lo) & (values <= hi)
    s = ((values - lo) / width - 0.5).clamp(0, nbins - 1)
    j0 = s.floor().clamp(max=nbins - 2).long()
    f = s - j0
    w = inside.to(values.dtype)
    out = values.new_zeros((*values.shape[:-1], nbins))
    out = out.scatter_add(-1, j0, w * (1 - f))
    return out.scatter_add(-1, j0 + 1, w * f)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).with_name("results_histogram.json"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    side = 128 if args.quick else 256
    cases = [(f"{side}^3", rng.uniform(0, 1, (1, side**3)).astype(np.float32)),
             ("16 x 32^3", rng.uniform(0, 1, (16, 32**3)).astype(np.float32))]
    rows = []
    for name, values in cases:
        v = torch.from_numpy(values)
        agree = torch.allclose(ops.soft_histogram(v, 0.0, 1.0, 64),
                               torch_soft_histogram(v, 0.0, 1.0, 64), rtol=1e-4, atol=1.0)

        def fwd_bwd(fn):
            x = v.clone().requires_grad_()
            fn(x, 0.0, 1.0, 64).sum().backward()

        impls = {"ours": lambda: ops.soft_histogram(v, 0.0, 1.0, 64),
                 "ours_b": lambda: fwd_bwd(ops.soft_histogram),
                 "torch": lambda: torch_soft_histogram(v, 0.0, 1.0, 64),
                 "torch_b": lambda: fwd_bwd(torch_soft_histogram)}
        times = {k: [] for k in impls}
        for fn in impls.values():
            fn()  # warm-up
        for _ in range(5 if args.quick else 11):
            for k, fn in impls.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
        t_ours, t_ours_b, t_torch, t_torch_b = (statistics.median(times[k]) for k in impls)
        hist_bytes = values.shape[0] * 64 * values.itemsize
        t_np = median_time(lambda: [np.histogram(r, bins=64, range=(0, 1)) for r in values], 3)
        rows += [
            {"case": name, "pass": "forward", "impl": "ours", "ms": 1e3 * t_ours,
             "ours x faster": 1.0, "agree": agree,
             **roofline(values.nbytes + hist_bytes, t_ours)},
            {"case": name, "pass": "forward", "impl": "torch 2x scatter_add", "ms": 1e3 * t_torch,
             "ours x faster": t_torch / t_ours},
            {"case": name, "pass": "forward", "impl": "np.histogram (hard)", "ms": 1e3 * t_np,
             "ours x faster": t_np / t_ours},
            {"case": name, "pass": "fwd+bwd", "impl": "ours", "ms": 1e3 * t_ours_b,
             "ours x faster": 1.0, **roofline(2 * values.nbytes + hist_bytes, t_ours_b)},
            {"case": name, "pass": "fwd+bwd", "impl": "torch 2x scatter_add",
             "ms": 1e3 * t_torch_b, "ours x faster": t_torch_b / t_ours_b},
        ]
    print_table(rows, ["case", "pass", "impl", "ms", "ours x faster", "agree", "GB/s", "of_copy"])
    write_json(args.out, {"benchmark": "soft_histogram", "rows": rows})
    return rows


if __name__ == "__main__":
    main()
