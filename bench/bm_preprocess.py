"""Preprocess throughput and memory, and what bounds it: simulated snapshots (a 128^3-particle
`lsscore simulate` suite member and, from bm_paint's cache, the 256^3-particle 1000 Mpc/h run,
each a 2-file Gadget-2 snapshot as `lsscore simulate` writes it) and a 512^3-particle synthetic
clustered one (8 files), painted onto 256^3 (NGP, the default) and cut into 16 cubes.

Per snapshot, each in a child process of its own: `lsscore preprocess` (wall time with the
interpreter's start-up and the HDF5 write, peak RSS); and timed inside the child, without the
start-up: the snapshot read alone (the reader's chunks, as preprocess takes them), read + paint
(painted chunk by chunk with out=, as preprocess does), and the whole preprocess as a library
call (read + paint + cut + transform + write). Particles/s of each, and the read's share of the
whole, say which part bounds it. The files were just written, so reads come from the page cache.

Through the registry (one entry per snapshot, timed once); not in `bench/run.py`'s default set
(`--only preprocess` adds it).

    python bench/bm_preprocess.py [--quick]
"""
from __future__ import annotations

import json
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

GRID, BOX, CUBES = 256, 500.0, 16


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

# One stage, timed inside a child process: argv = stage, out, grid, inputs...
_STAGE = r"""
import json, sys, time
import numpy as np
from lsswgan_core.config import DataConfig
from lsswgan_core.data.preprocess import preprocess
from lsswgan_core.io import open_snapshot
from lsswgan_core.ops import paint
stage, out, grid, *inputs = sys.argv[1:]
cfg = DataConfig(grid=int(grid), cube=32, cubes_per_box=%d, length_unit="Mpc/h")
t0 = time.perf_counter()
if stage == "preprocess":
    preprocess(inputs, out, cfg, show_progress=False)
else:
    mesh = np.zeros((cfg.grid,) * 3, dtype=np.float32)
    for path in inputs:
        snap = open_snapshot(path, length_unit=cfg.length_unit)
        for block in snap.iter_positions(ptype=cfg.ptype, chunk=cfg.chunk):
            block = np.ascontiguousarray(block, dtype=np.float32)
            if stage == "read + paint":
                paint(block, cfg.grid, snap.box_size, scheme=cfg.scheme, out=mesh)
print(json.dumps({"seconds": time.perf_counter() - t0}))
""" % CUBES

STAGES = ("read", "read + paint", "preprocess")


def _clear(out: Path) -> None:
    for p in out.parent.glob(out.name + "*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def run_preprocess(x: dict) -> None:
    """`lsscore preprocess` of x["inputs"] in a child process; its peak RSS into x."""
    _clear(x["out"])
    cmd = [sys.executable, "-m", "lsscore", "preprocess", *map(str, x["inputs"]), "--out",
           str(x["out"]), "--grid", str(GRID), "--cube", "32", "--cubes-per-box", str(CUBES),
           "--length-unit", "Mpc/h"]
    res = subprocess.run([sys.executable, "-c", _WRAP, *cmd], check=True, capture_output=True,
                         text=True)
    x["peak_rss_mib"] = int(res.stdout.split()[-1]) / 1024


def stage_seconds(x: dict, stage: str) -> float:
    """One stage's seconds, timed inside a child process."""
    out = x["out"].with_name("stage.h5")
    _clear(out)
    res = subprocess.run([sys.executable, "-c", _STAGE, stage, str(out), str(GRID),
                          *map(str, x["inputs"])], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])["seconds"]


def stages(x: dict, count: int) -> dict:
    """Particles/s of each stage, and the read's share of the whole preprocess."""
    cols = {"peak RSS MiB": x["peak_rss_mib"]}
    seconds = {s: stage_seconds(x, s) for s in STAGES}
    for s in STAGES:
        cols[f"{s} s"] = seconds[s]
        cols[f"{s} Mpart/s"] = count / seconds[s] / 1e6
    cols["read share"] = seconds["read"] / seconds["preprocess"]
    cols["paint share"] = (seconds["read + paint"] - seconds["read"]) / seconds["preprocess"]
    return cols


def nbody_snapshot(base: Path, particles: int, box: float) -> Path:
    """bm_paint's cached `lsscore simulate` run (simulated there if not cached), written as
    `lsscore simulate` writes it: 2 Gadget-2 files."""
    from bm_paint import simulated  # noqa: PLC0415

    base.parent.mkdir(parents=True, exist_ok=True)
    write_gadget(base, simulated(particles, box), box, num_files=2)
    return base


@register("preprocess", in_all=False)
def entries(opts):
    """Preprocessing runs on the CPU whatever --device; no baseline: the read alone is the
    yardstick."""
    work = Path(tempfile.mkdtemp(prefix="lss-bm-pre-"))
    small, nbody, large = (32, 64, 64) if opts.quick else (128, 256, 512)

    def simulated_small(device):
        sim = write_suite(work / "sim", 1, small, BOX, seed=0, pm_steps=10,
                          show_progress=False)[0]
        return {"inputs": [sim], "out": work / "simulated.h5"}

    def simulated_nbody(device):
        return {"inputs": [nbody_snapshot(work / "nbody" / "snapshot_000", nbody, 1000.0)],
                "out": work / "nbody.h5"}

    def synthetic(device):
        return {"inputs": [synthetic_snapshot(work / "big" / "snapshot_000", large, BOX)],
                "out": work / "synthetic.h5"}

    try:
        for name, setup, count in (
                (f"simulated {small}^3, {BOX:g} Mpc/h", simulated_small, small**3),
                (f"simulated {nbody}^3, 1000 Mpc/h", simulated_nbody, nbody**3),
                (f"synthetic {large}^3 (8 files)", synthetic, large**3)):
            yield Entry(case={"snapshot": name, "grid": f"{GRID}^3", "particles": count},
                        setup=setup, ours=run_preprocess,
                        throughput=("Mparticles/s", count / 1e6),
                        extra=lambda x, c=count: stages(x, c), repeats=1, warmup=0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("(lsscore preprocess: the child's wall time, with its interpreter, torch and the HDF5 "
          "write, and its peak RSS; the stages are timed inside their children; reads from the "
          "page cache)")


if __name__ == "__main__":
    main("preprocess", doc=__doc__)
