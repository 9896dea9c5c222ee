"""Painting benchmark: lsscore's paint on what users paint, N-body snapshots, and on synthetic
catalogues, NGP, CIC and TSC, against what a user would otherwise use.

Catalogues (2^24 particles -> 256^3 cells; --quick: 2^18 -> 64^3): `lsscore simulate` runs
(256^3 particles, z = 0, in a 256 and a 1000 Mpc/h box; the simulation of `lsscore simulate
--seed 0`, cached as float32 positions under --cache), each in file order (the order of the
initial lattice, as the snapshot stores them), in a random permutation (a snapshot shuffled by
domain decomposition) and sorted along a Morton curve (at 1024 cells per side); and uniform
and filament ("clustered") catalogues in a 1000 Mpc/h box.

Each row, side by side in one process, interleaved: ours at --threads (2) and at 1 thread;
with --previous REV, lsscore's CPU kernel as of git revision REV (its csrc/cpu/paint.cpp and
csrc/common/ built on their own, with this build's flags) at the same thread counts; for CIC and
TSC ours with each strategy forced (LSSCORE_PAINT_STRATEGY=direct, buckets), which shows what
the probe chose; Pylians' MAS_library.MA (serial; when installed, bench only; its grid points
sit at i h, so positions are shifted by -h/2 to paint the same grid); np.bincount, torch
index_put_ and scatter_add_ on linear cell indices (NGP), torch 8x index_put_ (CIC), and on the
synthetic catalogues numpy.histogramdd (NGP) and NumPy 8x np.add.at (CIC). Reference: the
previous kernel where given (rel_diff 0 is bit for bit), else the plain-torch NGP and CIC.
Columns: medians, Mparticles/s, ratios, the peak extra memory of each call and, for ours, a
roofline (positions read once, the grid written once, over the time, as a fraction of the
measured copy bandwidth). A summary table per catalogue and scheme ends the run. Writes
bench/results_paint.json.

    python bench/bm_paint.py [--quick] [--threads 2] [--previous REV] [--catalogues NAME ...]
                             [--lean] [--cache DIR] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register  # noqa: E402

from lsswgan_core import ops  # noqa: E402

HERE = Path(__file__).resolve().parent
BOX = 1000.0
STRATEGY_ENV = "LSSCORE_PAINT_STRATEGY"
ORDERS = {"ngp": 1, "cic": 2, "tsc": 3}

# set from the command line (bench/run.py takes the defaults)
SETTINGS = {"previous": None, "catalogues": None, "lean": False,
            "cache": Path(tempfile.gettempdir()) / "lsscore-bench-nbody"}


# ---------------------------------------------------------------------------- catalogues


def synthetic(kind: str, num: int) -> np.ndarray:
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


def simulated(particles: int, box: float) -> np.ndarray:
    """The z = 0 float32 positions, in file order, of the first simulation of `lsscore simulate
    --particles P --box-size L --seed 0` (10 PM steps, mesh factor 2); cached under --cache
    (a 256^3 run takes several minutes and about 6 GiB)."""
    from lsswgan_core.sim.simulate import run_simulation  # noqa: PLC0415

    cache = Path(SETTINGS["cache"])
    path = cache / f"simulate_p{particles}_L{box:g}_seed0.npy"
    if path.exists():
        return np.load(path)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"simulating {particles}^3 particles in {box:g} Mpc/h (cached as {path})", flush=True)
    seed = int(np.random.SeedSequence([0, 0]).generate_state(1)[0])  # write_suite's sim 0
    pos = run_simulation(particles, box, seed, pm_steps=10).positions.astype(np.float32)
    tmp = path.with_name(path.name + f".{os.getpid()}.npy")
    np.save(tmp, pos)
    tmp.replace(path)
    return pos


def morton_order(pos: np.ndarray, box: float, bits: int = 10) -> np.ndarray:
    """The permutation that sorts positions along a Morton (Z-order) curve on 2^bits cells per
    side."""
    cells = np.clip((pos.astype(np.float64) * (2**bits / box)).astype(np.int64), 0, 2**bits - 1)
    key = np.zeros(len(pos), dtype=np.int64)
    for bit in range(bits):
        for d in range(3):
            key |= ((cells[:, d] >> bit) & 1) << (3 * bit + (2 - d))
    return np.argsort(key, kind="stable")


@functools.lru_cache(maxsize=1)
def catalogue(name: str, quick: bool) -> tuple[np.ndarray, float]:
    """(positions, box size) of a named catalogue: 'uniform', 'clustered' or
    'nbody L<box> <order>' with order 'file', 'shuffled' or 'morton'."""
    if name in ("uniform", "clustered"):
        return synthetic(name, 2**18 if quick else 2**24), BOX
    _, box, order = name.split()
    box = float(box[1:])
    pos = simulated(64 if quick else 256, box)
    if order == "shuffled":
        pos = pos[np.random.default_rng(1).permutation(len(pos))]
    elif order == "morton":
        pos = pos[morton_order(pos, box)]
    return np.ascontiguousarray(pos), box


CATALOGUES = ("nbody L1000 file", "nbody L1000 shuffled", "nbody L1000 morton",
              "nbody L256 file", "nbody L256 shuffled", "nbody L256 morton",
              "uniform", "clustered")


# ---------------------------------------------------------------------------- the previous kernel


@functools.lru_cache(maxsize=None)
def previous_kernel(rev: str):
    """lsscore's CPU paint as of git revision `rev`: its csrc/cpu/paint.cpp and csrc/common/,
    with the op registration replaced by a pybind11 function, built as a module of its own
    (name and build directory by commit) with the flags of CMakeLists.txt, so that both
    kernels run in one process. Returns the module: paint(positions, weights, n, box_size,
    order) and paint_into(grid, positions, weights, box_size, order)."""
    from torch.utils import cpp_extension  # noqa: PLC0415

    def git(*args) -> bytes:
        return subprocess.run(["git", "-C", str(HERE.parent), *args], check=True,
                              capture_output=True).stdout

    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    src = Path(tempfile.gettempdir()) / f"lsscore-paint-{sha[:12]}"
    for path in git("ls-tree", "-r", "--name-only", sha, "csrc/common/").decode().split():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(git("show", f"{sha}:{path}"))
    text = git("show", f"{sha}:csrc/cpu/paint.cpp").decode()
    text = text[:text.index("TORCH_LIBRARY_IMPL(lsscore, CPU")] + (
        "#include <torch/extension.h>\n"
        "PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n"
        "  m.def(\"paint\", &lss::paint_cpu);\n"
        "  m.def(\"paint_into\", &lss::paint_into_cpu);\n"
        "}\n")
    cpp = src / "csrc" / "cpu" / "paint_previous.cpp"
    cpp.parent.mkdir(parents=True, exist_ok=True)
    if not cpp.exists() or cpp.read_text() != text:
        cpp.write_text(text)
    print(f"building the paint kernel of {rev} ({sha[:12]}) in {src}", flush=True)
    module = cpp_extension.load(f"lsscore_paint_{sha[:12]}", [str(cpp)], build_directory=str(src),
                                extra_cflags=["-O3", "-DNDEBUG", "-fopenmp", "-std=gnu++20"],
                                extra_ldflags=["-fopenmp"])
    return module


# ---------------------------------------------------------------------------- baselines


def np_bincount_ngp(pos, n, box):
    idx = np.floor(pos.astype(np.float64) * (n / box)).astype(np.int64)
    np.clip(idx, 0, n - 1, out=idx)
    lin = (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]
    return np.bincount(lin, minlength=n**3).reshape(n, n, n)


def np_histogramdd(pos, n, box):
    return np.histogramdd(pos, bins=n, range=[(0, box)] * 3)[0]


def np_cic(pos, n, box):
    """CIC by 8 np.add.at, cell centres at (i + 1/2) h."""
    u = pos.astype(np.float64) * (n / box) - 0.5
    i0 = np.floor(u)
    f = u - i0
    i0 = i0.astype(np.int64) % n
    grid = np.zeros((n, n, n))
    for corner in range(8):
        d = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = (i0 + d) % n
        np.add.at(grid, (idx[:, 0], idx[:, 1], idx[:, 2]), np.where(d, f, 1 - f).prod(axis=1))
    return grid


def torch_ngp(pos, n, box, scatter=False):
    """NGP in plain torch: index_put_(accumulate=True), or scatter_add_, on linear indices."""
    idx = torch.floor(pos.double() * (n / box)).long().clamp_(0, n - 1)
    lin = (idx[:, 0] * n + idx[:, 1]) * n + idx[:, 2]
    grid = torch.zeros(n**3, dtype=pos.dtype, device=pos.device)
    ones = torch.ones(len(lin), dtype=pos.dtype, device=pos.device)
    if scatter:
        grid.scatter_add_(0, lin, ones)
    else:
        grid.index_put_((lin,), ones, accumulate=True)
    return grid.view(n, n, n)


def torch_cic(pos, n, box):
    """CIC in plain torch: eight index_put_(accumulate=True), cell centres at (i + 1/2) h."""
    u = pos.double() * (n / box) - 0.5
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


def at_threads(fn, threads: int):
    """fn with torch (and so paint) on `threads` threads, restored after."""
    def call(x):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn(x)
        finally:
            torch.set_num_threads(before)
    return call


def with_strategy(fn, strategy: str):
    """fn with paint's CIC/TSC strategy forced (LSSCORE_PAINT_STRATEGY), restored after."""
    def call(x):
        before = os.environ.get(STRATEGY_ENV)
        os.environ[STRATEGY_ENV] = strategy
        try:
            return fn(x)
        finally:
            if before is None:
                del os.environ[STRATEGY_ENV]
            else:
                os.environ[STRATEGY_ENV] = before
    return call


# ---------------------------------------------------------------------------- entries


@register("paint", derive=lambda rows: summary(rows))
def entries(opts):
    n = 64 if opts.quick else 256
    names = SETTINGS["catalogues"] or CATALOGUES
    mas = pylians()
    if mas is None:
        print("Pylians not installed (pip install pylians): its column is skipped")
    previous = previous_kernel(SETTINGS["previous"]) if SETTINGS["previous"] else None
    cpu = not opts.cuda

    def setup(name, device):
        pos, box = catalogue(name, opts.quick)
        # ours(x) == Pylians(x - h/2): its grid points sit at i h, ours at (i + 1/2) h
        shifted = np.mod(pos - np.float32(0.5 * box / n), box).astype(np.float32) if mas else None
        return {"pos": pos, "t": torch.from_numpy(pos).to(device), "n": n, "box": box,
                "shifted": shifted}

    def pylians_ma(scheme):
        def call(x):
            grid = np.zeros((x["n"],) * 3, dtype=np.float32)
            mas.MA(x["shifted"], grid, x["box"], scheme.upper(), verbose=False)
            return grid
        return [Impl(f"pylians {scheme}", call, host=True)] if mas else []

    for name in names:
        synth = name in ("uniform", "clustered")
        for scheme, order in ORDERS.items():
            def ours(x, s=scheme):
                return ops.paint(x["t"], x["n"], x["box"], scheme=s)

            impls = [Impl("ours 1 thread", at_threads(ours, 1))] if cpu else []
            if cpu and scheme != "ngp":
                impls += [Impl(f"ours {s}", with_strategy(ours, s)) for s in ("direct", "buckets")]
            if previous is not None and cpu:
                def prev(x, o=order):
                    return previous.paint(x["t"], None, x["n"], x["box"], o)
                impls += [Impl("previous", prev), Impl("previous 1 thread", at_threads(prev, 1))]
            impls += pylians_ma(scheme)
            if SETTINGS["lean"]:  # ours, the previous kernel and Pylians only
                pass
            elif scheme == "ngp":
                impls += [Impl("np.bincount", lambda x: np_bincount_ngp(x["pos"], x["n"], x["box"]),
                               host=True),
                          Impl("torch index_put_", lambda x: torch_ngp(x["t"], x["n"], x["box"])),
                          Impl("torch scatter_add_",
                               lambda x: torch_ngp(x["t"], x["n"], x["box"], scatter=True))]
                if synth:
                    impls.append(Impl("np.histogramdd",
                                      lambda x: np_histogramdd(x["pos"], x["n"], x["box"]),
                                      host=True, slow=True))
            elif scheme == "cic":
                impls.append(Impl("torch 8x index_put_",
                                  lambda x: torch_cic(x["t"], x["n"], x["box"])))
                if synth:
                    impls.append(Impl("numpy 8x add.at",
                                      lambda x: np_cic(x["pos"], x["n"], x["box"]),
                                      host=True, slow=True))
            if previous is not None and cpu:
                reference = prev
            else:
                reference = {"ngp": lambda x: torch_ngp(x["t"], x["n"], x["box"]),
                             "cic": lambda x: torch_cic(x["t"], x["n"], x["box"]),
                             "tsc": None}[scheme]
            num = 2**18 if opts.quick else 2**24
            yield Entry(
                case={"catalogue": name, "N": f"2^{num.bit_length() - 1}", "grid": f"{n}^3",
                      "scheme": scheme},
                setup=functools.partial(setup, name),
                ours=ours, baselines=impls, reference=reference,
                bytes=lambda x: compulsory_bytes(x["pos"], x["n"]),
                throughput=("Mpart/s", num / 1e6), memory=synth,
                repeats=None if opts.quick else 3, warmup=None if opts.quick else 1)


def summary(rows: list[dict]) -> list[dict]:
    """One line per catalogue and scheme: ours (ms, ns per particle) at both thread counts,
    1 -> 2 threads, how many times faster than the previous kernel, Pylians and the fastest
    NumPy/torch baseline, the forced strategies, and the roofline."""
    out = []
    keys = list(dict.fromkeys((r["catalogue"], r["scheme"]) for r in rows))
    for cat, scheme in keys:
        block = {r["impl"]: r for r in rows if (r["catalogue"], r["scheme"]) == (cat, scheme)}
        ours = block["ours"]
        num = 2 ** int(ours["N"][2:])
        line = {"catalogue": cat, "scheme": scheme, "ours ms": ours["ms"],
                "ns/particle": 1e6 * ours["ms"] / num}
        if "ours 1 thread" in block:
            one = block["ours 1 thread"]["ms"]
            line.update({"1 thread ms": one, "1->2 threads": one / ours["ms"]})
        if "previous" in block:
            line["x previous"] = block["previous"]["ours x faster"]
            line["x previous 1 thread"] = (block["previous 1 thread"]["ms"]
                                           / block["ours 1 thread"]["ms"])
        pyl = [r for k, r in block.items() if k.startswith("pylians")]
        if pyl:
            line["x pylians"] = pyl[0]["ours x faster"]
        others = [r["ours x faster"] for k, r in block.items()
                  if k.startswith(("np", "numpy", "torch"))]
        if others:
            line["x best numpy/torch"] = min(others)
        for s in ("direct", "buckets"):
            if f"ours {s}" in block:
                line[f"{s} ms"] = block[f"ours {s}"]["ms"]
        if "of_copy" in ours:
            line["roofline"] = ours["of_copy"]
        out.append(line)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--previous", default=None,
                        help="git revision whose CPU paint kernel runs beside ours")
    parser.add_argument("--catalogues", nargs="+", choices=CATALOGUES, default=None)
    parser.add_argument("--lean", action="store_true",
                        help="leave out the NumPy and torch baselines (10-60x slower, minutes)")
    parser.add_argument("--cache", type=Path, default=SETTINGS["cache"],
                        help="where the simulated catalogues are kept")
    known, rest = parser.parse_known_args()
    SETTINGS.update(previous=known.previous, catalogues=known.catalogues, cache=known.cache,
                    lean=known.lean)
    main("paint", argv=rest, doc=__doc__)
