"""GPU check: build, test and time everything on one GPU in one prepared run.

On a machine with an NVIDIA GPU and a CUDA build of torch already installed (and numpy, h5py,
click, pytest, hypothesis, scipy, setuptools, wheel, cmake, ninja: `preflight` lists what is
missing). A thin runner: the measurements are the registry's (bench/bm_*.py, bench/_common.py's
one timer) and the library's own training steps.

  preflight   python, torch, CUDA, cuDNN, nvcc and driver versions; the GPU; missing modules
  build       pip install --no-build-isolation --no-deps -e . against the machine's torch, with
              LSS_WITH_CUDA=ON and TORCH_CUDA_ARCH_LIST of the visible GPU (--no-build skips)
  tests       pytest tests -k cuda: the device-parametrised ops tests on CUDA (CPU-CUDA
              agreement, gradcheck, opcheck, torch.compile) and any other CUDA test
              (--skip-tests skips)
  bench       bench/run.py --device DEVICE: every registry entry, ours against the baselines
              on the device; its JSON is OUT/bench.json
  projection  lsswgan_core.gan.train's critic_step and generator_step (with and without the
              summary loss) at the paper's width and batch, and one duality gap
              (lsswgan_core.gan.duality_gap), timed with the one timer and projected to the
              paper's 500 epochs (configs/paper.toml's schedule)
  whole_box   the box generator (lsswgan_core.gan.models.BoxGenerator) at that width on whole
              boxes of 256^3 and 512^3 cells: seconds per box, boxes per second, peak memory
  summary     a row per section and the headline numbers against the issue's targets (for an
              H200; judged on a GPU only): OUT/gpu_check.md; everything in OUT/gpu_check.json

Each section is guarded: one that fails is recorded as an error string and the rest still run
(the exit status is then 1; failing tests are counted, not a section failure). The JSON is
rewritten after every section, so a run cut short keeps what it did; OUT/gpu_check.log holds
everything, subprocess output included. The install is editable (-e) on purpose: pytest and
this script import lsswgan_core from the source tree, which a plain `pip install .` would leave
without its compiled _C.

    python bench/gpu_check.py [--device cuda] [--quick] [--no-build] [--skip-tests] [--out DIR]
    python bench/gpu_check.py --device cpu --quick --no-build --skip-tests   # the CPU test
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))   # the tree's lsswgan_core, where the editable build puts _C
from _common import Timer, machine, print_table, write_json  # noqa: E402

REQUIRED_MODULES = ("numpy", "h5py", "click", "pytest", "hypothesis", "scipy", "setuptools",
                    "wheel", "cmake", "ninja")
# the targets on an H200: (benchmark, impl, target on `ours x faster`)
SPEEDUP_TARGETS = (("paint", "torch index_put_", 5.0), ("paint", "torch 8x index_put_", 5.0),
                   ("find_peaks", "torch max_pool3d (non-strict)", 10.0),
                   ("soft_histogram", "torch 2x scatter_add", 3.0))
TARGETS = {"pk_over_rfftn": 1.2, "critic_vs_plain": 0.05, "summary_overhead": 0.15,
           "sampling_cubes_per_s": 5000.0, "projection_s": 15 * 60.0, "rel_diff": 1e-4}
# the projection's measured steps: the paper's width and batch on a GPU, a miniature for --quick
SIZES = {"full": {"width": 1.0, "batch": 16, "dg_cubes": 64, "dg_epochs": 2, "repeats": 10,
                  "warmup": 3, "boxes": (256, 512)},
         "quick": {"width": 0.125, "batch": 4, "dg_cubes": 16, "dg_epochs": 1, "repeats": 3,
                   "warmup": 1, "boxes": (32, 64)}}


class Tee:
    """Writes to the console and to the log file."""

    def __init__(self, stream, log):
        self.stream, self.log = stream, log

    def write(self, text):
        self.stream.write(text)
        self.log.write(text)
        return len(text)

    def flush(self):
        self.stream.flush()
        self.log.flush()

    def isatty(self):
        return False


class Check:
    """The run: arguments, device, timer, report, log; `section` guards each part."""

    def __init__(self, args):
        self.args, self.out = args, args.out
        self.sizes = SIZES["quick" if args.quick else "full"]
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.timer = Timer(self.device)
        self.t0 = time.perf_counter()
        self.report: dict = {"args": {k: str(v) if isinstance(v, Path) else v
                                      for k, v in vars(args).items()},
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.log = open(self.out / "gpu_check.log", "w", buffering=1)
        self.console = sys.stdout
        self.failed: list[str] = []

    def section(self, name, fn):
        print(f"\n=== {name} ({time.perf_counter() - self.t0:.0f} s in) ===", flush=True)
        t = time.perf_counter()
        try:
            result = fn(self)
        except Exception as exc:  # noqa: BLE001 - a failing section is recorded, the rest runs
            result = {"error": f"{type(exc).__name__}: {exc}"}
            self.log.write(traceback.format_exc())
            print(f"{name} FAILED: {result['error']}", flush=True)
        result["section_s"] = round(time.perf_counter() - t, 2)
        if "error" in result:
            self.failed.append(name)
        elif "skipped" in result:
            print(f"{name} skipped: {result['skipped']}")
        self.report[name] = result
        self.save()
        return result

    def save(self):
        self.report["wall_s"] = round(time.perf_counter() - self.t0, 2)
        path = self.out / "gpu_check.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"machine": machine(), **self.report}, indent=2, default=str))
        os.replace(tmp, path)

    def run_logged(self, cmd, timeout, env=None, on_line=None, echo=False):
        """Run cmd in ROOT, its output to the log (and the console with echo); (return code,
        or None if it was killed at the timeout, seconds)."""
        self.log.write(f"\n$ {' '.join(cmd)}\n")
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def pump():
            for line in proc.stdout:
                self.log.write(line)
                if echo:
                    self.console.write(line)
                if on_line:
                    on_line(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)   # the child and what it started, nothing else
            proc.wait()
            rc = None
        reader.join(timeout=5)
        return rc, round(time.perf_counter() - t, 2)


def _quiet(cmd) -> str | None:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cuda_home() -> str | None:
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    from torch.utils.cpp_extension import CUDA_HOME  # noqa: PLC0415  (nvcc on PATH, /usr/local/cuda)

    return CUDA_HOME


# ---------------------------------------------------------------------------- sections


def section_preflight(c: Check) -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
           "git_commit": _quiet(["git", "rev-parse", "HEAD"]),
           "missing_modules": [m for m in REQUIRED_MODULES
                               if importlib.util.find_spec(m) is None]}
    if c.cuda:
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device cuda but torch sees no GPU (torch {torch.__version__}, "
                               f"CUDA build: {torch.version.cuda})")
        props = torch.cuda.get_device_properties(0)
        cap = torch.cuda.get_device_capability(0)
        cuda_home = _cuda_home()
        nvcc = _quiet([f"{cuda_home}/bin/nvcc", "--version"]) if cuda_home else None
        out.update(gpu=props.name, capability=f"{cap[0]}.{cap[1]}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(), cuda_home=cuda_home,
                   nvcc=nvcc.splitlines()[-1] if nvcc else None,
                   driver=_quiet(["nvidia-smi", "--query-gpu=driver_version",
                                  "--format=csv,noheader"]))
    for key, value in out.items():
        print(f"{key:16s} {value}")
    return out


def section_build(c: Check) -> dict:
    out: dict = {}
    if c.args.no_build:
        out["skipped"] = "--no-build"
    else:
        env = {**os.environ, "LSS_WITH_CUDA": "ON" if c.cuda else "AUTO",
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
        if c.cuda:
            major, minor = torch.cuda.get_device_capability(0)
            env["TORCH_CUDA_ARCH_LIST"] = out["arch"] = f"{major}.{minor}"
            env["CUDA_HOME"] = out["cuda_home"] = _cuda_home() or ""
            if not env["CUDA_HOME"]:
                raise RuntimeError("no CUDA toolkit found (nvcc): set CUDA_HOME")
        errors: list[str] = []

        def on_line(line):
            if re.search(r"error|FAILED:|externally.managed", line, re.IGNORECASE) \
                    and len(errors) < 30:
                errors.append(line.rstrip()[:300])

        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
               "-e", "."]
        rc, seconds = c.run_logged(cmd, c.args.build_timeout, env, on_line)
        out.update(command=" ".join(cmd), rc=rc, seconds=seconds)
        print(f"build: rc {rc} in {seconds:.0f} s (output in gpu_check.log)")
        if rc not in (0, None) and not any("FAILED:" in e or "CMake Error" in e for e in errors):
            # pip refused to install (e.g. an "externally managed" system python) rather than
            # the compiler failing: build in place, which is all the ops tests and this need
            cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
            rc, more = c.run_logged(cmd, c.args.build_timeout - seconds, env, on_line)
            out.update(fallback=" ".join(cmd), fallback_rc=rc, seconds=seconds + more)
            print(f"build: pip failed, setup.py build_ext --inplace: rc {rc} in {more:.0f} s")
        if rc != 0:
            print("\n".join(errors))
            return {**out, "error_lines": errors,
                    "error": f"the build failed (rc {rc}): see error_lines and gpu_check.log"}
    import lsswgan_core  # noqa: PLC0415  (first import: after the build)

    out["build_info"] = info = lsswgan_core.build_info()
    print(info)
    if c.cuda and not info["cuda_kernels"]:
        raise RuntimeError("the extension was built without its CUDA kernels")
    return out


_RESULT = re.compile(r"^(\S.*::\S.*?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def section_tests(c: Check) -> dict:
    if c.args.skip_tests:
        return {"skipped": "--skip-tests"}
    # ("errors", not "error": that key marks a section that failed to run)
    counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "xfail", "xpass"), 0)
    failures: list[str] = []

    def on_line(line):
        m = _RESULT.match(line)
        if m:
            counts[{"ERROR": "errors"}.get(m.group(2), m.group(2).lower())] += 1
            if m.group(2) in ("FAILED", "ERROR"):
                failures.append(m.group(1))

    cmd = [sys.executable, "-m", "pytest", "-v", "--tb=short", "-p", "no:cacheprovider",
           "tests", "-k", "cuda", "--ignore=tests/test_gpu_check.py"]
    rc, seconds = c.run_logged(cmd, c.args.tests_timeout, on_line=on_line)
    print(f"{' '.join(cmd[2:])}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped in {seconds:.0f} s"
          + (" (stopped at the time limit)" if rc is None else ""))
    return {"command": " ".join(cmd[2:]), "rc": rc, "seconds": seconds, "timed_out": rc is None,
            **counts, "failures": failures[:50]}


def section_bench(c: Check) -> dict:
    """bench/run.py on the device: the registry, its tables echoed, its JSON in OUT."""
    results = c.out / "bench.json"
    cmd = [sys.executable, str(HERE / "run.py"), "--device", c.args.device, "--out", str(results)]
    cmd += ["--quick"] if c.args.quick else []
    cmd += ["--threads", str(c.args.threads)] if c.args.threads else []
    rc, seconds = c.run_logged(cmd, c.args.bench_timeout, echo=True)
    out = {"command": " ".join(cmd[1:]), "rc": rc, "seconds": seconds, "json": str(results)}
    if rc != 0:
        return {**out, "error": f"bench/run.py exited {rc} (None: killed at --bench-timeout); "
                                "see gpu_check.log"}
    payload = json.loads(results.read_text())
    out["entries"] = {name: len(p["rows"]) for name, p in payload.items()
                      if isinstance(p, dict) and "rows" in p}
    out["headlines"] = headlines(payload)
    return out


def headlines(payload: dict) -> dict:
    """The registry's numbers the issue sets targets for: the worst case over entries."""
    def rows(name):
        part = payload.get(name)
        return part.get("rows", []) if isinstance(part, dict) else []

    out = {}
    for name, impl, _ in SPEEDUP_TARGETS:
        xs = [r["ours x faster"] for r in rows(name) if r["impl"] == impl]
        out[f"{name} vs {impl}"] = min(xs) if xs else None
    xs = [r["ours x faster"] for r in rows("power_spectrum") if r["impl"] == "torch rfftn alone"]
    out["pk_over_rfftn"] = 1 / min(xs) if xs else None
    derived = payload.get("train_step", {}).get("derived", [])
    for key in ("critic_vs_plain", "summary_overhead"):
        out[key] = max((d[key] for d in derived), default=None)
    out["sampling_cubes_per_s"] = max((r["cubes/s"] for r in rows("train_step")
                                       if "cubes/s" in r), default=None)
    out["rel_diff"] = max((r["rel_diff"] for name in payload for r in rows(name)
                           if r.get("rel_diff") is not None), default=None)
    return out


class RandomCubes:
    """A dg split stand-in for duality_gap: len() and batch(indices) of fixed random cubes."""

    def __init__(self, n: int, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.cubes = torch.rand(n, 1, 32, 32, 32, generator=gen) ** 4

    def __len__(self):
        return len(self.cubes)

    def batch(self, indices):
        return self.cubes[indices]


def project(t: dict, gap_s: float, gap_steps: int, paper) -> dict:
    """The paper's run from measured seconds per step: t = {critic, generator,
    generator_summary}; gap_s = one duality gap of `gap_steps` steps per trajectory. An epoch
    is split_cubes[0] // batch_size critic steps and a generator step every n_critic of them,
    with the summary loss for the first summary_epochs; a gap every duality_gap.every epochs,
    scaled by steps to duality_gap.epochs passes over split_cubes[2] cubes in its batches (its
    M measures counted with the steps: an upper bound)."""
    tc, dg = paper.train, paper.duality_gap
    critic_steps = paper.data.split_cubes[0] // tc.batch_size
    generator_steps = critic_steps / tc.n_critic
    summary_epochs = min(tc.summary_epochs, tc.epochs)
    epoch_on = critic_steps * t["critic"] + generator_steps * t["generator_summary"]
    epoch_off = critic_steps * t["critic"] + generator_steps * t["generator"]
    paper_gap_s = gap_s * dg.epochs * (paper.data.split_cubes[2] // dg.batch_size) / gap_steps
    gaps = tc.epochs // dg.every if dg.enabled else 0
    total = summary_epochs * epoch_on + (tc.epochs - summary_epochs) * epoch_off \
        + gaps * paper_gap_s
    return {"critic_steps_per_epoch": critic_steps, "epoch_summary_on_s": epoch_on,
            "epoch_summary_off_s": epoch_off, "paper_gap_s": paper_gap_s, "gaps": gaps,
            "paper_500_epochs_s": total, "paper_500_epochs_h": total / 3600}


def section_projection(c: Check) -> dict:
    from bm_train_step import loop_state, paper_config  # noqa: PLC0415

    from lsswgan_core.gan.duality_gap import duality_gap  # noqa: PLC0415
    from lsswgan_core.gan.train import critic_step, generator_step  # noqa: PLC0415

    s = c.sizes
    cfg = paper_config(s["width"], s["batch"])
    state, rng, real = loop_state(cfg, c.device)
    if c.cuda:
        torch.cuda.reset_peak_memory_stats(c.device)
    t = c.timer.medians({"critic": lambda: critic_step(state, real, rng, 0, 0),
                         "generator": lambda: generator_step(state, rng, False, 0, 0),
                         "generator_summary": lambda: generator_step(state, rng, True, 0, 0)},
                        s["repeats"], s["warmup"])
    dg = dataclasses.replace(cfg.duality_gap, epochs=s["dg_epochs"])
    cubes = RandomCubes(s["dg_cubes"])
    gap_s = c.timer.median(lambda: duality_gap(state.critic, state.generator, cubes, dg,
                                               cfg.optim.betas, cfg.train.gp_lambda,
                                               device=state.device), repeats=1, warmup=1)
    paper = paper_config(1.0, 16)
    out = {"width": s["width"], "batch": s["batch"], "tf32": cfg.train.tf32,
           **{f"{k}_step_ms": 1e3 * v for k, v in t.items()},
           "gap_s": gap_s, "gap_steps": dg.epochs * (len(cubes) // dg.batch_size),
           "peak_mem_mib": torch.cuda.max_memory_allocated(c.device) / 2**20 if c.cuda else None}
    out["projection"] = project(t, gap_s, out["gap_steps"], paper)
    print(json.dumps(out, indent=1))
    return out


def section_whole_box(c: Check) -> dict:
    """The box generator at the run's width with the demo's large-scale input: whole boxes of 256^3
    and 512^3 cells (one network call each, as `write_boxes` makes them when they fit):
    seconds per box, boxes per second and peak memory; its inputs drawn once per size and
    timed apart (input_seconds)."""
    from lsswgan_core.gan.models import BoxGenerator, input_spectrum  # noqa: PLC0415
    from lsswgan_core.config import load_config  # noqa: PLC0415

    s = c.sizes
    source = load_config(ROOT / "configs" / "demo.toml").model.box_input
    generator = BoxGenerator(s["width"], source=source).to(c.device).eval()
    k, p = input_spectrum("linear", 4.0)   # the 'data' source's shape without a dataset
    generator.set_input_power(k, p, 4.0)
    out = {"width": s["width"], "halo": generator.halo, "source": source, "sizes": {}}
    for n in s["boxes"]:
        rng = torch.Generator(device=c.device).manual_seed(0)
        t0 = time.perf_counter()
        inputs = generator.draw_inputs(1, n, rng, c.device)
        if c.cuda:
            torch.cuda.synchronize(c.device)
        input_seconds = time.perf_counter() - t0
        if c.cuda:
            torch.cuda.reset_peak_memory_stats(c.device)
        with torch.no_grad():
            seconds = c.timer.median(lambda: generator.box(inputs), repeats=2, warmup=1)
        out["sizes"][str(n)] = {
            "seconds_per_box": seconds, "boxes_per_s": 1 / seconds,
            "input_seconds": input_seconds,
            "peak_mem_mib": torch.cuda.max_memory_allocated(c.device) / 2**20 if c.cuda else None}
    print(json.dumps(out, indent=1))
    return out


SECTIONS = [("preflight", section_preflight), ("build", section_build),
            ("tests", section_tests), ("bench", section_bench),
            ("projection", section_projection), ("whole_box", section_whole_box)]


# ---------------------------------------------------------------------------- summary


def summary_rows(report: dict) -> list[dict]:
    """A row per section (its state or headline), then the numbers with the issue's targets;
    `ok` is judged on a GPU only (the targets are for an H200)."""
    on_gpu = report.get("args", {}).get("device") == "cuda"
    rows = []

    def add(section, check, value, target=None, ok=None):
        rows.append({"section": section, "check": check, "value": value, "target": target,
                     "ok": None if ok is None or not on_gpu else ("yes" if ok else "NO")})

    def state(name) -> dict:
        part = report.get(name, {})
        if "error" in part:
            add(name, "error", part["error"][:120])
        elif "skipped" in part:
            add(name, "skipped", part["skipped"])
        return part

    pre = state("preflight")
    if "torch" in pre:
        add("preflight", "device", pre.get("gpu") or f"cpu ({pre['cpu_count']} cores), torch "
            f"{pre['torch']}" + (f"; missing {pre['missing_modules']}"
                                 if pre["missing_modules"] else ""))
    build = state("build")
    if "build_info" in build:
        add("build", "build (s), CUDA kernels", f"{build.get('seconds', '-')}, "
            f"{build['build_info']['cuda_kernels']}")
    tests = state("tests")
    if "passed" in tests:
        add("tests", "pytest tests -k cuda", f"{tests['passed']} passed, {tests['failed']} "
            f"failed, {tests['errors']} errors, {tests['skipped']} skipped"
            + (" (cut at the time limit)" if tests["timed_out"] else ""), "all pass",
            tests["rc"] == 0)
    bench = state("bench")
    if "entries" in bench:
        add("bench", "registry rows per benchmark",
            ", ".join(f"{k} {v}" for k, v in bench["entries"].items()))
        h = bench["headlines"]
        for name, impl, target in SPEEDUP_TARGETS:
            x = h.get(f"{name} vs {impl}")
            if x is not None:
                add("bench", f"{name} vs {impl}, worst (x)", round(x, 3), f">= {target:g}",
                    x >= target)
        for key, label, sign in (("pk_over_rfftn", "power_spectrum / bare rfftn", "<="),
                                 ("critic_vs_plain", "critic step vs plain - 1", "<="),
                                 ("summary_overhead", "summary loss overhead", "<="),
                                 ("rel_diff", "largest rel_diff vs reference", "<="),
                                 ("sampling_cubes_per_s", "sampling (cubes/s)", ">=")):
            if h.get(key) is not None:
                ok = h[key] <= TARGETS[key] if sign == "<=" else h[key] >= TARGETS[key]
                add("bench", label, float(f"{h[key]:.4g}"), f"{sign} {TARGETS[key]:g}", ok)
    projection = state("projection")
    if "projection" in projection:
        total = projection["projection"]["paper_500_epochs_s"]
        add("projection", f"paper's 500 epochs + gaps from width {projection['width']:g}, "
            f"batch {projection['batch']} steps (min)", round(total / 60, 2),
            f"<= {TARGETS['projection_s'] / 60:g}", total <= TARGETS["projection_s"])
        add("projection", "critic / generator+S step (ms)",
            f"{projection['critic_step_ms']:.4g} / {projection['generator_summary_step_ms']:.4g}")
    boxes = state("whole_box")
    for n, row in boxes.get("sizes", {}).items():
        mem = row["peak_mem_mib"]
        add("whole_box", f"box generator, width {boxes['width']:g}, one {n}^3 box: s, boxes/s, "
            "peak MiB", f"{row['seconds_per_box']:.3g}, {row['boxes_per_s']:.3g}, "
            + ("-" if mem is None else f"{mem:.0f}"))
    return rows


def markdown(rows: list[dict]) -> str:
    cols = ["section", "check", "value", "target", "ok"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r[k] is None else str(r[k]) for k in cols) + " |"
              for r in rows]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="the registry's quick sizes; projection steps at width 1/8, batch 4")
    parser.add_argument("--no-build", action="store_true", help="use the extension as built")
    parser.add_argument("--skip-tests", action="store_true", help="run no pytest")
    parser.add_argument("--out", type=Path, default=HERE / "gpu_check")
    parser.add_argument("--build-timeout", type=float, default=420.0)
    parser.add_argument("--tests-timeout", type=float, default=240.0)
    parser.add_argument("--bench-timeout", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads, here and in bench/run.py (0: their defaults)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    c = Check(args)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(stdout, c.log), Tee(stderr, c.log)
    try:
        print(f"gpu_check: device {args.device}, {'quick' if args.quick else 'full'} sizes, "
              f"report in {args.out}")
        for name, fn in SECTIONS:
            blocker = next((b for b in ("preflight", "build") if "error" in c.report.get(b, {})),
                           None)
            if blocker:
                c.report[name] = {"error": f"not run: the {blocker} failed"}
                c.failed.append(name)
                continue
            c.section(name, fn)
        print("\n=== summary ===")
        c.report["summary"] = rows = summary_rows(c.report)
        print_table(rows, ["section", "check", "value", "target", "ok"])
        (args.out / "gpu_check.md").write_text(markdown(rows))
        c.report["failed_sections"] = c.failed
        c.report["wall_s"] = round(time.perf_counter() - c.t0, 2)
        write_json(args.out / "gpu_check.json", c.report)
        print(f"log: {args.out / 'gpu_check.log'}; {c.report['wall_s']:.0f} s in all; "
              + (f"FAILED sections: {', '.join(c.failed)}" if c.failed else "no section failed"))
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        c.log.close()
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
