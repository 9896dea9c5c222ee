"""GPU first light (issue 12): build, test and time everything on one GPU in one prepared run.

On a machine with an NVIDIA GPU and a CUDA build of torch already installed (and numpy, h5py,
click, pytest, hypothesis, scipy, setuptools, wheel, cmake, ninja: `preflight` lists what is
missing), in about 7 minutes (`--budget`, default 450 s, paces the later sections):

  preflight    python, torch, CUDA, cuDNN, nvcc and driver versions; the GPU; missing modules
  build        pip install --no-build-isolation --no-deps -e . with LSS_WITH_CUDA=ON and
               TORCH_CUDA_ARCH_LIST of the visible GPU, timed (--no-build skips it)
  tests        pytest tests/ops -k cuda (CPU-CUDA agreement in float32 and float64, gradcheck,
               opcheck and torch.compile on CUDA); at the very end, the rest of the suite in
               the time left (--skip-tests skips both)
  kernels      each op against what a user would write in plain torch on the same device:
               medians of CUDA-event times after warm-up (perf_counter on the CPU)
  train_steps  lsswgan_core.gan.train's critic and generator steps (with and without the summary
               loss) and the duality gap's two steps, at width 1, batch 16 and 64, in float32,
               TF32 and bf16 autocast; peak GPU memory
  training     configs/paper.toml for about two minutes on a dataset simulated here, and the
               projected wall time of the paper's 500 epochs with the duality gap
  sampling     generator throughput (cubes/s) and lsswgan_core.gan.sample.generate's
Each section is guarded: one that fails is recorded as an error string and the rest still run
(the exit status is then 1; failing tests are counted, not a section failure). The report,
OUT/gpu_check.json, is rewritten after every section, so a run cut short keeps what it did;
OUT/gpu_check.log holds everything, subprocess output included. The dataset and the training
run go to a temporary directory, removed at the end: OUT holds only the two files.

The install is editable (-e) on purpose: pytest and this script import lsswgan_core from the
source tree, which a plain `pip install .` would leave without its compiled _C.

    python bench/gpu_check.py [--device cuda] [--quick] [--no-build] [--skip-tests] [--out DIR]
    python bench/gpu_check.py --device cpu --quick --no-build --skip-tests   # the CPU test
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(ROOT))   # the tree's lsswgan_core, where the editable build puts _C
from _common import machine, print_table, write_json  # noqa: E402

BOX = 1000.0   # Mpc/h, for the kernel timings
PRECISIONS = ("float32", "tf32", "bf16")
# the paper: 992 training cubes in batches of 16 (an epoch is 62 critic steps), 500 epochs,
# a duality gap every 10 epochs of 20 passes over 128 cubes in batches of 8
PAPER = {"epochs": 500, "epoch_critic_steps": 992 // 16, "dg_every": 10, "dg_epochs": 20,
         "dg_cubes": 128, "dg_batch": 8}
# the targets on an H200
TARGETS = {"paint": 5.0, "pk_over_rfftn": 1.2, "peaks": 10.0, "histogram": 3.0,
           "projection_s": 15 * 60.0, "sampling_cubes_per_s": 5000.0}
REQUIRED_MODULES = ("numpy", "h5py", "click", "pytest", "hypothesis", "scipy", "setuptools",
                    "wheel", "cmake", "ninja")

SIZES = {
    "full": {"paint_particles": 1 << 24, "paint_grid": 256, "pk_grid": 256, "peaks_grid": 256,
             "batch_cubes": (16, 32), "hist_bins": 64, "width": 1.0, "batches": (16, 64),
             "warmup": 3, "repeats": 20, "step_warmup": 2, "step_repeats": 7,
             "sample_batches": (16, 256), "generate_n": 4096, "generate_batch": 256,
             "suite": {"n_sims": 4, "particles": 64, "box": 256.0, "pm_steps": 4},
             "grid": 64, "split_cubes": (992, 8, 128), "train_seconds": 120.0},
    "quick": {"paint_particles": 1 << 16, "paint_grid": 64, "pk_grid": 64, "peaks_grid": 64,
              "batch_cubes": (4, 16), "hist_bins": 64, "width": 0.125, "batches": (4,),
              "warmup": 1, "repeats": 3, "step_warmup": 1, "step_repeats": 3,
              "sample_batches": (4, 16), "generate_n": 32, "generate_batch": 8,
              "suite": {"n_sims": 3, "particles": 16, "box": 64.0, "pm_steps": 2},
              "grid": 32, "split_cubes": (20, 4, 8), "train_seconds": 3.0},
}


# ---------------------------------------------------------------------------- plumbing


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
    """The run: arguments, device, deadline, report, log; `section` guards each part."""

    def __init__(self, args):
        self.args, self.out = args, args.out
        self.sizes = SIZES["quick" if args.quick else "full"]
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + args.budget
        self.report: dict = {"args": {k: str(v) if isinstance(v, Path) else v
                                      for k, v in vars(args).items()},
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.log = open(self.out / "gpu_check.log", "w", buffering=1)
        self.failed: list[str] = []
        self.checkpoint: Path | None = None   # the training run's, for sampling
        # the simulated dataset and the training run: scratch, not part of the report
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def median(self, fn, repeats=None, warmup=None) -> float:
        """Median seconds of fn() after warm-up: CUDA events on a GPU, perf_counter on the
        CPU."""
        repeats = repeats or self.sizes["repeats"]
        for _ in range(self.sizes["warmup"] if warmup is None else warmup):
            fn()
        self.sync()
        times = []
        for _ in range(repeats):
            if self.cuda:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
        return statistics.median(times)

    def reset_peak(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if self.cuda else None

    def section(self, name, fn):
        print(f"\n=== {name} ({time.perf_counter() - self.t0:.0f} s in, "
              f"{self.remaining():.0f} s of budget left) ===", flush=True)
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

    def run_logged(self, cmd, timeout, env=None, on_line=None) -> tuple[int | None, float]:
        """Run cmd in ROOT with its output in the log only; (return code or None if it was
        killed at the timeout, seconds)."""
        self.log.write(f"\n$ {' '.join(cmd)}\n")
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

        def pump():
            for line in proc.stdout:
                self.log.write(line)
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


@contextlib.contextmanager
def precision(mode: str, device: torch.device):
    """TF32 on or off as the mode says, and the autocast (bf16 or disabled) to use."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode != "float32"
    try:
        yield torch.autocast(device.type, dtype=torch.bfloat16, enabled=mode == "bf16")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _ms(seconds: float) -> float:
    return round(1e3 * seconds, 4)


# ---------------------------------------------------------------------------- preflight


def section_preflight(c: Check) -> dict:
    import importlib.util  # noqa: PLC0415

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cpu_count": os.cpu_count(),
           "missing_modules": [m for m in REQUIRED_MODULES
                               if importlib.util.find_spec(m) is None]}
    out["git_commit"] = _quiet(["git", "rev-parse", "HEAD"])
    if c.cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch sees no GPU (torch "
                               f"{torch.__version__}, CUDA build: {torch.version.cuda})")
        props = torch.cuda.get_device_properties(0)
        cap = torch.cuda.get_device_capability(0)
        out.update(gpu=props.name, capability=f"{cap[0]}.{cap[1]}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   cudnn=torch.backends.cudnn.version(),
                   driver=_quiet(["nvidia-smi", "--query-gpu=driver_version",
                                  "--format=csv,noheader"]))
        cuda_home = _cuda_home()
        out["cuda_home"] = cuda_home
        out["nvcc"] = (_quiet([f"{cuda_home}/bin/nvcc", "--version"]) or "").strip() \
            .splitlines()[-1:] if cuda_home else None
    for key, value in out.items():
        print(f"{key:16s} {value}")
    return out


def _quiet(cmd) -> str | None:
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _cuda_home() -> str | None:
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    # torch's own search: nvcc on PATH, then /usr/local/cuda
    from torch.utils.cpp_extension import CUDA_HOME  # noqa: PLC0415

    return CUDA_HOME


# ---------------------------------------------------------------------------- build


def section_build(c: Check) -> dict:
    if c.args.no_build:
        out = {"skipped": "--no-build"}
    else:
        env = {**os.environ, "LSS_WITH_CUDA": "ON" if c.cuda else "AUTO",
               "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 1)}
        out = {}
        if c.cuda:
            major, minor = torch.cuda.get_device_capability(0)
            env["TORCH_CUDA_ARCH_LIST"] = out["arch"] = f"{major}.{minor}"
            cuda_home = _cuda_home()
            if not cuda_home:
                raise RuntimeError("no CUDA toolkit found (nvcc): set CUDA_HOME")
            env["CUDA_HOME"] = out["cuda_home"] = cuda_home
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
        compiled = not any("FAILED:" in e or "CMake Error" in e for e in errors)
        if rc not in (0, None) and compiled:
            # pip refused to install (e.g. an "externally managed" system python) rather
            # than the compiler failing: build in place, which is all this script and the
            # ops tests need (the CLI tests need the `lsscore` module only the install gives)
            cmd = [sys.executable, "setup.py", "build_ext", "--inplace"]
            rc, more = c.run_logged(cmd, c.args.build_timeout - seconds, env, on_line)
            out.update(fallback=" ".join(cmd), fallback_rc=rc, seconds=seconds + more)
            print(f"build: pip failed, setup.py build_ext --inplace: rc {rc} in {more:.0f} s")
        if rc != 0:
            out["error_lines"] = errors
            out["error"] = (f"the build failed (rc {rc}, {out['seconds']:.0f} s): see "
                            "error_lines and gpu_check.log")
            print("\n".join(errors))
            return out
    import lsswgan_core  # noqa: PLC0415  (first import: after the build)

    out["build_info"] = info = lsswgan_core.build_info()
    print(info)
    if c.cuda and not info["cuda_kernels"]:
        raise RuntimeError("the extension was built without its CUDA kernels")
    return out


# ---------------------------------------------------------------------------- tests

_RESULT = re.compile(r"^(\S.*::\S.*?) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def run_pytest(c: Check, selection: list[str], timeout: float) -> dict:
    # ("errors", not "error": that key marks a section that failed to run)
    counts = dict.fromkeys(("passed", "failed", "skipped", "errors", "xfail", "xpass"), 0)
    keys = {"PASSED": "passed", "FAILED": "failed", "SKIPPED": "skipped", "ERROR": "errors",
            "XFAIL": "xfail", "XPASS": "xpass"}
    failures: list[str] = []

    def on_line(line):
        m = _RESULT.match(line)
        if m:
            counts[keys[m.group(2)]] += 1
            if m.group(2) in ("FAILED", "ERROR"):
                failures.append(m.group(1))

    cmd = [sys.executable, "-m", "pytest", "-v", "--tb=short", "-p", "no:cacheprovider",
           *selection]
    rc, seconds = c.run_logged(cmd, timeout, on_line=on_line)
    result = {"command": " ".join(cmd[2:]), "rc": rc, "seconds": seconds,
              "timed_out": rc is None, **counts, "failures": failures[:50]}
    print(f"pytest {' '.join(selection)}: {counts['passed']} passed, {counts['failed']} failed, "
          f"{counts['errors']} errors, {counts['skipped']} skipped in {seconds:.0f} s"
          + (" (stopped at the time limit)" if rc is None else ""))
    return result


def section_cuda_tests(c: Check) -> dict:
    if c.args.skip_tests:
        return {"skipped": "--skip-tests"}
    return run_pytest(c, ["tests/ops", "-k", "cuda"], c.args.cuda_tests_timeout)


def section_rest_tests(c: Check) -> dict:
    if c.args.skip_tests:
        return {"skipped": "--skip-tests"}
    timeout = min(c.args.rest_tests_timeout, c.remaining() - 5)
    if timeout < 20:
        return {"skipped": f"too little time for it ({timeout:.0f} s)"}
    # the modules that run differently with a GPU visible first (train() picks cuda by
    # default); this test file is left out, it would only rerun this script on the CPU
    return run_pytest(c, ["tests/test_train.py", "tests/test_models.py", "tests/test_stats.py",
                          "tests", "--ignore=tests/test_gpu_check.py", "-k", "not cuda"], timeout)


# ---------------------------------------------------------------------------- kernels


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


def torch_pk(n, device, bincount):
    """P(k) in plain torch with the same bins: rfftn, |F|^2 times the mode multiplicity, then
    torch.bincount (one cube) or scatter_add (any batch, differentiable). The mode table is
    built once outside the timing, as a user would."""
    from lsswgan_core.ops.power_spectrum import _mode_table  # noqa: PLC0415

    index, weight, _, n_modes, _ = _mode_table(n, BOX, None, None)
    keep = index >= 0
    idx = torch.as_tensor(np.where(keep, index + 1, 0), device=device)   # bin 0: left out
    w = torch.as_tensor(np.where(keep, weight, 0.0), dtype=torch.float32, device=device)
    inv = torch.as_tensor(BOX**3 / n**6 / np.maximum(n_modes, 1), dtype=torch.float32,
                          device=device)
    nbins = len(n_modes)

    def pk(x):
        power = torch.view_as_real(torch.fft.rfftn(x, dim=(-3, -2, -1))).square().sum(-1)
        power = power.reshape(*x.shape[:-3], -1) * w
        if bincount:
            return torch.bincount(idx, weights=power, minlength=nbins + 1)[1:] * inv
        out = power.new_zeros((*x.shape[:-3], nbins + 1))
        return out.scatter_add(-1, idx.expand_as(power), power)[..., 1:] * inv

    return pk


def maxpool_peaks(x, radius):
    """Local maxima over (2r+1)^3 with periodic wrap: circular pad, max_pool3d, equality
    (non-strict: a plateau counts, which random fields do not have)."""
    p = torch.nn.functional.pad(x[None, None], (radius,) * 6, mode="circular")
    return torch.nn.functional.max_pool3d(p, 2 * radius + 1, stride=1)[0, 0] == x


def rel_diff(ours, base) -> float:
    ours, base = ours.detach().double(), base.detach().double()
    return float((ours - base).abs().sum() / base.abs().sum().clamp_min(1e-300))


def section_kernels(c: Check) -> dict:
    from bm_histogram import torch_soft_histogram  # noqa: PLC0415
    from bm_paint import catalogue  # noqa: PLC0415

    from lsswgan_core import ops  # noqa: PLC0415

    s, dev = c.sizes, c.device
    rng = np.random.default_rng(0)
    gen = torch.Generator(device=dev).manual_seed(0)
    rows, errors = [], []

    def compare(op, size, ours, baselines, check=None):
        """Rows for ours and each baseline; `speedup` = baseline time / ours; rel_diff = the
        relative L1 difference of the results. A failing op is recorded and the next runs."""
        try:
            agree = check() if check else None
            t_ours = c.median(ours)
            rows.append({"op": op, "size": size, "impl": "lsscore", "ms": _ms(t_ours),
                         "speedup": 1.0, "rel_diff": agree})
            for name, fn in baselines:
                t = c.median(fn)
                rows.append({"op": op, "size": size, "impl": name, "ms": _ms(t),
                             "speedup": round(t / t_ours, 3)})
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{op} {size}: {type(exc).__name__}: {exc}"[:300])
            c.log.write(traceback.format_exc())
            print(errors[-1])
            return
        print(f"{op} {size}: " + ", ".join(f"{r['impl']} {r['ms']:.3g} ms"
                                           for r in rows if r["op"] == op and r["size"] == size))

    # paint: 2^24 particles -> 256^3, uniform and clustered (atomic contention), NGP and CIC
    n_part, n = s["paint_particles"], s["paint_grid"]
    size = f"2^{n_part.bit_length() - 1} -> {n}^3"
    for kind in ("uniform", "clustered"):
        pos = torch.from_numpy(catalogue(kind, n_part, rng)).to(dev)
        compare(f"paint ngp {kind}", size, lambda: ops.paint(pos, n, BOX, scheme="ngp"),
                [("torch index_put_", lambda: torch_ngp(pos, n)),
                 ("torch scatter_add_", lambda: torch_ngp(pos, n, scatter=True))],
                lambda: rel_diff(ops.paint(pos, n, BOX, scheme="ngp"), torch_ngp(pos, n)))
        compare(f"paint cic {kind}", size, lambda: ops.paint(pos, n, BOX, scheme="cic"),
                [("torch 8x index_put_", lambda: torch_cic(pos, n))],
                lambda: rel_diff(ops.paint(pos, n, BOX, scheme="cic"), torch_cic(pos, n)))
        del pos

    # power spectrum: one 256^3 field (vs rfftn + bincount and bare rfftn), and the training
    # shape 16 x 32^3 forward + backward (vs rfftn + scatter_add)
    n = s["pk_grid"]
    field = torch.randn(n, n, n, device=dev, generator=gen)
    ref = torch_pk(n, dev, bincount=True)
    compare("power_spectrum", f"{n}^3", lambda: ops.power_spectrum(field, BOX)[1],
            [("torch rfftn+bincount", lambda: ref(field)),
             ("torch rfftn alone", lambda: torch.fft.rfftn(field))],
            lambda: rel_diff(ops.power_spectrum(field, BOX)[1], ref(field)))
    b, m = s["batch_cubes"]
    cubes = torch.randn(b, m, m, m, device=dev, generator=gen)
    ref_b = torch_pk(m, dev, bincount=False)

    def fwd_bwd(fn):
        def run():
            x = cubes.clone().requires_grad_(True)
            fn(x).sum().backward()
        return run

    compare("power_spectrum fwd+bwd", f"{b}x{m}^3",
            fwd_bwd(lambda x: ops.power_spectrum(x, BOX)[1]),
            [("torch rfftn+scatter_add", fwd_bwd(ref_b))],
            lambda: rel_diff(ops.power_spectrum(cubes, BOX)[1], ref_b(cubes)))
    del field

    # find_peaks r=2, periodic
    n = s["peaks_grid"]
    field = torch.randn(n, n, n, device=dev, generator=gen)
    compare("find_peaks r=2", f"{n}^3", lambda: ops.find_peaks(field, 2),
            [("torch max_pool3d", lambda: maxpool_peaks(field, 2))],
            lambda: rel_diff(ops.find_peaks(field, 2), maxpool_peaks(field, 2)))
    del field

    # soft histogram of the training shape, forward and forward + backward
    nbins = s["hist_bins"]
    values = torch.rand(b, m**3, device=dev, generator=gen)
    compare("soft_histogram", f"{b}x{m}^3, {nbins} bins",
            lambda: ops.soft_histogram(values, 0.0, 1.0, nbins),
            [("torch 2x scatter_add", lambda: torch_soft_histogram(values, 0.0, 1.0, nbins))],
            lambda: rel_diff(ops.soft_histogram(values, 0.0, 1.0, nbins),
                             torch_soft_histogram(values, 0.0, 1.0, nbins)))

    def hist_fwd_bwd(fn):
        def run():
            x = values.clone().requires_grad_(True)
            fn(x, 0.0, 1.0, nbins).square().sum().backward()
        return run

    compare("soft_histogram fwd+bwd", f"{b}x{m}^3, {nbins} bins",
            hist_fwd_bwd(ops.soft_histogram), [("torch 2x scatter_add",
                                                hist_fwd_bwd(torch_soft_histogram))])
    print_table(rows, ["op", "size", "impl", "ms", "speedup", "rel_diff"])
    return {"rows": rows, **({"error": "; ".join(errors)} if errors else {})}


# ---------------------------------------------------------------------------- train steps


def _paper_config(width: float):
    from lsswgan_core.config import load_config  # noqa: PLC0415

    cfg = load_config(ROOT / "configs" / "paper.toml")
    cfg.model.width = width
    return cfg


def _state(c: Check, cfg, autocast, fused: bool = False, channels_last: bool = False):
    """A TrainState of fresh models, as the loop builds it, without a run directory on disk;
    optionally with fused Adam and the models in channels-last 3D memory format."""
    from lsswgan_core.gan.distributed import Distributed  # noqa: PLC0415
    from lsswgan_core.gan.run import Reporter, RunDir, build_models  # noqa: PLC0415
    from lsswgan_core.gan.train import TrainState  # noqa: PLC0415

    torch.manual_seed(0)
    critic, generator = (m.to(c.device) for m in build_models(cfg))
    if channels_last:
        critic, generator = (m.to(memory_format=torch.channels_last_3d)
                             for m in (critic, generator))
    oc = cfg.optim
    adam = {"betas": oc.betas, **({"fused": True} if fused else {})}
    return TrainState(
        config=cfg, device=str(c.device), dist=Distributed(str(c.device)),
        run=RunDir(c.work / "steps_run"), critic=critic, generator=generator,
        opt_critic=torch.optim.Adam(critic.parameters(), oc.lr_critic or oc.lr, **adam),
        opt_generator=torch.optim.Adam(generator.parameters(), oc.lr_generator or oc.lr, **adam),
        reporter=Reporter(None),
        dataset_attrs="{}", generator_ddp=generator, autocast=autocast)


def _real(c: Check, batch: int, gen) -> torch.Tensor:
    """Stand-in real cubes in [0, 1] with a skewed, data-like distribution."""
    return torch.rand(batch, 1, 32, 32, 32, device=c.device, generator=gen) ** 4


def step_row(c: Check, mode: str, batch: int, autocast) -> dict:
    """Seconds per critic step, generator step, generator step with the summary loss (the
    loop's own functions), and the summary loss alone (forward and backward)."""
    from lsswgan_core.gan.losses import summary_loss  # noqa: PLC0415
    from lsswgan_core.gan.train import critic_step, generator_step, random_stream  # noqa: PLC0415

    s = c.sizes
    cfg = _paper_config(s["width"])
    cfg.train.batch_size = batch
    c.reset_peak()
    state = _state(c, cfg, autocast)
    rng = random_stream(c.device, 0, 0, 0, 1)
    real = _real(c, batch, rng)
    timed = {"critic_step": lambda: critic_step(state, real, rng, 0, 0),
             "generator_step": lambda: generator_step(state, rng, False, 0, 0),
             "generator_summary_step": lambda: generator_step(state, rng, True, 0, 0)}
    row = {"width": s["width"], "batch": batch, "precision": mode}
    for name, fn in timed.items():
        row[f"{name}_ms"] = _ms(c.median(fn, s["step_repeats"], s["step_warmup"]))
    with torch.no_grad(), autocast:
        fake = state.generator(torch.randn(batch, cfg.model.latent_dim, device=c.device,
                                           generator=rng)).float()
    fake.requires_grad_(True)

    def summary_only():
        summary_loss(real, fake, cfg.summary)[0].backward()

    row["summary_loss_ms"] = _ms(c.median(summary_only, s["step_repeats"], s["step_warmup"]))
    row["peak_mem_mib"] = c.peak_mib()
    return row


def dg_row(c: Check, mode: str) -> dict:
    """The duality gap's two steps, as lsswgan_core.gan.duality_gap takes them (no autocast, at
    duality_gap.batch_size): the critic copy against the fixed generator (critic loss with
    the penalty) and the generator copy against the fixed critic (eval mode)."""
    from lsswgan_core.gan.losses import critic_loss  # noqa: PLC0415
    from lsswgan_core.gan.run import build_models  # noqa: PLC0415

    s = c.sizes
    cfg = _paper_config(s["width"])
    dc, b = cfg.duality_gap, cfg.duality_gap.batch_size
    torch.manual_seed(0)
    critic, generator = (m.to(c.device) for m in build_models(cfg))
    rng = torch.Generator(device=c.device).manual_seed(0)
    real = _real(c, b, rng)
    d_copy, g_fixed = copy.deepcopy(critic).train(), copy.deepcopy(generator).train()
    g_copy, d_fixed = copy.deepcopy(generator).train(), copy.deepcopy(critic).eval()
    for p in [*g_fixed.parameters(), *d_fixed.parameters()]:
        p.requires_grad_(False)
    opt_d = torch.optim.Adam(d_copy.parameters(), lr=dc.lr, betas=cfg.optim.betas)
    opt_g = torch.optim.Adam(g_copy.parameters(), lr=dc.lr, betas=cfg.optim.betas)

    def z():
        return torch.randn(b, cfg.model.latent_dim, generator=rng, device=c.device)

    def critic_copy_step():
        with torch.no_grad():
            fake = g_fixed(z())
        loss = critic_loss(d_copy, real, fake, cfg.train.gp_lambda, rng)[0]
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()

    def generator_copy_step():
        loss = -d_fixed(g_copy(z())).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()

    t_c = c.median(critic_copy_step, s["step_repeats"], s["step_warmup"])
    t_g = c.median(generator_copy_step, s["step_repeats"], s["step_warmup"])
    steps = PAPER["dg_epochs"] * (PAPER["dg_cubes"] // PAPER["dg_batch"])
    return {"width": s["width"], "batch": b, "precision": mode,
            "dg_critic_step_ms": _ms(t_c), "dg_generator_step_ms": _ms(t_g),
            # the paper's gap: 20 passes over 128 cubes for each copy (M measures left out)
            "paper_gap_estimate_s": round(steps * (t_c + t_g), 3)}


OPTIONS = {"baseline": {}, "cudnn.benchmark": {"benchmark": True}, "fused Adam": {"fused": True},
           "channels_last_3d": {"channels_last": True},
           "all three": {"benchmark": True, "fused": True, "channels_last": True}}


def option_row(c: Check, name: str, opts: dict) -> dict:
    """The paper's steps (first batch size, TF32) with one of the usual speed-ups, none of
    which the loop uses yet: what each would give."""
    from lsswgan_core.gan.train import critic_step, generator_step, random_stream  # noqa: PLC0415

    s, batch = c.sizes, c.sizes["batches"][0]
    cfg = _paper_config(s["width"])
    cfg.train.batch_size = batch
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = opts.get("benchmark", False)
    try:
        with precision("tf32", c.device) as autocast:
            state = _state(c, cfg, autocast, opts.get("fused", False),
                           opts.get("channels_last", False))
            rng = random_stream(c.device, 0, 0, 0, 1)
            real = _real(c, batch, rng)
            if opts.get("channels_last"):
                real = real.contiguous(memory_format=torch.channels_last_3d)
            t_c = c.median(lambda: critic_step(state, real, rng, 0, 0), s["step_repeats"],
                           s["step_warmup"])
            t_g = c.median(lambda: generator_step(state, rng, True, 0, 0), s["step_repeats"],
                           s["step_warmup"])
    finally:
        torch.backends.cudnn.benchmark = saved
    return {"option": name, "batch": batch, "precision": "tf32", "critic_step_ms": _ms(t_c),
            "generator_summary_step_ms": _ms(t_g)}


def section_train_steps(c: Check) -> dict:
    rows, dg_rows, errors = [], [], []
    for mode in PRECISIONS:
        with precision(mode, c.device) as autocast:
            for batch in c.sizes["batches"]:
                try:
                    rows.append(step_row(c, mode, batch, autocast))
                except Exception as exc:  # noqa: BLE001 - one precision failing is a finding
                    errors.append(f"{mode} batch {batch}: {type(exc).__name__}: {exc}")
                    c.log.write(traceback.format_exc())
            if mode != "bf16":   # the duality gap runs without autocast
                try:
                    dg_rows.append(dg_row(c, mode))
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"duality gap {mode}: {type(exc).__name__}: {exc}")
                    c.log.write(traceback.format_exc())
    option_rows = []
    for name, opts in OPTIONS.items():
        try:
            option_rows.append(option_row(c, name, opts))
        except Exception as exc:  # noqa: BLE001 - an option that fails is a finding, not a stop
            option_rows.append({"option": name, "failed": f"{type(exc).__name__}: {exc}"[:200]})
            c.log.write(traceback.format_exc())
    base = option_rows[0]
    for r in option_rows:
        if "critic_step_ms" in r and "critic_step_ms" in base:
            r["speedup"] = round((base["critic_step_ms"] + base["generator_summary_step_ms"])
                                 / (r["critic_step_ms"] + r["generator_summary_step_ms"]), 3)
    print_table(rows, ["width", "batch", "precision", "critic_step_ms", "generator_step_ms",
                       "generator_summary_step_ms", "summary_loss_ms", "peak_mem_mib"])
    print_table(dg_rows, ["width", "batch", "precision", "dg_critic_step_ms",
                          "dg_generator_step_ms", "paper_gap_estimate_s"])
    print_table(option_rows, ["option", "batch", "precision", "critic_step_ms",
                              "generator_summary_step_ms", "speedup", "failed"])
    out = {"rows": rows, "duality_gap_rows": dg_rows, "option_rows": option_rows}
    if errors:
        out["error"] = "; ".join(errors)
    return out


# ---------------------------------------------------------------------------- training


def project(records: list[dict], critic_steps_per_epoch: int, dg_cfg, dg_cubes: int,
            direct_dg_s: float | None = None) -> dict:
    """The paper's 500 epochs with the duality gap, from a run's metrics.jsonl records.

    Epoch e ends at the largest `elapsed` of its records; its training time is that minus
    the previous epoch's end minus its duality gap (`dg_seconds`). The first epoch (warm-up,
    autotuning) is left out when there are others; the median is scaled from this run's
    critic steps per epoch to the paper's 62, and the median gap from this run's gap work
    (passes x batches) to the paper's 20 x 128/8."""
    ends, gaps = {}, {}
    for r in records:
        if "epoch" in r and "elapsed" in r:
            ends[r["epoch"]] = max(ends.get(r["epoch"], 0.0), r["elapsed"])
        if "dg_seconds" in r:
            gaps[r["epoch"]] = r["dg_seconds"]
    if not ends:
        raise ValueError("no epoch ended in the metrics")
    epochs = sorted(ends)
    times = [ends[e] - ends.get(e - 1, 0.0) - gaps.get(e, 0.0) for e in epochs]
    kept = times[1:] if len(times) > 1 else times
    epoch_s = statistics.median(kept)
    paper_epoch_s = epoch_s * PAPER["epoch_critic_steps"] / critic_steps_per_epoch
    dg_s = statistics.median(gaps.values()) if gaps else direct_dg_s
    out = {"epochs_measured": len(epochs), "epoch_s": round(epoch_s, 4),
           "critic_steps_per_epoch": critic_steps_per_epoch,
           "paper_epoch_s": round(paper_epoch_s, 4), "gaps_measured": len(gaps),
           "dg_s": None if dg_s is None else round(dg_s, 4),
           "dg_source": "metrics" if gaps else ("direct" if dg_s is not None else None)}
    if dg_s is None:
        out["paper_500_epochs_s"] = None
        return out
    work = dg_cfg.epochs * (dg_cubes // dg_cfg.batch_size)
    paper_dg_s = dg_s * PAPER["dg_epochs"] * (PAPER["dg_cubes"] // PAPER["dg_batch"]) / work
    total = PAPER["epochs"] * paper_epoch_s + PAPER["epochs"] // PAPER["dg_every"] * paper_dg_s
    out.update(paper_dg_s=round(paper_dg_s, 4), paper_500_epochs_s=round(total, 1),
               paper_500_epochs_h=round(total / 3600, 3))
    return out


def section_training(c: Check) -> dict:
    from lsswgan_core.config import DataConfig  # noqa: PLC0415
    from lsswgan_core.data import Dataset, preprocess  # noqa: PLC0415
    from lsswgan_core.gan.duality_gap import duality_gap  # noqa: PLC0415
    from lsswgan_core.gan.run import (RunDir, load_checkpoint,  # noqa: PLC0415
                                  models_from_checkpoint, read_metrics)
    from lsswgan_core.sim.simulate import write_suite  # noqa: PLC0415
    from lsswgan_core.gan.train import train  # noqa: PLC0415

    s = c.sizes
    work = c.work / "training"
    t = time.perf_counter()
    sims = write_suite(work / "sims", seed=0, mesh_factor=1, show_progress=False, **s["suite"])
    data_cfg = DataConfig(grid=s["grid"], cube=32, split_cubes=s["split_cubes"],
                          length_unit="Mpc/h")
    data = preprocess(sims, work / "dataset.h5", data_cfg, show_progress=False)
    dataset_s = time.perf_counter() - t
    print(f"dataset: {s['suite']}, grid {s['grid']}, cubes {s['split_cubes']} "
          f"in {dataset_s:.1f} s")

    cfg = _paper_config(s["width"])
    cfg.data = data_cfg
    if c.args.quick:   # a tiny model, an epoch of 5 critic steps, a gap of 2 x 2 steps
        cfg.train.batch_size = 4
        cfg.duality_gap.batch_size, cfg.duality_gap.epochs, cfg.duality_gap.every = 4, 1, 1
    # leave about a minute for sampling and the rest of the tests; an epoch (and a gap)
    # that ends past the limit still finishes
    limit = min(s["train_seconds"], c.remaining() - 60)
    cfg.train.time_limit = max(limit, 1.0 if c.args.quick else 20.0)
    run = RunDir(work / "run")
    t = time.perf_counter()
    train(data, run.root, cfg, device=c.args.device, show_progress=False)
    c.sync()
    train_s = time.perf_counter() - t
    records = read_metrics(run.metrics)
    last = records[-1]
    dataset = Dataset(data)
    n_dg = len(dataset.split("dg"))
    steps = len(dataset.split("train")) // cfg.train.batch_size
    direct = None
    if not any("dg_seconds" in r for r in records):   # no gap was due yet: time one now
        print("no duality gap was reached: timing one on the last checkpoint")
        critic, generator, _, _ = models_from_checkpoint(load_checkpoint(run.last, c.args.device),
                                                         c.args.device)
        t = time.perf_counter()
        duality_gap(critic, generator, dataset.split("dg"), cfg.duality_gap,
                    cfg.optim.betas, cfg.train.gp_lambda, device=str(c.device))
        c.sync()
        direct = time.perf_counter() - t
    projection = project(records, steps, cfg.duality_gap, n_dg, direct)
    _summary_off(projection, c.report.get("train_steps", {}).get("rows", []), cfg)
    c.checkpoint = run.last
    out = {"dataset_s": round(dataset_s, 2), "train_wall_s": round(train_s, 2),
           "time_limit_s": cfg.train.time_limit, "width": cfg.model.width,
           "batch": cfg.train.batch_size, "duality_gap": {
               "every": cfg.duality_gap.every, "epochs": cfg.duality_gap.epochs,
               "batch_size": cfg.duality_gap.batch_size, "cubes": n_dg},
           "epochs_done": last.get("epoch"), "generator_steps": last.get("step"),
           "critic_steps": last.get("critic_step"),
           "sec_per_critic_step": _last(records, "sec_per_critic_step"),
           "sec_per_generator_step": _last(records, "sec_per_generator_step"),
           "wasserstein": _last(records, "wasserstein"),
           "projection": projection}
    print(json.dumps(projection, indent=1))
    return out


def _summary_off(projection: dict, rows: list[dict], cfg) -> None:
    """The run above had the summary loss on in every epoch; the paper turns it off after
    170 of its 500. Take the saving from the step timings (generator step with and without
    it, at the run's batch and precision), 62/5 generator steps per paper epoch."""
    mode = "bf16" if cfg.train.bf16 else ("tf32" if cfg.train.tf32 else "float32")
    row = next((r for r in rows if r["batch"] == cfg.train.batch_size and r["precision"] == mode
                and r["width"] == cfg.model.width), None)
    if row is None or projection.get("paper_500_epochs_s") is None:
        return
    saving = max(0.0, row["generator_summary_step_ms"] - row["generator_step_ms"]) / 1e3
    off = PAPER["epochs"] - min(cfg.train.summary_epochs, PAPER["epochs"])
    gen_steps = PAPER["epoch_critic_steps"] / cfg.train.n_critic
    projection["paper_500_epochs_summary_off_s"] = round(
        projection["paper_500_epochs_s"] - off * gen_steps * saving, 1)


def _last(records, key):
    values = [r[key] for r in records if key in r]
    return values[-1] if values else None


# ---------------------------------------------------------------------------- sampling


def section_sampling(c: Check) -> dict:
    """The bare generator (standing BatchNorm statistics, i.e. eval mode) per precision and
    batch, and lsswgan_core.gan.sample.generate on the training run's checkpoint (standing
    statistics re-estimated, cubes copied to the host)."""
    from lsswgan_core.gan.run import build_models  # noqa: PLC0415
    from lsswgan_core.gan.sample import generate  # noqa: PLC0415

    s = c.sizes
    cfg = _paper_config(s["width"])
    torch.manual_seed(0)
    generator = build_models(cfg)[1].to(c.device).eval()
    rows = []
    for mode in PRECISIONS:
        with precision(mode, c.device) as autocast:
            for batch in s["sample_batches"]:
                z = torch.randn(batch, cfg.model.latent_dim, device=c.device)

                def forward():
                    with torch.no_grad(), autocast:
                        generator(z)

                c.reset_peak()
                t = c.median(forward, s["step_repeats"], s["step_warmup"])
                rows.append({"width": s["width"], "precision": mode, "batch": batch,
                             "ms": _ms(t), "cubes_per_s": round(batch / t, 1),
                             "peak_mem_mib": c.peak_mib()})
    print_table(rows, ["width", "precision", "batch", "ms", "cubes_per_s", "peak_mem_mib"])
    out = {"rows": rows}
    checkpoint = c.checkpoint
    if checkpoint is None:
        out["generate"] = "no checkpoint (the training section failed)"
    else:
        with precision("tf32", c.device):
            generate(checkpoint, s["generate_n"], batch=s["generate_batch"],
                     device=str(c.device))   # warm-up
            _, _, rate = generate(checkpoint, s["generate_n"], batch=s["generate_batch"],
                                  device=str(c.device))
        out["generate"] = {"n": s["generate_n"], "batch": s["generate_batch"],
                           "cubes_per_s": round(rate, 1)}
        print(f"generate(): {s['generate_n']} cubes in batches of {s['generate_batch']}: "
              f"{rate:.0f} cubes/s")
    return out


# ---------------------------------------------------------------------------- summary


def summary_rows(report: dict) -> list[dict]:
    """One line per headline number, with the issue's target where it has one."""
    rows = []

    on_gpu = report.get("args", {}).get("device") == "cuda"

    def add(check, value, target=None, ok=None):
        """ok against the issue's targets, which are for an H200: left blank on the CPU."""
        rows.append({"check": check, "value": value, "target": target,
                     "ok": None if ok is None or not on_gpu else ("yes" if ok else "NO")})

    def failed(name):
        section = report.get(name, {})
        if "error" in section:
            add(name, "error: " + section["error"][:80])
        return section

    build = failed("build")
    if "seconds" in build:
        add("build (s)", build["seconds"])
    for name in ("cuda_tests", "rest_tests"):
        t = failed(name)
        if "passed" in t:
            cut = " (cut at the time limit)" if t["timed_out"] else ""
            add(name, f"{t['passed']} passed, {t['failed']} failed, {t['errors']} errors, "
                      f"{t['skipped']} skipped{cut}, rc {t['rc']}",
                "all pass", t["rc"] == 0)
    kernels = failed("kernels").get("rows", [])

    def speedup(op, impl):
        return next((r["speedup"] for r in kernels if r["op"] == op and r["impl"] == impl), None)

    for op, impl, key in (("paint ngp uniform", "torch index_put_", "paint"),
                          ("paint ngp clustered", "torch index_put_", "paint"),
                          ("paint cic uniform", "torch 8x index_put_", "paint"),
                          ("find_peaks r=2", "torch max_pool3d", "peaks"),
                          ("soft_histogram", "torch 2x scatter_add", "histogram")):
        x = speedup(op, impl)
        if x is not None:
            add(f"{op} vs {impl} (x)", x, f">= {TARGETS[key]:g}", x >= TARGETS[key])
    x = speedup("power_spectrum", "torch rfftn alone")
    if x:
        add("power_spectrum / bare rfftn", round(1 / x, 3), f"<= {TARGETS['pk_over_rfftn']:g}",
            1 / x <= TARGETS["pk_over_rfftn"])
    steps = failed("train_steps").get("rows", [])
    for r in steps:
        add(f"critic / generator+S step, batch {r['batch']} {r['precision']} (ms)",
            f"{r['critic_step_ms']:.4g} / {r['generator_summary_step_ms']:.4g}")
    options = [r for r in report.get("train_steps", {}).get("option_rows", []) if "speedup" in r]
    if len(options) > 1:
        best = max(options[1:], key=lambda r: r["speedup"])
        add("best step option vs baseline (x)", f"{best['speedup']} ({best['option']})")
    training = failed("training")
    projection = training.get("projection", {})
    if projection:
        add("training run: epochs, gaps, wall (s)", f"{training['epochs_done']}, "
            f"{projection['gaps_measured']} ({projection['dg_source']}), {training['train_wall_s']}")
    if projection.get("paper_500_epochs_s") is not None:
        value = projection["paper_500_epochs_s"]
        add("paper 500 epochs + gap, projected (min)", round(value / 60, 2),
            f"<= {TARGETS['projection_s'] / 60:g}", value <= TARGETS["projection_s"])
    sampling = failed("sampling")
    best = max((r["cubes_per_s"] for r in sampling.get("rows", [])), default=None)
    if best is not None:
        add("sampling, bare generator, best (cubes/s)", best,
            f">= {TARGETS['sampling_cubes_per_s']:g}", best >= TARGETS["sampling_cubes_per_s"])
    if isinstance(sampling.get("generate"), dict):
        rate = sampling["generate"]["cubes_per_s"]
        add("sampling, generate() (cubes/s)", rate, f">= {TARGETS['sampling_cubes_per_s']:g}",
            rate >= TARGETS["sampling_cubes_per_s"])
    peaks = [r["peak_mem_mib"] for r in steps if r.get("peak_mem_mib") is not None]
    add("peak GPU memory, train steps (MiB)", round(max(peaks), 1) if peaks else None)
    return rows


# ---------------------------------------------------------------------------- main


SECTIONS = [("preflight", section_preflight), ("build", section_build),
            ("cuda_tests", section_cuda_tests), ("kernels", section_kernels),
            ("train_steps", section_train_steps), ("training", section_training),
            ("sampling", section_sampling), ("rest_tests", section_rest_tests)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, width 1/8, batch 4, a few seconds of training")
    parser.add_argument("--no-build", action="store_true", help="use the extension as built")
    parser.add_argument("--skip-tests", action="store_true", help="run no pytest")
    parser.add_argument("--out", type=Path, default=HERE / "gpu_check")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the whole run; the training and the rest of the "
                             "tests shrink to fit (default 450)")
    parser.add_argument("--build-timeout", type=float, default=420.0)
    parser.add_argument("--cuda-tests-timeout", type=float, default=180.0)
    parser.add_argument("--rest-tests-timeout", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    c = Check(args)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(stdout, c.log), Tee(stderr, c.log)
    try:
        print(f"gpu_check: device {args.device}, {'quick' if args.quick else 'full'} sizes, "
              f"budget {args.budget:.0f} s, report in {args.out}")
        for name, fn in SECTIONS:
            if name != "preflight" and "error" in c.report.get("preflight", {}) and c.cuda:
                c.report[name] = {"error": "skipped: the preflight failed"}
                c.failed.append(name)
                continue
            if name not in ("preflight", "build") and "error" in c.report.get("build", {}):
                c.report[name] = {"error": "skipped: the build failed"}
                c.failed.append(name)
                continue
            c.section(name, fn)
        print("\n=== summary ===")
        try:
            c.report["summary"] = summary_rows(c.report)
            print_table(c.report["summary"], ["check", "value", "target", "ok"])
        except Exception as exc:  # noqa: BLE001 - the report itself is already written
            c.report["summary"] = [{"check": "summary", "value": f"{type(exc).__name__}: {exc}"}]
            c.failed.append("summary")
            c.log.write(traceback.format_exc())
        c.report["failed_sections"] = c.failed
        c.report["wall_s"] = round(time.perf_counter() - c.t0, 2)
        write_json(args.out / "gpu_check.json", c.report)
        print(f"log: {args.out / 'gpu_check.log'}; {c.report['wall_s']:.0f} s in all; "
              + (f"FAILED sections: {', '.join(c.failed)}" if c.failed else "no section failed"))
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        c.log.close()
        shutil.rmtree(c.work, ignore_errors=True)
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
