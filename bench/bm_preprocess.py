"""Preprocess throughput and memory: a simulated 128^3-particle snapshot and a 512^3-particle
one (a synthetic clustered catalogue, written as an 8-file Gadget-2 snapshot) painted onto 256^3
by `lsscore preprocess` in a child process; prints wall time, particles/s and the child's peak
RSS. Peak RSS should stay near the grid plus a few chunks, whatever the particle count.

    python bench/bm_preprocess.py [--quick] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from lsswgan_core.io import write_gadget  # noqa: E402
from lsswgan_core.sim.simulate import write_suite  # noqa: E402


def synthetic_snapshot(base: Path, side: int, box: float, files: int = 8, seed: int = 0):
    """side^3 particles, half in filament-like clumps, written file by file (never the whole
    catalogue in memory at once)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total = side**3
    per_file = np.linspace(0, total, files + 1).astype(np.int64)
    centres = rng.uniform(0, box, (2000, 3))
    paths = []
    for i in range(files):
        n = int(per_file[i + 1] - per_file[i])
        pos = rng.uniform(0, box, (n, 3)).astype(np.float32)
        half = n // 2
        pos[:half] = np.mod(centres[rng.integers(0, 2000, half)]
                            + rng.normal(0, box / 200, (half, 3)), box)
        # one file of a multi-file snapshot: write it with the right header, then rename
        (tmp,) = write_gadget(base.with_name(base.name + f".tmp{i}"), pos, box, num_files=1)
        raw = bytearray(tmp.read_bytes())
        # patch NumFiles (offset 4 + 124) and Nall (offset 4 + 96 + 4) for the whole snapshot
        raw[4 + 124:4 + 128] = np.array(files, "<i4").tobytes()
        raw[4 + 96 + 4:4 + 96 + 8] = np.array(total & 0xFFFFFFFF, "<u4").tobytes()
        raw[4 + 168 + 4:4 + 168 + 8] = np.array(total >> 32, "<u4").tobytes()
        target = Path(f"{base}.{i}")
        target.write_bytes(bytes(raw))
        tmp.unlink()
        paths.append(target)
    return base


# A wrapper process per run, so that RUSAGE_CHILDREN's high-water mark is that run's alone.
_WRAP = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
         "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
         "stderr=subprocess.DEVNULL); "
         "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run_preprocess(inputs, out: Path, grid: int) -> dict:
    cmd = [sys.executable, "-m", "lsscore", "preprocess", *map(str, inputs), "--out", str(out),
           "--grid", str(grid), "--cube", "32", "--cubes-per-box", "16", "--length-unit", "Mpc/h"]
    res = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True,
                         text=True)
    wall, peak_kib = res.stdout.split()
    return {"wall_s": float(wall), "peak_rss_mib": int(peak_kib) / 1024}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="64^3 and 256^3 particles")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).with_name("results_preprocess.json"))
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lss-bm-pre-"))
    work.mkdir(parents=True, exist_ok=True)
    small, large = (64, 256) if args.quick else (128, 512)
    grid, box = 256, 500.0
    rows = []
    sim = write_suite(work / "sim", 1, small, box, seed=0, pm_steps=10, show_progress=False)[0]
    big = synthetic_snapshot(work / "big" / "snapshot_000", large, box)
    for name, inputs, count in ((f"simulated {small}^3", [sim], small**3),
                                (f"synthetic {large}^3 (8 files)", [big], large**3)):
        res = run_preprocess(inputs, work / f"{name.split()[0]}.h5", grid)
        rows.append({"snapshot": name, "grid": f"{grid}^3", "particles": count,
                     "wall s": res["wall_s"], "Mparticles/s": count / res["wall_s"] / 1e6,
                     "peak RSS MiB": res["peak_rss_mib"]})
    print_table(rows, ["snapshot", "grid", "particles", "wall s", "Mparticles/s", "peak RSS MiB"])
    print("(peak RSS includes the Python interpreter, torch and the 64 MiB float32 grid; "
          "the wall time includes start-up and the HDF5 write)")
    write_json(args.out, {"benchmark": "preprocess", "rows": rows})
    return rows


if __name__ == "__main__":
    main()
