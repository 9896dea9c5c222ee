"""The machinery of the reliability suite, shared by tests/test_reliability.py (a sample of
each kind, fast) and bench/stress.py (all of it, long): commands run under a file-size limit,
killed and rerun, run twice at once; snapshots corrupted at random; hostile arguments."""
from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


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


def structure_offsets(raw: bytes, fmt: str) -> list[int]:
    """Byte offsets where the structure lives (headers, block markers, counts) — where a
    bit flip is most likely to mislead a reader."""
    if fmt.startswith("gadget"):
        offsets = list(range(min(len(raw), 300)))
        # 4-byte block markers: every offset whose little- or big-endian uint32 equals the
        # distance to a matching marker is a block boundary; simply take the last 64 bytes too
        offsets += list(range(max(0, len(raw) - 64), len(raw)))
        return offsets
    if fmt == "numpy":
        return list(range(min(len(raw), 128)))
    # HDF5: superblock, object headers and attribute messages sit in the first and last KiB
    return list(range(min(len(raw), 2048))) + list(range(max(0, len(raw) - 1024), len(raw)))


def corrupt(raw: bytes, fmt: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random corruption: a truncation, bit flips aimed at the structure, or an absurd
    count written over a header word."""
    raw = bytearray(raw)
    kind = rng.choice(["truncate", "flip", "flip", "count"])
    if kind == "truncate":
        return bytes(raw[:int(rng.integers(0, len(raw)))]), kind
    offsets = structure_offsets(raw, fmt)
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


def read_all(path, kwargs) -> np.ndarray:
    from lsswgan_core.io import open_snapshot

    return open_snapshot(path, **kwargs).read_positions()


def fuzz_format(fmt: str, count: int, workdir: Path, seed: int = 0) -> dict:
    """`count` corrupted copies of a snapshot of `fmt`, each read in full. Returns the counts
    per outcome; any outcome but a SnapshotError or a read equal to the original is listed
    in 'failures' (with its kind and the exception), never raised."""
    from lsswgan_core.io import SnapshotError

    path, kwargs = write_snapshot(fmt, workdir / fmt, seed=seed)
    original_bytes = path.read_bytes()
    original = read_all(path, kwargs)
    rng = np.random.default_rng([seed, FORMATS.index(fmt)])
    outcome = {"snapshot_error": 0, "identical": 0, "failures": []}
    for _ in range(count):
        data, kind = corrupt(original_bytes, fmt, rng)
        path.write_bytes(data)
        try:
            out = read_all(path, kwargs)
        except SnapshotError:
            outcome["snapshot_error"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - anything else is the finding
            outcome["failures"].append((kind, f"{type(exc).__name__}: {exc}"[:300]))
            continue
        if out.shape == original.shape and np.array_equal(out, original):
            outcome["identical"] += 1
        else:
            outcome["failures"].append((kind, f"a different read: shape {out.shape}"))
    path.write_bytes(original_bytes)
    return outcome


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
