"""Preprocess throughput and memory: a simulated 128^3-particle snapshot and a 512^3-particle
one (a synthetic clustered catalogue, written as an 8-file Gadget-2 snapshot) painted onto 256^3
by `lsscore preprocess` in a child process; prints wall time, particles/s and the child's peak
RSS. Peak RSS should stay near the grid plus a few chunks, whatever the particle count.

Through the registry (one entry per snapshot, timed once); not in `bench/run.py`'s default set
(`--only preprocess` adds it).

    python bench/bm_preprocess.py [--quick]
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, main, register  # noqa: E402

from lsswgan_core.io import write_gadget  # noqa: E402
from lsswgan_core.sim.simulate import write_suite  # noqa: E402

GRID, BOX = 256, 500.0


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
_WRAP = ("import resource, subprocess, sys; "
         "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
         "stderr=subprocess.DEVNULL); "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def run_preprocess(x: dict) -> None:
    """`lsscore preprocess` of x["inputs"] in a child process; its peak RSS into x."""
    cmd = [sys.executable, "-m", "lsscore", "preprocess", *map(str, x["inputs"]), "--out",
           str(x["out"]), "--grid", str(GRID), "--cube", "32", "--cubes-per-box", "16",
           "--length-unit", "Mpc/h"]
    res = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True,
                         text=True)
    x["peak_rss_mib"] = int(res.stdout.split()[-1]) / 1024


@register("preprocess", in_all=False)
def entries(opts):
    """Preprocessing runs on the CPU whatever --device; no baseline (the figure of merit is
    the peak RSS, which stays near the grid plus a few chunks whatever the particle count)."""
    work = Path(tempfile.mkdtemp(prefix="lss-bm-pre-"))
    small, large = (32, 64) if opts.quick else (128, 512)

    def simulated(device):
        sim = write_suite(work / "sim", 1, small, BOX, seed=0, pm_steps=10,
                          show_progress=False)[0]
        return {"inputs": [sim], "out": work / "simulated.h5"}

    def synthetic(device):
        return {"inputs": [synthetic_snapshot(work / "big" / "snapshot_000", large, BOX)],
                "out": work / "synthetic.h5"}

    try:
        for name, setup, count in ((f"simulated {small}^3", simulated, small**3),
                                   (f"synthetic {large}^3 (8 files)", synthetic, large**3)):
            yield Entry(case={"snapshot": name, "grid": f"{GRID}^3", "particles": count},
                        setup=setup, ours=run_preprocess,
                        throughput=("Mparticles/s", count / 1e6),
                        extra=lambda x: {"peak RSS MiB": x["peak_rss_mib"]}, repeats=1, warmup=0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("(the time and peak RSS include the child's Python interpreter and torch; the time "
          "includes start-up and the HDF5 write)")


if __name__ == "__main__":
    main("preprocess", doc=__doc__)
