"""Painting benchmark: lsscore's paint against what a user would otherwise use, on uniform and
clustered ("cosmic web") catalogues, NGP, CIC and TSC.

Baselines, on the same positions in one process: np.bincount on linear cell indices and
numpy.histogramdd (NGP), NumPy CIC by 8 np.add.at, torch index_put_(accumulate=True) and
scatter_add_ (NGP) and 8 index_put_ (CIC) on the device, and Pylians' MAS_library.MA when
installed (bench only; its grid points sit at i h, so positions are shifted by -h/2 to paint
the same grid). Reference: the plain-torch NGP and CIC. Columns: medians, Mparticles/s,
ratios, the peak extra memory of each call and, for ours, a roofline (positions read once,
the grid written once, over the time, as a fraction of the measured copy bandwidth). On the
CPU a second table scales ours (and Pylians) over 1, 2 and all cores on the largest
catalogues. Writes bench/results_paint.json.

    python bench/bm_paint.py [--device cpu|cuda] [--quick] [--threads 2]
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register  # noqa: E402

from lsswgan_core import ops  # noqa: E402

BOX = 1000.0


@functools.lru_cache(maxsize=1)
def catalogue(kind: str, num: int) -> np.ndarray:
    """num float32 positions in [0, BOX)^3, the same for the same (kind, num)."""
    rng = np.random.default_rng([num, kind == "clustered"])
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
    """CIC by 8 np.add.at, cell centres at (i + 1/2) h."""
    u = pos.astype(np.float64) * (n / BOX) - 0.5
    i0 = np.floor(u)
    f = u - i0
    i0 = i0.astype(np.int64) % n
    grid = np.zeros((n, n, n))
    for corner in range(8):
        d = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = (i0 + d) % n
        np.add.at(grid, (idx[:, 0], idx[:, 1], idx[:, 2]), np.where(d, f, 1 - f).prod(axis=1))
    return grid


def torch_ngp(pos, n, scatter=False):
    """NGP in plain torch: index_put_(accumulate=True), or scatter_add_, on linear indices."""
    idx = torch.floor(pos.double() * (n / BOX)).long().clamp_(0, n - 1)
    lin = (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]
    grid = torch.zeros(n**3, dtype=pos.dtype, device=pos.device)
    ones = torch.ones(len(lin), dtype=pos.dtype, device=pos.device)
    if scatter:
        grid.scatter_add_(0, lin, ones)
    else:
        grid.index_put_((lin,), ones, accumulate=True)
    return grid.view(n, n, n)


def torch_cic(pos, n):
    """CIC in plain torch: eight index_put_(accumulate=True), cell centres at (i + 1/2) h."""
    u = pos.double() * (n / BOX) - 0.5
    i0 = torch.floor(u)
    f = (u - i0).to(pos.dtype)
    i0 = i0.long() % n
    grid = torch.zeros(n**3, dtype=pos.dtype, device=pos.device)
    for corner in range(8):
        d = torch.tensor([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1], device=pos.device)
        idx = (i0 + d) % n
        w = torch.where(d.bool(), f, 1 - f).prod(dim=1)
        grid.index_put_(((idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2],), w, accumulate=True)
    return grid.view(n, n, n)


def pylians():
    try:
        import MAS_library  # noqa: PLC0415

        return MAS_library
    except ImportError:
        return None


def compulsory_bytes(pos: np.ndarray, n: int) -> float:
    """Positions read once, the grid written once."""
    return pos.nbytes + n**3 * pos.itemsize


@register("paint")
def entries(opts):
    sizes = [2**16, 2**18] if opts.quick else [2**18, 2**21, 2**24]
    grids = [32, 64] if opts.quick else [64, 256]
    mas = pylians()
    if mas is None:
        print("Pylians not installed (pip install pylians): its column is skipped")

    def setup(kind, num, n, device):
        pos = catalogue(kind, num)
        # ours(x) == Pylians(x - h/2): its grid points sit at i h, ours at (i + 1/2) h
        shifted = np.mod(pos - np.float32(0.5 * BOX / n), BOX).astype(np.float32) if mas else None
        return {"pos": pos, "t": torch.from_numpy(pos).to(device), "n": n, "shifted": shifted}

    def pylians_ma(scheme):
        def call(x):
            grid = np.zeros((x["n"],) * 3, dtype=np.float32)
            mas.MA(x["shifted"], grid, BOX, scheme, verbose=False)
            return grid
        return [Impl(f"pylians {scheme}", call, host=True, scale=True)] if mas else []

    for kind in ("uniform", "clustered"):
        for num in sizes:
            big = num >= 2**24
            for n in grids:
                baselines = {
                    "ngp": [Impl("np.bincount", lambda x: np_bincount_ngp(x["pos"], x["n"]),
                                 host=True),
                            Impl("np.histogramdd", lambda x: np_histogramdd(x["pos"], x["n"]),
                                 host=True, slow=True),
                            Impl("torch index_put_", lambda x: torch_ngp(x["t"], x["n"])),
                            Impl("torch scatter_add_",
                                 lambda x: torch_ngp(x["t"], x["n"], scatter=True)),
                            *pylians_ma("NGP")],
                    "cic": [Impl("numpy 8x add.at", lambda x: np_cic(x["pos"], x["n"]),
                                 host=True, slow=True),
                            Impl("torch 8x index_put_", lambda x: torch_cic(x["t"], x["n"])),
                            *pylians_ma("CIC")],
                    "tsc": pylians_ma("TSC"),
                }
                reference = {"ngp": lambda x: torch_ngp(x["t"], x["n"]),
                             "cic": lambda x: torch_cic(x["t"], x["n"]), "tsc": None}
                for scheme, impls in baselines.items():
                    yield Entry(
                        case={"catalogue": kind, "N": f"2^{num.bit_length() - 1}",
                              "grid": f"{n}^3", "scheme": scheme},
                        setup=functools.partial(setup, kind, num, n),
                        ours=lambda x, s=scheme: ops.paint(x["t"], x["n"], BOX, scheme=s),
                        baselines=impls, reference=reference[scheme],
                        bytes=lambda x: compulsory_bytes(x["pos"], x["n"]),
                        throughput=("Mpart/s", num / 1e6), memory=True,
                        scale_threads=num == sizes[-1] and n == grids[-1],
                        repeats=3 if big else None,
                        warmup=0 if big and not opts.cuda else None)


if __name__ == "__main__":
    main("paint", doc=__doc__)
