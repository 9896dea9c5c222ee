"""Preprocess across ranks: `lsscore preprocess` at 1 and 2 ranks (torchrun, gloo) on two
suites, beside the disk's read bandwidth. Prints a markdown table and writes JSON.

- the demo suite: `lsscore simulate` with configs/demo.toml's [suite] (128^3 particles per
  simulation; --demo-sims of them), preprocessed with the demo's [data] section (64^3 cells);
- a suite of 256^3-particle snapshots: synthetic clustered catalogues (bench/bm_preprocess.py's
  `synthetic_snapshot`, 8-file Gadget-2 each; a PM simulation of 256^3 particles takes minutes
  per box on a few cores, and painting and reading do not care how the particles got there),
  painted on 256^3 cells.

Before every timed read the suite's files are dropped from the page cache
(posix_fadvise DONTNEED, which needs no privileges), so that each run reads from the disk as a
first read would ("cold-ish": a device's own cache, or a network file system's, may still
serve it). The disk's read bandwidth is one plain Python pass over the same files in 16 MiB
reads. Per run: wall time of the whole command (start-up, reading, painting, cutting, the rank
0 assembly), the assembly alone (rank 0 writing the final file from the partial directory,
timed by the runner below), particles/s and snapshot bytes/s over the wall time, and that rate
as a fraction of the disk's. With R ranks each rank gets cores / R threads.

    python bench/bm_scaleout.py [--ranks 1,2] [--demo-sims 8] [--big-sims 4] [--work DIR]
    python bench/bm_scaleout.py --quick        # a smoke test on tiny suites

--work should be on the disk to measure (default: a temporary directory).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _common import _fmt, write_json  # noqa: E402

# run by each rank: lsscore, with rank 0's assembly (preprocess._write) timed into a file
RUNNER = """
import importlib, json, os, sys, time
p = importlib.import_module("lsswgan_core.data.preprocess")
write = p._write
def timed(*args, **kwargs):
    t0 = time.perf_counter()
    write(*args, **kwargs)
    with open(os.environ["BM_SCALEOUT_TIMING"], "w") as f:
        json.dump({"assemble_s": time.perf_counter() - t0}, f)
p._write = timed
sys.argv[0] = "lsscore"
from lsscore.main import main
main()
"""


def suite_files(inputs: list[Path]) -> list[Path]:
    files = []
    for p in inputs:
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else \
            sorted(p.parent.glob(p.name + ".*"))
    return files


def drop_cache(files: list[Path]) -> None:
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)   # dirty pages (a suite just written) are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_bandwidth(files: list[Path]) -> float:
    """Bytes per second of one plain read of every file, after dropping them from the cache."""
    drop_cache(files)
    total, t0 = 0, time.perf_counter()
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while chunk := fh.read(16 << 20):
                total += len(chunk)
    return total / (time.perf_counter() - t0)


def run_preprocess(inputs, out: Path, args: list[str], ranks: int, threads: int) -> dict:
    """One `lsscore preprocess` at `ranks` ranks, cold; wall and assembly seconds."""
    timing = out.with_suffix(".timing.json")
    for p in (out, timing):
        p.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // ranks)),
           "BM_SCALEOUT_TIMING": str(timing)}
    runner = out.with_suffix(".runner.py")
    runner.write_text(RUNNER)
    launch = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
        str(ranks)]
    cmd = [*launch, str(runner), "preprocess", *map(str, inputs), "--out", str(out), *args]
    drop_cache(suite_files(inputs))
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-3000:]}")
    return {"wall_s": wall, "assemble_s": json.loads(timing.read_text())["assemble_s"]}


def demo_suite(root: Path, n_sims: int, quick: bool) -> tuple[list[Path], list[str], int]:
    from lsswgan_core.sim.simulate import write_suite  # noqa: PLC0415

    demo = tomllib.loads((ROOT / "configs" / "demo.toml").read_text())
    s = demo["suite"]
    particles = 16 if quick else s["particles"]
    if not root.exists():
        write_suite(root, n_sims, particles, s["box_size"], seed=0,
                    pm_steps=2 if quick else s["pm_steps"], mesh_factor=s["mesh_factor"],
                    show_progress=False)
    args = ["--config", str(ROOT / "configs" / "demo.toml"), "--length-unit", "Mpc/h"]
    if quick:
        args += ["--grid", "16", "--cube", "8", "--cubes-per-box", "4"]
    return sorted(root.glob("sim_*")), args, n_sims * particles**3


def big_suite(root: Path, n_sims: int, quick: bool) -> tuple[list[Path], list[str], int]:
    from bm_preprocess import synthetic_snapshot  # noqa: PLC0415

    side = 32 if quick else 256
    bases = [root / f"sim_{i:03d}" / "snapshot_000" for i in range(n_sims)]
    for i, base in enumerate(bases):
        if not Path(f"{base}.7").exists():
            synthetic_snapshot(base, side, 1000.0, files=8, seed=i)
    grid = 32 if quick else 256
    args = ["--grid", str(grid), "--cube", "16" if quick else "32", "--cubes-per-box", "16",
            "--length-unit", "Mpc/h", "--split-fractions", "0.5,0.25,0.25"]
    return bases, args, n_sims * side**3


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (1,2)")
    parser.add_argument("--demo-sims", type=int, default=8)
    parser.add_argument("--big-sims", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None,
                        help="where the suites and outputs go (on the disk to measure)")
    parser.add_argument("--keep", action="store_true", help="keep the suites in --work")
    parser.add_argument("--quick", action="store_true", help="tiny suites: a smoke test")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "scaleout.json")
    opts = parser.parse_args(argv)
    ranks = [int(r) for r in opts.ranks.split(",")]
    threads = os.cpu_count() or 1
    work = opts.work or Path(tempfile.mkdtemp(prefix="lss-bm-scaleout-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for name, make, n_sims in (("demo (128^3 particles)", demo_suite, opts.demo_sims),
                                   ("256^3 particles", big_suite, opts.big_sims)):
            if opts.quick:
                name = name.replace("128^3", "16^3").replace("256^3", "32^3")
            inputs, args, particles = make(work / name.split()[0], n_sims, opts.quick)
            files = suite_files(inputs)
            size = sum(f.stat().st_size for f in files)
            disk = read_bandwidth(files)
            rows.append({"suite": name, "sims": n_sims, "GB": size / 1e9, "ranks": "disk read",
                         "wall_s": size / disk, "assemble_s": None, "Mparticles/s": None,
                         "MB/s read": disk / 1e6, "of disk": 1.0})
            for r in ranks:
                t = run_preprocess(inputs, work / f"{name.split()[0]}_{r}.h5", args, r, threads)
                rows.append({"suite": name, "sims": n_sims, "GB": size / 1e9, "ranks": r,
                             "wall_s": t["wall_s"], "assemble_s": t["assemble_s"],
                             "Mparticles/s": particles / t["wall_s"] / 1e6,
                             "MB/s read": size / t["wall_s"] / 1e6,
                             "of disk": size / t["wall_s"] / disk})
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)
    cols = list(rows[0])
    print(f"\npreprocess at 1..{max(ranks)} ranks on {threads} CPU threads (cold-ish reads)\n")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("---" for _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    write_json(opts.json, {"rows": rows, "threads": threads, "quick": opts.quick})
    return {"rows": rows}




if __name__ == "__main__":
    main()
