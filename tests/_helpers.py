"""Helpers shared by the tests and bench/ (the one module bench imports from tests/):

- small synthetic datasets in the format `lsscore preprocess` writes (`write_dataset`);
- the tiny training config of the training tests and bench/stress.py (`tiny_config`);
- the reliability machinery, used by tests/test_reliability.py (a sample of each kind, fast) and
  bench/stress.py (all of it, long): commands run under a file-size limit, killed and rerun,
  run twice at once; snapshots corrupted at random; hostile arguments."""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ datasets and tiny runs


def lognormal_cubes(n_cubes: int, n: int, seed: int, sigma: float = 0.8) -> np.ndarray:
    """rho/rhobar cubes: exp of a smoothed Gaussian field, mean 1 (a crude cosmic web)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n)[:, None, None] ** 2 + np.fft.fftfreq(n)[None, :, None] ** 2 \
        + np.fft.rfftfreq(n)[None, None, :] ** 2
    filt = np.exp(-k * (n / 6.0) ** 2)
    out = np.empty((n_cubes, n, n, n))
    for i in range(n_cubes):
        g = np.fft.irfftn(np.fft.rfftn(rng.standard_normal((n, n, n))) * filt, s=(n, n, n), axes=(0, 1, 2))
        g *= sigma / g.std()
        out[i] = np.exp(g - sigma**2 / 2)
    return out


def write_dataset(path, sizes=(32, 8, 16), n: int = 32, seed: int = 0, box_size: float = 256.0):
    """train/val/dg splits of transformed lognormal cubes with the preprocess attributes."""
    from lsswgan_core.data import Transform  # noqa: PLC0415

    raw = {name: lognormal_cubes(m, n, seed + i) for i, (name, m) in
           enumerate(zip(("train", "val", "dg"), sizes))}
    transform = Transform(x_max=float(raw["train"].max()))
    with h5py.File(path, "w") as f:
        for name, x in raw.items():
            f.create_dataset(name, data=np.clip(transform(x), 0, None).astype(np.float32),
                             chunks=(1, n, n, n) if len(x) else None)
        attrs = {**transform.attrs(), "x_max": transform.x_max, "box_size": box_size,
                 "cube_size": box_size * n / 128, "grid": 128, "cube": n, "cubes_per_box": 8,
                 "scheme": "ngp", "seed": seed, "format_version": 1}
        for key, value in attrs.items():
            f.attrs[key] = value
    return path


# the training tests' run: 3 epochs of a width-1/8 model, the duality gap after epoch 2
TINY = {"model": {"width": 0.125},
        "train": {"epochs": 3, "batch_size": 4, "n_critic": 2, "summary_epochs": 2,
                  "log_every": 1, "checkpoint_every": 2},
        "duality_gap": {"every": 2, "epochs": 1, "batch_size": 4}}


def tiny_config(**sections):
    """The TINY config with some keys of some sections replaced, e.g. train={"epochs": 2}."""
    from lsswgan_core.config import config_from_dict  # noqa: PLC0415

    table = json.loads(json.dumps(TINY))
    for name, values in sections.items():
        table.setdefault(name, {}).update(values)
    return config_from_dict(table)


def write_toml(path, cfg):
    from lsswgan_core.config import config_to_toml  # noqa: PLC0415

    path.write_text(config_to_toml(cfg))
    return path


def assert_same_checkpoint(a, b):
    """Two checkpoints hold bit-identical steps, weights, buffers and optimiser states."""
    from lsswgan_core.gan.run import load_checkpoint  # noqa: PLC0415

    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert (ca["epoch"], ca["generator_step"], ca["critic_step"]) == \
        (cb["epoch"], cb["generator_step"], cb["critic_step"])
    for key in ("critic", "generator"):
        assert ca[key].keys() == cb[key].keys()
        for name in ca[key]:   # weights and buffers (BatchNorm statistics, spectral-norm u, v)
            assert torch.equal(ca[key][name], cb[key][name]), f"{key}.{name} differs"
    for key in ("opt_critic", "opt_generator"):
        for pid, state in ca[key]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, cb[key]["state"][pid][name]), f"{key} {pid} {name}"


# ------------------------------------------------------------------ commands in a subprocess


def lsscore(*args, fsize: int | None = None, timeout: float = 600, env=None, **popen):
    """`python -m lsscore ARGS` in a subprocess (one thread), optionally under a file-size
    limit of `fsize` bytes (RLIMIT_FSIZE, as a full disk or a quota: writes fail with EFBIG)."""
    def limit():
        os.nice(5)
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    argv = [sys.executable, "-m", "lsscore", *map(str, args)]
    if popen.pop("background", False):
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=limit, env=environment, cwd=REPO, **popen)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limit, env=environment, cwd=REPO, **popen)


def one_line_failure(res) -> str:
    """Asserts a command failed cleanly: a non-zero exit (not a signal), no traceback, one
    line that starts with 'Error:' on stderr (progress bars aside). Returns that line."""
    assert res.returncode > 0, f"exit {res.returncode} (a signal?)\n{res.stderr[-2000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-4000:]
    lines = [ln for ln in res.stderr.replace("\r", "\n").splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, res.stderr[-2000:]
    return lines[0]


def temporaries(root) -> list[Path]:
    """Every temporary file under root (what a failed or killed write may leave)."""
    return sorted(p for p in Path(root).rglob("*") if p.name.endswith(".tmp")
                  or ".tmp." in p.name)


def tree_bytes(root) -> dict[str, bytes]:
    """{relative path: content} of every file under root."""
    root = Path(root)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def describe_errno(code: int) -> str:
    return errno.errorcode.get(code, str(code))


def copy_run(src, dst):
    shutil.copytree(src, dst)
    (Path(dst) / "lock").unlink(missing_ok=True)
    return Path(dst)


def kill_after(proc: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL `proc` after `seconds` unless it ended; True when it was killed."""
    try:
        proc.wait(timeout=seconds)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


# ------------------------------------------------------------------ corrupted snapshots

FORMATS = ("gadget2-format1", "gadget2-format2", "gadget4", "hdf5-gadget", "hdf5-swift", "numpy")
BOX = 100.0


def write_snapshot(fmt: str, directory: Path, n: int = 40, seed: int = 0) -> tuple[Path, dict]:
    """A small one-file snapshot of `fmt` and the open_snapshot keywords that read it."""
    from lsswgan_core.io import write_gadget, write_hdf5

    pos = np.random.default_rng(seed).uniform(0, BOX, (n, 3))
    directory.mkdir(parents=True, exist_ok=True)
    if fmt == "gadget2-format1":
        (path,) = write_gadget(directory / "snap", pos, BOX)
        return path, {"length_unit": "Mpc/h"}
    if fmt == "gadget2-format2":
        (path,) = write_gadget(directory / "snap", pos, BOX, snap_format=2, endian=">")
        return path, {"length_unit": "Mpc/h"}
    if fmt == "gadget4":
        (path,) = write_gadget(directory / "snap", pos, BOX, flavour="gadget4")
        return path, {"length_unit": "Mpc/h"}
    if fmt in ("hdf5-gadget", "hdf5-swift"):
        flavour = "gadget" if fmt == "hdf5-gadget" else "swift"
        (path,) = write_hdf5(directory / "snap", pos, BOX, flavour=flavour)
        return path, {"length_unit": "Mpc/h"}
    if fmt == "numpy":
        path = directory / "snap.npy"
        np.save(path, pos)
        return path, {"box_size": BOX}
    raise ValueError(fmt)


def payload_ranges(raw: bytes, fmt: str, path: Path) -> list[range]:
    """Where the particle data lives (position, velocity and ID payloads): a flip there gives a
    different but valid file, which no reader can tell from the original."""
    if fmt == "numpy":
        header = 10 + int.from_bytes(raw[8:10], "little")
        return [range(header, len(raw))]
    if fmt.startswith("hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            data = f["PartType1/Coordinates"][...].tobytes()
        start = raw.find(data)
        assert start >= 0
        return [range(start, start + len(data))]
    endian = ">" if fmt == "gadget2-format2" else "<"
    label = 16 if fmt == "gadget2-format2" else 0
    ranges, at, first = [], 0, True
    while at + label + 4 <= len(raw):
        at += label
        size = int(np.frombuffer(raw[at:at + 4], endian + "u4")[0])
        if not first:
            ranges.append(range(at + 4, at + 4 + size))
        first = False
        at += size + 8
    return ranges


def structure_offsets(raw: bytes, fmt: str, path: Path) -> list[int]:
    """Byte offsets of the structure (headers, block markers and labels, HDF5 metadata, the
    .npy header): everything but the particle payloads."""
    inside = np.zeros(len(raw), bool)
    for r in payload_ranges(raw, fmt, path):
        inside[r.start:r.stop] = True
    return np.flatnonzero(~inside).tolist()


def corrupt(raw: bytes, offsets: list[int], rng: np.random.Generator) -> tuple[bytes, str]:
    """One random corruption: a truncation, bit flips aimed at the structure (`offsets`), or
    an absurd count written over a structure word."""
    raw = bytearray(raw)
    kind = str(rng.choice(["truncate", "flip", "flip", "count"]))
    if kind == "truncate":
        return bytes(raw[:int(rng.integers(0, len(raw)))]), kind
    if kind == "flip":
        for _ in range(int(rng.integers(1, 5))):
            i = offsets[int(rng.integers(len(offsets)))]
            raw[i] ^= 1 << int(rng.integers(8))
        return bytes(raw), kind
    i = offsets[int(rng.integers(len(offsets)))] & ~3
    word = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 2**31 + int(rng.integers(1 << 20)),
                       int(rng.integers(1 << 32))])
    size = int(rng.choice([4, 8]))
    value = int(word) | ((int(word) << 32) if size == 8 else 0)
    raw[i:i + size] = value.to_bytes(size, rng.choice(["little", "big"]))[:len(raw[i:i + size])]
    return bytes(raw), kind


def read_positions(snapshot, ptype: int = 1) -> np.ndarray:
    """All positions of a type at once, (N, 3) in Mpc/h (small snapshots only)."""
    parts = list(snapshot.iter_positions(ptype))
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def read_all(path, kwargs) -> np.ndarray:
    from lsswgan_core.io import open_snapshot

    return read_positions(open_snapshot(path, **kwargs))


def fuzz_format(fmt: str, count: int, workdir: Path, seed: int = 0) -> dict:
    """`count` corrupted copies of a snapshot of `fmt`, each read in full. Returns the counts
    per outcome; any outcome but a SnapshotError or a read equal to the original is listed
    in 'failures' (with its kind and the exception), never raised."""
    from lsswgan_core.io import SnapshotError

    import logging

    logging.getLogger("lsscore.io").setLevel(logging.ERROR)  # header warnings by the thousand
    path, kwargs = write_snapshot(fmt, workdir / fmt, seed=seed)
    original_bytes = path.read_bytes()
    original = read_all(path, kwargs)
    offsets = structure_offsets(original_bytes, fmt, path)
    rng = np.random.default_rng([seed, FORMATS.index(fmt)])
    outcome = {"count": count, "snapshot_error": 0, "identical": 0, "rescaled": 0,
               "failures": []}
    for _ in range(count):
        data, kind = corrupt(original_bytes, offsets, rng)
        path.write_bytes(data)
        try:
            out = read_all(path, kwargs)
        except SnapshotError:
            outcome["snapshot_error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is the finding
            outcome["failures"].append((kind, f"{type(exc).__name__}: {exc}"[:300], data))
            continue
        if out.shape == original.shape and np.array_equal(out, original):
            outcome["identical"] += 1
        elif fmt.startswith("hdf5") and out.shape == original.shape and _rescaled(out, original):
            # a changed unit or h attribute: a valid file of other units, read consistently
            # (positions and box scaled alike, every position checked against the box)
            outcome["rescaled"] += 1
        else:
            outcome["failures"].append((kind, f"a different read: shape {out.shape}", data))
    path.write_bytes(original_bytes)
    return outcome


def _rescaled(out: np.ndarray, original: np.ndarray) -> bool:
    ratio = out[original != 0] / original[original != 0]
    return bool(ratio.size > 0 and np.isfinite(ratio).all() and ratio[0] > 0
                and np.allclose(ratio, ratio[0], rtol=1e-6))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ hostile arguments

HOSTILE = ("nan", "inf", "-inf", "-1", "0", "1e300", "99999999999999999999", "", "abc",
           "MISSING")


def cli_table(files: dict) -> dict:
    """{command: (base arguments of a cheap valid run, {option: values it may accept})}.
    `files` holds a suite, a dataset, a checkpoint, positions and a scratch directory. A value
    of HOSTILE not listed as acceptable must be refused (non-zero exit, one 'Error' line)."""
    s, d, c, p, t = (files[k] for k in ("suite", "dataset", "checkpoint", "positions", "tmp"))
    seeds = {"0"}
    return {
        "paint": ([p, "--box-size", 100, "--grid", 8, "--out", t / "g.npy"],
                  {"POSITIONS": set(), "--box-size": {"1e300", "99999999999999999999"},
                   "--grid": set(),
                   "--scheme": set(), "--out": set()}),
        "simulate": (["--out", t / "sim", "--n-sims", 1, "--particles", 4, "--pm-steps", 1,
                      "--box-size", 64],
                     {"--out": set(), "--n-sims": set(), "--particles": set(),
                      "--box-size": set(), "--seed": seeds, "--pm-steps": set(),
                      "--mesh-factor": set(), "--redshift": {"0"}, "--format": set()}),
        "preprocess": ([*s[:3], "--out", t / "d.h5", "--grid", 16, "--cube", 8,
                        "--cubes-per-box", 2, "--length-unit", "Mpc/h"],
                       {"INPUTS": set(), "--out": set(), "--config": set(), "--grid": set(),
                        "--cube": set(), "--cubes-per-box": set(), "--split-cubes": set(),
                        "--scheme": set(), "--split-fractions": set(), "--seed": seeds,
                        "--workers": {"99999999999999999999"}, "--length-unit": set(),
                        "--hubble": {"0"}}),
        "train": (["--data", d, "--out", t / "run", "--max-epochs", 1, "--set",
                   "model.width=0.125", "--set", "train.batch_size=4", "--set",
                   "train.n_critic=1", "--set", "duality_gap.every=100"],
                  {"--data": set(), "--config": set(), "--set": set(), "--out": set(),
                   "--device": set(), "--seed": seeds, "--max-epochs": set()}),
        "sample": (["--checkpoint", c, "--n", 2, "--out", t / "s.h5"],
                   {"--checkpoint": set(), "--n": set(), "--out": set(), "--batch": set(),
                    "--sample-bn": set(), "--seed": seeds, "--device": set()}),
        "evaluate": (["--checkpoint", c, "--data", d, "--out", t / "report", "--n", 2],
                     {"--checkpoint": set(), "--data": set(), "--split": set(), "--n": set(),
                      "--out": set(), "--seed": seeds, "--sample-bn": set(),
                      "--device": set()}),
    }


CASE_SECONDS = 60   # a hostile value that makes a tiny run take longer was accepted
PATH_OPTIONS = {"paint": ("--out",), "simulate": ("--out",), "preprocess": ("--out",),
                "train": ("--out",), "sample": ("--out",), "evaluate": ("--out",)}
OUTPUT_DIRS = ("simulate", "train", "evaluate")


def hostile_cases(files: dict) -> list[tuple[str, str, str]]:
    return [(command, option, value) for command, (_, options) in cli_table(files).items()
            for option in options for value in HOSTILE]


def _with(base: list, option: str, value: str) -> list:
    """The base arguments with `option` set to `value` (a positional replaced in place)."""
    args = [str(a) for a in base]
    if option == "POSITIONS":
        return [value] + args[1:]
    if option == "INPUTS":
        return [value] + args[3:]
    if option == "--set":
        return args + ["--set", value]
    if option in args:
        i = args.index(option)
        return args[:i + 1] + [value] + args[i + 2:]
    return args + [option, value]


def run_hostile(files: dict, command: str, option: str, value: str) -> str | None:
    """Runs one hostile invocation in-process; None when it behaved, else what went wrong."""
    import shutil

    from click.testing import CliRunner

    from lsscore.main import cli

    base, options = cli_table(files)[command]
    if option in PATH_OPTIONS.get(command, ()):
        # a plain name is a valid output name (written in the current directory, the scratch
        # one during the sweep); a missing parent directory only for outputs that are dirs
        options = {**options, option: set(HOSTILE) - {"", "MISSING"}
                   | ({"MISSING"} if option == "--out" and command in OUTPUT_DIRS else set())}
    if value == "MISSING":
        value = str(files["tmp"] / "no" / "such" / "file")
    for entry in list(files["tmp"].iterdir()):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    args = [command] + _with(base, option, value)
    here = os.getcwd()
    os.chdir(files["tmp"])   # relative output names land in the scratch directory

    def too_long(signum, frame):
        raise TimeoutError(f"still running after {CASE_SECONDS} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        res = CliRunner().invoke(cli, args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.chdir(here)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        return f"{type(res.exception).__name__}: {str(res.exception)[:200]} (a traceback)"
    if "Traceback" in res.output:
        return "a traceback in the output"
    if res.exit_code == 0:
        shown = "MISSING" if "no/such/file" in value else value
        if shown not in options[option]:
            return "accepted without a word"
        return None
    if not any(line.startswith("Error") for line in res.output.splitlines()):
        return f"exit {res.exit_code} without an 'Error' line: {res.output[-200:]!r}"
    return None


def hostile_ops() -> list[tuple[str, object]]:
    """(name, call) pairs: every public op of lsswgan_core.ops under hostile input. Each call
    must raise ValueError, TypeError or RuntimeError with a message, never crash, never return
    a result for nonsense."""
    import torch

    from lsswgan_core import ops

    f64 = torch.float64
    pos = torch.rand(10, 3, dtype=f64)
    field = torch.rand(8, 8, 8, dtype=f64)
    nan_pos = pos.clone()
    nan_pos[0, 0] = float("nan")
    inf_field = field.clone()
    inf_field[0, 0, 0] = float("inf")
    cases = []
    for name, value in (("nan", float("nan")), ("inf", float("inf")), ("-1", -1.0), ("0", 0.0),
                        ("str", "1")):
        cases += [(f"paint box_size={name}", lambda v=value: ops.paint(pos, 8, v)),
                  (f"readout box_size={name}", lambda v=value: ops.readout(field, pos, v)),
                  (f"power_spectrum box_size={name}", lambda v=value: ops.power_spectrum(field, v))]
    for name, value in (("nan", float("nan")), ("inf", float("inf")), ("-inf", -float("inf"))):
        cases.append((f"soft_histogram lo={name}", lambda v=value: ops.soft_histogram(
            pos.flatten(), v, 1.0, 4)))
    for name, n in (("0", 0), ("-1", -1), ("huge", 10**6), ("float", 8.5), ("str", "8")):
        cases.append((f"paint n={name}", lambda n=n: ops.paint(pos, n, 1.0)))
    for name, nbins in (("0", 0), ("-1", -1), ("huge", 10**12), ("float", 2.5)):
        cases.append((f"soft_histogram nbins={name}",
                      lambda b=nbins: ops.soft_histogram(pos.flatten(), 0.0, 1.0, b)))
    cases += [
        ("paint nan positions", lambda: ops.paint(nan_pos, 8, 1.0)),
        ("paint int positions", lambda: ops.paint(pos.long(), 8, 1.0)),
        ("paint (N, 2) positions", lambda: ops.paint(pos[:, :2], 8, 1.0)),
        ("paint scheme", lambda: ops.paint(pos, 8, 1.0, scheme="xyz")),
        ("paint weights shape", lambda: ops.paint(pos, 8, 1.0, weights=torch.ones(3, dtype=f64))),
        ("paint nan weights", lambda: ops.paint(pos, 8, 1.0, weights=torch.full((10,), float("nan"), dtype=f64))),
        ("paint out wrong shape", lambda: ops.paint(pos, 8, 1.0, out=torch.zeros(4, 4, 4, dtype=f64))),
        ("paint out wrong dtype", lambda: ops.paint(pos, 8, 1.0, out=torch.zeros(8, 8, 8, dtype=torch.int64))),
        ("paint string positions", lambda: ops.paint("positions", 8, 1.0)),
        ("readout non-cubic", lambda: ops.readout(torch.rand(8, 8, 4, dtype=f64), pos, 1.0)),
        ("readout inf field", lambda: ops.readout(inf_field, pos, 1.0)),
        ("readout nan positions", lambda: ops.readout(field, nan_pos, 1.0)),
        ("readout dtype mix", lambda: ops.readout(field.float(), pos, 1.0)),
        ("find_peaks radius 0", lambda: ops.find_peaks(field, radius=0)),
        ("find_peaks radius -1", lambda: ops.find_peaks(field, radius=-1)),
        ("find_peaks radius huge", lambda: ops.find_peaks(field, radius=10**6)),
        ("find_peaks boundary", lambda: ops.find_peaks(field, boundary="xyz")),
        ("find_peaks 2-D", lambda: ops.find_peaks(torch.rand(8, 8, dtype=f64))),
        ("find_peaks int", lambda: ops.find_peaks(field.long())),
        ("power_spectrum non-cubic", lambda: ops.power_spectrum(torch.rand(8, 8, 4, dtype=f64), 1.0)),
        ("power_spectrum inf field", lambda: ops.power_spectrum(inf_field, 1.0)),
        ("power_spectrum int", lambda: ops.power_spectrum(field.long(), 1.0)),
        ("power_spectrum bins nan", lambda: ops.power_spectrum(field, 1.0, bins=[0.1, float("nan")])),
        ("power_spectrum bins decreasing", lambda: ops.power_spectrum(field, 1.0, bins=[3.0, 1.0])),
        ("power_spectrum mas", lambda: ops.power_spectrum(field, 1.0, mas="xyz")),
        ("soft_histogram lo > hi", lambda: ops.soft_histogram(pos.flatten(), 1.0, 0.0, 4)),
        ("soft_histogram nan values", lambda: ops.soft_histogram(nan_pos.flatten(), 0.0, 1.0, 4)),
        ("soft_histogram weights shape", lambda: ops.soft_histogram(pos.flatten(), 0.0, 1.0, 4,
                                                                    weights=torch.ones(3, dtype=f64))),
        ("soft_histogram int", lambda: ops.soft_histogram(pos.flatten().long(), 0.0, 1.0, 4)),
    ]
    if torch.cuda.is_available():
        cases.append(("paint mixed devices", lambda: ops.paint(pos, 8, 1.0, out=torch.zeros(8, 8, 8, dtype=f64, device="cuda"))))
    return cases


def run_hostile_op(call) -> str | None:
    """None when the op refused with ValueError, TypeError or RuntimeError and a message;
    else what went wrong."""
    try:
        result = call()
    except (ValueError, TypeError, RuntimeError) as exc:
        message = str(exc).strip()
        if not message:
            return f"{type(exc).__name__} without a message"
        if "Traceback" in message or "enforce fail" in message or "alloc" in message.lower():
            return f"an internal error, not a check: {message.splitlines()[0][:200]}"
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return f"accepted without a word (returned {type(result).__name__})"
