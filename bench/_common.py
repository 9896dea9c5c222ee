"""Shared benchmark helpers: timing medians, peak-memory probes, table printing, JSON."""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def set_threads(n: int = 2) -> None:
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_extra_mib(fn) -> float | None:
    """Peak resident memory above the current level while fn() runs, in MiB (Linux: resets
    VmHWM through /proc/self/clear_refs). None where that is not available."""
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


def print_table(rows: list[dict], columns: list[str]) -> None:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")


_COPY_BANDWIDTH: dict[int, float] = {}


def copy_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """The machine's measured copy bandwidth in bytes/s at the current thread count: a
    `torch.Tensor.copy_` of `mib` MiB (float32), counting one read and one write per byte.
    Measured once per thread count per process; the roofline's denominator."""
    threads = torch.get_num_threads()
    if threads not in _COPY_BANDWIDTH:
        src = torch.ones(mib * 2**20 // 4)
        dst = torch.empty_like(src)
        t = median_time(lambda: dst.copy_(src), repeats=repeats, warmup=1)
        _COPY_BANDWIDTH[threads] = 2 * src.numel() * 4 / t
    return _COPY_BANDWIDTH[threads]


def roofline(bytes_moved: float, seconds: float) -> dict:
    """A kernel's achieved bandwidth (its compulsory bytes: inputs read once, outputs written
    once, over its wall time) and that as a fraction of the measured copy bandwidth."""
    achieved = bytes_moved / seconds
    return {"GB/s": achieved / 1e9, "of_copy": achieved / copy_bandwidth()}


def thread_counts() -> list[int]:
    """1, 2 and all cores of this machine (deduplicated, ascending)."""
    return sorted({1, 2, os.cpu_count() or 1})
