"""Painting benchmark: lsscore's paint against what a user would otherwise use.

Baselines, on the same positions in one process: numpy.histogramdd and np.bincount on linear
cell indices (NGP), NumPy CIC by 8 np.add.at, torch index_put_(accumulate=True) (NGP and
CIC), and Pylians' MAS_library.MA when installed (bench only; its grid points sit at i h,
so positions are shifted by -h/2 to paint the same grid). Prints medians, Mparticles/s,
ratios and the peak extra memory of each call, and for ours a roofline column: its compulsory
bytes (positions and weights read once, the grid written once) over its time, as a fraction
of the machine's measured copy bandwidth. A second table scales ours over 1, 2 and all cores
on the largest catalogues (interleaved, medians). Writes bench/results_paint.json.

    python bench/bm_paint.py [--quick] [--threads 2]
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
from _common import (median_time, peak_extra_mib, print_table, roofline, set_threads,  # noqa: E402
                     thread_counts, write_json)

from lsswgan_core import ops  # noqa: E402

BOX = 1000.0


def catalogue(kind: str, num: int, rng) -> np.ndarray:
    if kind == "uniform":
        return rng.uniform(0, BOX, (num, 3)).astype(np.float32)
    # clustered "cosmic web": points scattered around random segments (filaments) and knots
    n_fil = 400
    a = rng.uniform(0, BOX, (n_fil, 3))
    b = a + rng.normal(0, BOX / 10, (n_fil, 3))
    which = rng.integers(0, n_fil, num)
    t = rng.uniform(0, 1, (num, 1))
    pts = a[which] + t * (b[which] - a[which]) + rng.normal(0, BOX / 400, (num, 3))
    knots = num // 4
    pts[:knots] = a[which[:knots]] + rng.normal(0, BOX / 300, (knots, 3))
    return np.mod(pts, BOX).astype(np.float32)


def np_bincount_ngp(pos, n):
    idx = np.floor(pos.astype(np.float64) * (n / BOX)).astype(np.int64)
    np.clip(idx, 0, n - 1, out=idx)
    lin = (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]
    return np.bincount(lin, minlength=n**3).reshape(n, n, n)


def np_histogramdd(pos, n):
    return np.histogramdd(pos, bins=n, range=[(0, BOX)] * 3)[0]


def np_cic(pos, n):
    u = pos.astype(np.float64) * (n / BOX) - 0.5
    i0 = np.floor(u)
    f = u - i0
    i0 = i0.astype(np.int64) % n
    i1 = (i0 + 1) % n
    grid = np.zeros((n, n, n))
    for dx in (0, 1):
        ix, wx = (i1[:, 0], f[:, 0]) if dx else (i0[:, 0], 1 - f[:, 0])
        for dy in (0, 1):
            iy, wy = (i1[:, 1], f[:, 1]) if dy else (i0[:, 1], 1 - f[:, 1])
            for dz in (0, 1):
                iz, wz = (i1[:, 2], f[:, 2]) if dz else (i0[:, 2], 1 - f[:, 2])
                np.add.at(grid, (ix, iy, iz), wx * wy * wz)
    return grid


def torch_ngp(pos_t, n):
    idx = torch.floor(pos_t.double() * (n / BOX)).long().clamp_(0, n - 1)
    grid = torch.zeros(n**3, dtype=torch.float32)
    lin = (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]
    grid.index_put_((lin,), torch.ones(len(lin)), accumulate=True)
    return grid.view(n, n, n)


def torch_cic(pos_t, n):
    u = pos_t.double() * (n / BOX) - 0.5
    i0 = torch.floor(u)
    f = (u - i0).float()
    i0 = i0.long() % n
    grid = torch.zeros(n**3, dtype=torch.float32)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                d = torch.tensor([dx, dy, dz])
                idx = (i0 + d) % n
                w = torch.where(d.bool(), f, 1 - f).prod(dim=1)
                grid.index_put_(((idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2],), w,
                                accumulate=True)
    return grid.view(n, n, n)


def pylians():
    try:
        import MAS_library  # noqa: PLC0415

        return MAS_library
    except ImportError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_paint.json"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    rng = np.random.default_rng(0)
    sizes = [2**18, 2**21] if args.quick else [2**18, 2**21, 2**24]
    grids = [64, 256]
    mas = pylians()
    if mas is None:
        print("Pylians not installed (pip install pylians): its column is skipped")
    rows = []
    for kind in ("uniform", "clustered"):
        for num in sizes:
            pos = catalogue(kind, num, rng)
            pos_t = torch.from_numpy(pos)
            repeats = 5 if num <= 2**21 else 3
            slow_repeats = 3 if num <= 2**21 else 1
            for n in grids:
                shifted = None
                if mas is not None:
                    # ours(x) == Pylians(x - h/2): its grid points sit at i h, ours at (i + 1/2) h
                    shifted = np.mod(pos - np.float32(0.5 * BOX / n), BOX).astype(np.float32)

                def pylians_ma(scheme, n=n, shifted=shifted):
                    grid = np.zeros((n, n, n), dtype=np.float32)
                    mas.MA(shifted, grid, BOX, scheme, verbose=False)
                    return grid

                cases = {
                    "ngp": {
                        "ours": lambda: ops.paint(pos_t, n, BOX, scheme="ngp"),
                        "np.bincount": lambda: np_bincount_ngp(pos, n),
                        "np.histogramdd": lambda: np_histogramdd(pos, n),
                        "torch.index_put_": lambda: torch_ngp(pos_t, n),
                        "pylians": (lambda: pylians_ma("NGP")) if mas else None,
                    },
                    "cic": {
                        "ours": lambda: ops.paint(pos_t, n, BOX, scheme="cic"),
                        "numpy add.at": lambda: np_cic(pos, n),
                        "torch.index_put_": lambda: torch_cic(pos_t, n),
                        "pylians": (lambda: pylians_ma("CIC")) if mas else None,
                    },
                    "tsc": {
                        "ours": lambda: ops.paint(pos_t, n, BOX, scheme="tsc"),
                        "pylians": (lambda: pylians_ma("TSC")) if mas else None,
                    },
                }
                for scheme, impls in cases.items():
                    t_ours = median_time(impls["ours"], repeats)
                    mem_ours = peak_extra_mib(impls["ours"])
                    for name, fn in impls.items():
                        if fn is None:
                            continue
                        if name == "ours":
                            t, mem = t_ours, mem_ours
                        else:
                            t = median_time(fn, slow_repeats if name in (
                                "np.histogramdd", "numpy add.at") else repeats, warmup=0
                                if num >= 2**24 else 1)
                            mem = peak_extra_mib(fn)
                        row = {"catalogue": kind, "N": f"2^{num.bit_length() - 1}",
                               "grid": f"{n}^3", "scheme": scheme, "impl": name,
                               "ms": 1e3 * t, "Mpart/s": num / t / 1e6,
                               "ours x faster": t / t_ours, "peak MiB": mem}
                        if name == "ours":
                            row.update(roofline(compulsory_bytes(pos, n), t))
                        rows.append(row)
                print_table(rows[-sum(v is not None for i in cases.values() for v in i.values()):],
                            ["catalogue", "N", "grid", "scheme", "impl", "ms", "Mpart/s",
                             "ours x faster", "peak MiB", "GB/s", "of_copy"])
                print()
    scaling = thread_scaling(rng, sizes[-1], grids[-1], mas, repeats=3 if args.quick else 5)
    set_threads(args.threads)
    write_json(args.out, {"benchmark": "paint", "rows": rows, "thread_scaling": scaling})
    return rows


def compulsory_bytes(pos: np.ndarray, n: int, weighted: bool = False) -> float:
    """Positions (and weights) read once, the grid written once."""
    return pos.nbytes * (4 / 3 if weighted else 1) + n**3 * pos.itemsize


def thread_scaling(rng, num: int, n: int, mas, repeats: int) -> list[dict]:
    """Ours at 1, 2 and all cores (and Pylians, serial) on the same catalogue, interleaved so
    that a busy machine slows all alike; medians. Speedup is against ours at 1 thread."""
    counts = thread_counts()
    rows = []
    for kind in ("uniform", "clustered"):
        pos = catalogue(kind, num, rng)
        pos_t = torch.from_numpy(pos)
        shifted = np.mod(pos - np.float32(0.5 * BOX / n), BOX).astype(np.float32)
        for scheme in ("ngp", "cic", "tsc"):
            times = {c: [] for c in counts}
            times["pylians"] = []
            for _ in range(repeats):
                for c in counts:
                    torch.set_num_threads(c)
                    t0 = time.perf_counter()
                    ops.paint(pos_t, n, BOX, scheme=scheme)
                    times[c].append(time.perf_counter() - t0)
                if mas is not None:
                    grid = np.zeros((n, n, n), dtype=np.float32)
                    t0 = time.perf_counter()
                    mas.MA(shifted, grid, BOX, scheme.upper(), verbose=False)
                    times["pylians"].append(time.perf_counter() - t0)
            t_py = statistics.median(times["pylians"]) if times["pylians"] else None
            t_one = statistics.median(times[1])
            for c in counts:
                torch.set_num_threads(c)
                t = statistics.median(times[c])
                rows.append({"catalogue": kind, "N": f"2^{num.bit_length() - 1}",
                             "grid": f"{n}^3", "scheme": scheme, "threads": c, "ms": 1e3 * t,
                             "speedup vs 1 thread": t_one / t,
                             "x pylians": t_py / t if t_py else None,
                             **roofline(compulsory_bytes(pos, n), t)})
    print("thread scaling (ours; Pylians is serial)")
    print_table(rows, ["catalogue", "N", "grid", "scheme", "threads", "ms",
                       "speedup vs 1 thread", "x pylians", "GB/s", "of_copy"])
    print()
    return rows


if __name__ == "__main__":
    main()
