"""The benchmark registry and its one timer.

Each bench/bm_<op>.py declares its entries for one registry (the model of torch-harmonics'
benchmarks): an `Entry` names a case, a `setup(device)` that makes the inputs on the device,
`ours` (the lsswgan_core call), the baselines a user would otherwise write (`Impl`s: NumPy,
SciPy, Pylians, plain torch) and, where one exists, a `reference` whose numbers ours must
reproduce (its relative L1 difference is the `rel_diff` column). `run` times every
implementation of an entry side by side in this process, interleaved so that a busy machine
slows all alike, with the one `Timer`: CUDA events after a synchronise on a GPU,
time.perf_counter on the CPU; medians over repeats after warm-up. `ours x faster` is a
baseline's median over ours. Baselines that run on the host (NumPy, SciPy, Pylians) are left
out on --device cuda unless --host-baselines is given.

    python bench/bm_<op>.py [--device cpu|cuda] [--quick] [--threads 2] [--out FILE]
    python bench/run.py     [--device cpu|cuda] [--quick] [--only OP ...]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------- the registry


@dataclass
class Impl:
    """One way of computing an entry: fn(inputs)."""
    name: str
    fn: Callable[[Any], Any]
    host: bool = False    # NumPy, SciPy or Pylians: runs on the host whatever the device
    slow: bool = False    # a third of the repeats (at least one)
    scale: bool = False   # also timed at 1, 2 and all cores in the thread-scaling table


@dataclass
class Entry:
    """One case of one op: how to make its inputs, ours, the baselines, the reference."""
    case: dict                                    # the columns that name the case
    setup: Callable[[torch.device], Any]          # the inputs, on the device
    ours: Callable[[Any], Any]
    baselines: list[Impl] = field(default_factory=list)
    reference: Callable[[Any], Any] | None = None  # the same numbers by other means
    bytes: Callable[[Any], float] | None = None    # compulsory bytes moved: roofline columns
    throughput: tuple[str, float] | None = None    # (column, items per call / 1e6 or 1)
    extra: Callable[[Any], dict] | None = None     # more columns on ours' row
    memory: bool = False                           # the peak extra memory of each impl
    scale_threads: bool = False                    # a thread-scaling table (CPU only)
    repeats: int | None = None
    warmup: int | None = None


@dataclass
class Benchmark:
    name: str
    entries: Callable[["Options"], Iterable[Entry]]
    derive: Callable[[list[dict]], list[dict]] | None = None   # ratios across entries
    in_all: bool = True                                         # run.py runs it by default


REGISTRY: dict[str, Benchmark] = {}


def register(name: str, derive=None, in_all: bool = True):
    """Decorator for a bm module's `entries(opts)` generator."""
    def add(entries):
        REGISTRY[name] = Benchmark(name, entries, derive, in_all)
        return entries
    return add


@dataclass
class Options:
    device: torch.device
    quick: bool = False
    threads: int = 2
    repeats: int | None = None
    host_baselines: bool = False
    bf16: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def default_repeats(self) -> int:
        return self.repeats or (3 if self.quick else 20 if self.cuda else 5)

    def default_warmup(self) -> int:
        return 3 if self.cuda else 1


# ---------------------------------------------------------------------------- the one timer


class Timer:
    """Seconds of a call: CUDA events on a GPU (the device synchronised first, the end event
    waited for), time.perf_counter on the CPU."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def once(self, fn) -> float:
        if self.cuda:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            self.sync()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def medians(self, fns: dict, repeats, warmup: int = 1, before=None) -> dict:
        """{key: median seconds} of each fn, interleaved: every round calls each in turn, in a
        seeded order of its own.
        repeats: one count or {key: count}; before(key), if given, runs untimed before each
        call (e.g. to set the thread count)."""
        counts = {k: repeats[k] if isinstance(repeats, dict) else repeats for k in fns}
        for k, fn in fns.items():
            for _ in range(warmup):
                if before:
                    before(k)
                fn()
        self.sync()
        times: dict = {k: [] for k in fns}
        keys = list(fns)
        for r in range(max(counts.values(), default=0)):
            # each round in another order (seeded): a call that leaves the machine in a worse
            # state (a fragmented heap, a cold cache) does not always precede the same one
            order = keys[:] if r == 0 else random.Random(r).sample(keys, len(keys))
            for k in order:
                fn = fns[k]
                if r < counts[k]:
                    if before:
                        before(k)
                    times[k].append(self.once(fn))
        return {k: statistics.median(v) for k, v in times.items()}

    def median(self, fn, repeats: int = 5, warmup: int = 1) -> float:
        return self.medians({0: fn}, repeats, warmup)[0]


# ---------------------------------------------------------------------------- measurements


def set_threads(n: int = 2) -> None:
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def thread_counts() -> list[int]:
    """1, 2 and all cores of this machine (deduplicated, ascending)."""
    return sorted({1, 2, os.cpu_count() or 1})


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_extra_mib(fn, device: torch.device) -> float | None:
    """Peak memory above the current level while fn() runs, in MiB: allocated GPU memory on
    CUDA; resident memory on the CPU (Linux: VmHWM reset through /proc/self/clear_refs).
    None where that is not available."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0.0, (torch.cuda.max_memory_allocated(device) - base) / 2**20)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    base = _status_kib("VmRSS")
    fn()
    peak = _status_kib("VmHWM")
    if base is None or peak is None:
        return None
    return max(0.0, (peak - base) / 1024)


@functools.lru_cache(maxsize=None)
def copy_bandwidth(device: str = "cpu", threads: int = 0, mib: int = 256) -> float:
    """The measured copy bandwidth in bytes/s of `device` (at `threads` CPU threads, the
    current count when called through `roofline`): a float32 `copy_` of `mib` MiB, one read
    and one write per byte. The roofline's denominator."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    t = Timer(device).median(lambda: dst.copy_(src), repeats=5, warmup=1)
    return 2 * src.numel() * 4 / t


def roofline(bytes_moved: float, seconds: float, device: torch.device) -> dict:
    """Achieved bandwidth (compulsory bytes: inputs read once, outputs written once, over the
    time) and that as a fraction of the device's measured copy bandwidth."""
    achieved = bytes_moved / seconds
    copy = copy_bandwidth(str(device), torch.get_num_threads())
    return {"GB/s": achieved / 1e9, "of_copy": achieved / copy}


def _host(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def rel_diff(ours, reference) -> float:
    """|ours - reference|_1 / |reference|_1, in float64 on the host."""
    a, b = _host(ours), _host(reference)
    return float(np.abs(a - b).sum() / max(np.abs(b).sum(), 1e-300))


def with_backward(fn):
    """fn(x, ...) forward and backward from a fresh leaf copy of x, with a non-trivial
    upstream gradient (sum of squares): what a training step asks of it."""
    def run(x, *args, **kwargs):
        x = x.detach().clone().requires_grad_(True)
        fn(x, *args, **kwargs).square().sum().backward()
    return run


# ---------------------------------------------------------------------------- running


def _impls(entry: Entry, opts: Options) -> tuple[list[Impl], list[str]]:
    impls, skipped = [Impl("ours", entry.ours, scale=True)], []
    for b in entry.baselines:
        (skipped if b.host and opts.cuda and not opts.host_baselines else impls).append(b)
    return impls, [b.name for b in entry.baselines if b.name in skipped]


def run_entry(entry: Entry, opts: Options, timer: Timer) -> tuple[list[dict], list[dict]]:
    """(rows, thread-scaling rows) of one entry."""
    inputs = entry.setup(opts.device)
    impls, _ = _impls(entry, opts)
    calls = {i.name: functools.partial(i.fn, inputs) for i in impls}
    repeats = entry.repeats or opts.default_repeats()
    warmup = opts.default_warmup() if entry.warmup is None else entry.warmup
    t = timer.medians(calls, {i.name: max(1, repeats // 3) if i.slow else repeats
                              for i in impls}, warmup)
    rows = []
    for impl in impls:
        s = t[impl.name]
        row = {**entry.case, "impl": impl.name, "ms": 1e3 * s}
        if entry.throughput:
            row[entry.throughput[0]] = entry.throughput[1] / s
        row["ours x faster"] = s / t["ours"]
        if impl.name == "ours":
            if entry.reference is not None:
                row["rel_diff"] = rel_diff(impl.fn(inputs), entry.reference(inputs))
            if entry.bytes is not None:
                row.update(roofline(entry.bytes(inputs), s, opts.device))
            if entry.extra is not None:
                row.update(entry.extra(inputs))
        if entry.memory:
            row["peak MiB"] = peak_extra_mib(calls[impl.name], opts.device)
        rows.append(row)
    scaling = []
    if entry.scale_threads and not opts.cuda:
        scaling = thread_scaling(entry, [i for i in impls if i.scale], calls, inputs, opts,
                                 timer)
    return rows, scaling


def thread_scaling(entry, impls, calls, inputs, opts, timer) -> list[dict]:
    """The scaled impls at 1, 2 and all cores, interleaved; speedups against 1 thread."""
    counts = thread_counts()
    fns = {(i.name, c): calls[i.name] for i in impls for c in counts}
    t = timer.medians(fns, entry.repeats or opts.default_repeats(), 1,
                      before=lambda key: torch.set_num_threads(key[1]))
    rows = []
    for c in counts:
        torch.set_num_threads(c)
        for i in impls:
            s = t[(i.name, c)]
            row = {**entry.case, "threads": c, "impl": i.name, "ms": 1e3 * s,
                   "speedup vs 1 thread": t[(i.name, 1)] / s,
                   "ours x faster": s / t[("ours", c)]}
            if i.name == "ours" and entry.bytes is not None:
                row.update(roofline(entry.bytes(inputs), s, opts.device))
            rows.append(row)
    torch.set_num_threads(opts.threads)
    return rows


def run(bench: Benchmark, opts: Options) -> dict:
    """Every entry of one benchmark; prints a line per entry and the tables; the payload."""
    timer = Timer(opts.device)
    rows, scaling, skipped = [], [], set()
    for entry in bench.entries(opts):
        block, more = run_entry(entry, opts, timer)
        skipped.update(_impls(entry, opts)[1])
        rows += block
        scaling += more
        print(" ".join(str(v) for v in entry.case.values()) + ": " + ", ".join(
            f"{r['impl']} {r['ms']:.3g} ms" for r in block), flush=True)
    print()
    print_table(rows, columns(rows))
    if scaling:
        print("\nthread scaling")
        print_table(scaling, columns(scaling))
    derived = bench.derive(rows) if bench.derive else []
    if derived:
        print()
        print_table(derived, columns(derived))
    if skipped:
        print(f"host baselines left out on {opts.device} (--host-baselines runs them): "
              + ", ".join(sorted(skipped)))
    return {"benchmark": bench.name, "device": str(opts.device), "quick": opts.quick,
            "rows": rows, "thread_scaling": scaling, "derived": derived,
            "host_baselines_left_out": sorted(skipped)}


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per implementation (default: 3 quick, 5 CPU, 20 CUDA)")
    parser.add_argument("--host-baselines", action="store_true",
                        help="on --device cuda, also time the NumPy/SciPy/Pylians baselines")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in train_step")
    parser.add_argument("--out", type=Path, default=None, help="the JSON to write")


def options(args, prog: str) -> Options:
    """The run's options; on --device cuda without a usable GPU, a one-line exit."""
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"{prog}: --device cuda, but torch {torch.__version__} sees no GPU (its "
                     f"CUDA build: {torch.version.cuda}); use --device cpu or a GPU machine")
        import lsswgan_core  # noqa: PLC0415

        if not lsswgan_core.build_info()["cuda_kernels"]:
            sys.exit(f"{prog}: --device cuda, but lsswgan_core was built without its CUDA "
                     "kernels; rebuild with LSS_WITH_CUDA=ON (bench/gpu_check.py does)")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    set_threads(args.threads)
    return Options(device, args.quick, args.threads, args.repeats, args.host_baselines,
                   args.bf16)


def main(name: str, argv=None, doc: str | None = None) -> dict:
    """A bm script run alone: its benchmark on --device, JSON to bench/results_<name>.json."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    opts = options(args, Path(sys.argv[0]).name)
    payload = run(REGISTRY[name], opts)
    write_json(args.out or HERE / f"results_{name}.json", payload)
    return payload


# ---------------------------------------------------------------------------- output


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r))


def print_table(rows: list[dict], columns: list[str]) -> None:
    if not rows:
        return
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def write_json(path: Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    print(f"wrote {path}")
