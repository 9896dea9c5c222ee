"""The long reliability suite (`make stress`; issue 13): what tests/test_reliability.py samples,
at length. Prints one summary line per check and exits non-zero when any check failed.

    full disk     every command that writes (simulate, preprocess, train checkpoints, sample,
                  evaluate) under a file-size limit: a non-zero exit, one 'Error' line, no
                  traceback or signal, no temporary file, the previous file intact
    kills         preprocess, train and sample killed (SIGKILL) at random moments, then rerun
                  or resumed: the result equals an uninterrupted run, bit for bit
    two writers   two trains into one --out (one is refused), two preprocess and two sample
                  into one output (one complete result, never a mix)
    corruption    >= 10,000 corrupted snapshots per format, read in a child process per format
                  (a crash there is counted, not fatal): only SnapshotError or the same read,
                  with the child's peak RSS
    hostile       every option of every command and every public op under nan, inf, -1, 0,
                  huge, empty, wrong types and missing files

Usage: python bench/stress.py [--corruptions 10000] [--kills 3] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import _helpers as rel  # noqa: E402  (the one module bench imports from tests/)

RESULTS: list[tuple[str, bool, str]] = []


def report(name: str, ok: bool, text: str) -> None:
    RESULTS.append((name, ok, text))
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}", flush=True)


def fixtures(root: Path) -> dict:
    """A suite, a dataset, a trained run and positions, all tiny."""
    from lsswgan_core.sim.simulate import write_suite
    from lsswgan_core.gan.train import train

    write_suite(root / "suite", 8, 16, 64.0, seed=1, pm_steps=1, show_progress=False)
    suite = sorted(str(p / "snapshot_000") for p in (root / "suite").glob("sim_*"))
    dataset = rel.write_dataset(root / "d.h5", sizes=(8, 4, 4))
    config = rel.write_toml(root / "tiny.toml",
                            rel.tiny_config(train={"epochs": 3, "checkpoint_every": 1}))
    from lsswgan_core.config import load_config

    train(dataset, root / "run", load_config(config), show_progress=False, max_epochs=1)
    np.save(root / "p.npy", np.random.default_rng(0).uniform(0, 100, (50, 3)))
    (root / "t").mkdir()
    return {"suite": suite, "dataset": dataset, "config": config, "run": root / "run",
            "checkpoint": root / "run" / "checkpoints" / "last.pt", "positions": root / "p.npy",
            "tmp": root / "t", "root": root}


# ------------------------------------------------------------------ full disk

def full_disk(f: dict) -> None:
    root = f["root"] / "disk"
    prep = [*f["suite"], "--grid", 16, "--cube", 16, "--cubes-per-box", 4, "--length-unit", "Mpc/h"]
    cases = {
        "simulate": (lambda d: ["simulate", "--out", d, "--n-sims", 1, "--particles", 16,
                                "--pm-steps", 1], "sim_000/snapshot_000.0", (4096, 40_000)),
        "simulate hdf5": (lambda d: ["simulate", "--out", d, "--n-sims", 1, "--particles", 16,
                                     "--pm-steps", 1, "--format", "hdf5"],
                          "sim_000/snapshot_000.0.hdf5", (4096, 40_000)),
        "preprocess": (lambda d: ["preprocess", *prep, "--out", d / "d.h5"], "d.h5",
                       (20_000, 70_000, 80_000)),
        "train": (lambda d: ["train", "--data", f["dataset"], "--out", d, "--resume"],
                  "checkpoints/last.pt", (16 * 1024, 64 * 1024, 256 * 1024)),
        "sample": (lambda d: ["sample", "--checkpoint", f["checkpoint"], "--n", 64, "--out",
                              d / "s.h5"], "s.h5", (8 * 1024, 100 * 1024, 400 * 1024)),
        "evaluate": (lambda d: ["evaluate", "--checkpoint", f["checkpoint"], "--data",
                                f["dataset"], "--out", d, "--n", 4], "fig6_slices.png",
                     (2 * 1024, 8 * 1024, 30 * 1024)),
    }
    for name, (argv, previous, limits) in cases.items():
        good = 0
        problems = []
        for limit in limits:
            d = root / f"{name.replace(' ', '_')}_{limit}"
            if name == "train":
                rel.copy_run(f["run"], d)
            d.mkdir(parents=True, exist_ok=True)
            target = d / previous
            if name != "train":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"the previous file\n")
            before = target.read_bytes()
            res = rel.lsscore(*argv(d), fsize=limit)
            try:
                rel.one_line_failure(res)
                assert rel.temporaries(d) == [], rel.temporaries(d)
                assert target.read_bytes() == before, "the previous file changed"
                good += 1
            except AssertionError as exc:
                problems.append(f"limit {limit}: {str(exc)[:300]}")
        report(f"full disk: {name}", not problems,
               f"{good}/{len(limits)} file-size limits: one-line error, no temporary file, "
               f"previous file intact" + (f"; {problems}" if problems else ""))


# ------------------------------------------------------------------ kills

def kills(f: dict, count: int, rng: np.random.Generator) -> None:
    root = f["root"] / "kill"
    root.mkdir()
    # preprocess: killed at random moments, rerun, the file equals an uninterrupted run's
    prep = [*f["suite"], "--grid", 32, "--cube", 16, "--cubes-per-box", 4, "--length-unit", "Mpc/h"]
    res = rel.lsscore("preprocess", *prep, "--out", root / "ref.h5")
    assert res.returncode == 0, res.stderr
    t0 = time.perf_counter()
    rel.lsscore("preprocess", *prep, "--out", root / "timing.h5")
    span = time.perf_counter() - t0
    same, killed = 0, 0
    for i in range(count):
        out = root / f"p{i}.h5"
        for _ in range(2):
            proc = rel.lsscore("preprocess", *prep, "--out", out, background=True)
            killed += rel.kill_after(proc, float(rng.uniform(0.3, span)))
            proc.communicate()
        res = rel.lsscore("preprocess", *prep, "--out", out)
        same += res.returncode == 0 and _h5_equal(out, root / "ref.h5")
    report("kills: preprocess", same == count,
           f"{same}/{count} reruns after {killed} SIGKILLs equal to the uninterrupted file")
    # train: killed at random moments, resumed, the weights equal an uninterrupted run's
    ref = rel.copy_run(f["run"], root / "train_ref")
    res = rel.lsscore("train", "--data", f["dataset"], "--out", ref, "--resume")
    assert res.returncode == 0, res.stderr
    same = 0
    for i in range(count):
        d = rel.copy_run(f["run"], root / f"train{i}")
        proc = rel.lsscore("train", "--data", f["dataset"], "--out", d, "--resume",
                           background=True)
        rel.kill_after(proc, float(rng.uniform(2.0, 10.0)))
        proc.communicate()
        res = rel.lsscore("train", "--data", f["dataset"], "--out", d, "--resume")
        try:
            assert res.returncode == 0, res.stderr[-500:]
            rel.assert_same_checkpoint(d / "checkpoints" / "last.pt", ref / "checkpoints" / "last.pt")
            assert rel.temporaries(d) == []
            same += 1
        except AssertionError as exc:
            print(f"    train kill {i}: {str(exc)[:300]}")
    report("kills: train", same == count,
           f"{same}/{count} resumes after a SIGKILL reach the uninterrupted run's weights")
    # sample
    res = rel.lsscore("sample", "--checkpoint", f["checkpoint"], "--n", 64, "--out",
                      root / "s_ref.h5")
    same = 0
    for i in range(count):
        out = root / f"s{i}.h5"
        proc = rel.lsscore("sample", "--checkpoint", f["checkpoint"], "--n", 64, "--out", out,
                           background=True)
        rel.kill_after(proc, float(rng.uniform(1.0, 5.0)))
        proc.communicate()
        intact = not out.exists() or _h5_equal(out, root / "s_ref.h5")
        res = rel.lsscore("sample", "--checkpoint", f["checkpoint"], "--n", 64, "--out", out)
        clean = not [p for p in rel.temporaries(root) if p.name.startswith(out.name)]
        same += intact and clean and res.returncode == 0 and _h5_equal(out, root / "s_ref.h5")
    report("kills: sample", same == count,
           f"{same}/{count} reruns after a SIGKILL equal, no temporary file left")


def _h5_equal(a: Path, b: Path) -> bool:
    import h5py

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        if sorted(fa) != sorted(fb):
            return False
        for key in fa:
            if not np.array_equal(fa[key][...], fb[key][...]):
                return False
        skip = {"package_version"}
        return all(k in skip or np.array_equal(np.asarray(fa.attrs[k]), np.asarray(fb.attrs[k]))
                   for k in fa.attrs)


# ------------------------------------------------------------------ two writers

def two_writers(f: dict) -> None:
    root = f["root"] / "two"
    root.mkdir()
    # two trains into one --out: exactly one is refused, naming the holder
    d = rel.copy_run(f["run"], root / "run")
    procs = [rel.lsscore("train", "--data", f["dataset"], "--out", d, "--resume",
                         background=True) for _ in range(2)]
    outs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    refused = [err for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    ok = codes[0] == 0 and (codes[1] == 0 or (len(refused) == 1 and "is in use: pid" in refused[0]))
    report("two writers: train", ok, f"exit codes {codes}; the second "
           + ("was refused naming the holder" if len(refused) == 1 else "ran after the first"))
    # two preprocess into one output
    prep = [*f["suite"], "--grid", 32, "--cube", 16, "--cubes-per-box", 4, "--length-unit", "Mpc/h"]
    rel.lsscore("preprocess", *prep, "--out", root / "ref.h5")
    procs = [rel.lsscore("preprocess", *prep, "--out", root / "d.h5", background=True)
             for _ in range(2)]
    outs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    ok = codes[0] == 0 and _h5_equal(root / "d.h5", root / "ref.h5") and \
        rel.temporaries(root) == [] and (codes[1] == 0 or any("is in use" in e for _, e in outs))
    report("two writers: preprocess", ok, f"exit codes {codes}; the file equals a single run's")
    # two samples (other seeds) into one output: the file is one of the two, whole
    refs = []
    for seed in (1, 2):
        rel.lsscore("sample", "--checkpoint", f["checkpoint"], "--n", 64, "--seed", seed,
                    "--out", root / f"ref{seed}.h5")
        refs.append(root / f"ref{seed}.h5")
    good = 0
    for i in range(3):
        out = root / f"s{i}.h5"
        procs = [rel.lsscore("sample", "--checkpoint", f["checkpoint"], "--n", 64, "--seed", s,
                             "--out", out, background=True) for s in (1, 2)]
        for p in procs:
            p.communicate()
        good += all(p.returncode == 0 for p in procs) and any(_h5_equal(out, r) for r in refs)
    report("two writers: sample", good == 3 and rel.temporaries(root) == [],
           f"{good}/3 races left one complete result")


# ------------------------------------------------------------------ corruption

def _fuzz_child(fmt: str, count: int, workdir: str, queue) -> None:
    outcome = rel.fuzz_format(fmt, count, Path(workdir))
    outcome["failures"] = [(k, m) for k, m, _ in outcome["failures"]]
    outcome["peak_rss_mib"] = rel.peak_rss_mib()
    queue.put(outcome)


def corruption(f: dict, count: int) -> None:
    ctx = mp.get_context("fork")
    for fmt in rel.FORMATS:
        queue = ctx.Queue()
        t0 = time.perf_counter()
        proc = ctx.Process(target=_fuzz_child, args=(fmt, count, str(f["root"] / "fuzz"), queue))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            report(f"corruption: {fmt}", False, f"the reading process died (exit {proc.exitcode})")
            continue
        o = queue.get()
        fails = o["failures"]
        text = (f"{count:,} corrupted files: {o['snapshot_error'] + o['identical'] + o['rescaled']:,} "
                f"SnapshotError or identical reads ({o['snapshot_error']:,} errors, "
                f"{o['identical']:,} identical"
                + (f", {o['rescaled']:,} consistently rescaled by a changed unit attribute"
                   if o["rescaled"] else "")
                + f"), peak RSS {o['peak_rss_mib']:.0f} MiB (torch included), "
                  f"{time.perf_counter() - t0:.0f} s")
        if fails:
            text += f"; {len(fails)} other outcomes, e.g. {fails[:3]}"
        report(f"corruption: {fmt}", not fails, text)


# ------------------------------------------------------------------ hostile arguments

def hostile(f: dict) -> None:
    cases = rel.hostile_cases(f)
    problems = {}
    for case in cases:
        p = rel.run_hostile(f, *case)
        if p:
            problems[case] = p
    report("hostile: CLI options", not problems,
           f"{len(cases)} invocations ({len(rel.cli_table(f))} commands, "
           f"{sum(len(o) for _, o in rel.cli_table(f).values())} options x {len(rel.HOSTILE)} "
           f"values): {len(cases) - len(problems)} refused in one line or sensibly accepted"
           + (f"; problems: {problems}" if problems else ""))
    ops_cases = rel.hostile_ops()
    found = {name: p for name, call in ops_cases if (p := rel.run_hostile_op(call))}
    report("hostile: ops", not found,
           f"{len(ops_cases)} calls: {len(ops_cases) - len(found)} refused with a message"
           + (f"; problems: {found}" if found else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corruptions", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None,
                        choices=["disk", "kills", "writers", "corruption", "hostile"])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="lsscore-stress-"))
    try:
        f = fixtures(root)
        rng = np.random.default_rng(2026)
        steps = {"disk": lambda: full_disk(f), "kills": lambda: kills(f, args.kills, rng),
                 "writers": lambda: two_writers(f),
                 "corruption": lambda: corruption(f, args.corruptions),
                 "hostile": lambda: hostile(f)}
        for name, step in steps.items():
            if args.only is None or name in args.only:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - a broken check is a failed check
                    report(name, False, f"the check itself failed: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    failed = [r for r in RESULTS if not r[1]]
    print(f"\nstress: {len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed in "
          f"{time.perf_counter() - t0:.0f} s")
    (REPO / "bench" / "stress.json").write_text(json.dumps(
        [{"check": n, "ok": ok, "result": t} for n, ok, t in RESULTS], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
