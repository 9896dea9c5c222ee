"""The one owner of a run directory (what `lsscore train` writes, `sample` and `evaluate` read):

    RUN/config.toml              the resolved configuration (everything needed to redo the run)
    RUN/metrics.jsonl            one JSON line per logged step (losses, GP, summary terms, ...)
    RUN/checkpoints/last.pt      written at the end of every epoch
    RUN/checkpoints/epoch_NNNNN.pt   every `checkpoint_every` epochs; epoch_00000.pt untrained
    RUN/lock                     while a process trains in RUN: its pid and host (RunDir.lock)

Checkpoints are written to a temporary name in the same directory, fsync'ed and renamed, so
a kill never leaves a torn file under a final name; they are loaded with `weights_only=True`
(no pickle code runs). Metrics go through one `Reporter.report(name, value)`.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import tomllib
from collections import defaultdict
from pathlib import Path

import torch

from .config import Config, ConfigError, config_from_dict, config_to_toml, load_config
from .files import atomic_file, write_text
from .models import Critic, Generator

CHECKPOINT_FORMAT = 1


class RunError(RuntimeError):
    """A run directory or checkpoint that cannot be used."""


class RunDir:
    """The paths of a run directory."""

    def __init__(self, root):
        self.root = Path(root)
        self.config = self.root / "config.toml"
        self.metrics = self.root / "metrics.jsonl"
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.pt"

    @classmethod
    def of_checkpoint(cls, checkpoint) -> "RunDir":
        """The run a checkpoint RUN/checkpoints/X.pt belongs to."""
        return cls(Path(checkpoint).parent.parent)

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:05d}.pt"

    def holds_run(self) -> bool:
        return self.last.exists()

    def start(self, config: Config) -> None:
        """Create the layout for a new run: config.toml and an empty metrics.jsonl."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        write_text(self.config, config_to_toml(config))
        write_text(self.metrics, "")

    def load_config(self) -> Config:
        try:
            return load_config(self.config)
        except ConfigError as exc:
            raise RunError(str(exc)) from None

    @contextlib.contextmanager
    def lock(self):
        """Holds RUN/lock while the body runs, so that two processes never write one run.

        The lock file records the holder's pid and host and is flock'ed by it for as long as
        it lives; the kernel drops the flock when the holder dies, however it dies. The file is
        written under a temporary name, flock'ed, then linked to RUN/lock (an exclusive create,
        as O_EXCL), so RUN/lock never exists unlocked while its creator lives. A lock left by a
        dead process of this host (no flock on it) is taken over; one recorded by another host
        is refused, since its liveness cannot be checked from here.

        Raises:
            RunError: the run is locked by a live process (named by pid and host), or by
                another host.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "lock"
        fd = _acquire_lock(path)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            os.close(fd)  # drops the flock

    def truncate_metrics(self, offset: int) -> None:
        """Drop what a killed run logged after its last checkpoint."""
        with open(self.metrics, "a") as f:
            f.truncate(offset)


def _lock_record() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode() + b"\n"


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire_lock(path: Path) -> int:
    """An fd holding an exclusive flock on `path`, which then records this process."""
    for _ in range(100):  # retried only when the file changes under us
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, _lock_record())
            os.link(tmp, path)
            return fd
        except FileExistsError:
            os.close(fd)
        finally:
            os.unlink(tmp)
        # RUN/lock exists: a live holder keeps its flock; a dead one's is gone
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunError(f"{path.parent} is in use: pid {holder.get('pid', '?')} on host "
                           f"{holder.get('host', '?')} holds {path} (since "
                           f"{holder.get('since', '?')}); wait for it to finish or choose "
                           "another --out") from None
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                os.close(fd)
                continue  # replaced between our open and our flock: look again
        except FileNotFoundError:
            os.close(fd)
            continue
        holder = _read_holder(fd)
        host = holder.get("host")
        if host is not None and host != socket.gethostname():
            os.close(fd)
            raise RunError(f"{path} records pid {holder.get('pid', '?')} on host {host}, whose "
                           "liveness cannot be checked from here; if that process has ended, "
                           f"remove {path} and retry")
        # a stale lock of a dead process of this host: take it over
        record = _lock_record()
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        return fd
    raise RunError(f"{path}: could not take the run lock (it keeps changing)")


class Reporter:
    """The one way metrics leave the loop: `report(name, value)` collects; `flush(**where)`
    writes one JSON line with the mean of each name since the last flush."""

    def __init__(self, path: Path | None):
        self.path, self._values = path, defaultdict(list)
        self.latest: dict[str, float] = {}

    def report(self, name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach()
        self._values[name].append(float(value))

    def flush(self, **where) -> dict | None:
        if not self._values:
            return None
        record = {**where, **{k: sum(v) / len(v) for k, v in self._values.items()}}
        self._values.clear()
        self.latest.update(record)
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    def offset(self) -> int:
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0


def read_metrics(path) -> list[dict]:
    """The records of a run's metrics.jsonl (a torn last line from a kill is skipped)."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temporary name in the same directory, fsync, then rename
    (lsswgan_core.files: a failed write raises WriteError and leaves the previous file)."""
    with atomic_file(path) as f:
        torch.save({"format": CHECKPOINT_FORMAT, **payload}, f)


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise RunError(f"{path}: not a readable lsscore checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not an lsscore checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def config_of_checkpoint(ckpt: dict) -> Config:
    try:
        return config_from_dict(tomllib.loads(ckpt["config"]))
    except (KeyError, tomllib.TOMLDecodeError, ConfigError) as exc:
        raise RunError(f"the checkpoint's config cannot be read ({exc})") from None


def build_models(cfg: Config):
    """(critic, generator) of a configuration, freshly initialised."""
    m = cfg.model
    critic = Critic(m.width, m.cube, minibatch_std=m.minibatch_std)
    generator = Generator(m.width, m.latent_dim, m.cube, upsample=m.upsample, padding=m.padding)
    return critic, generator


def models_from_checkpoint(ckpt: dict, device="cpu"):
    """(critic, generator, config, dataset attributes) of a checkpoint, on `device`. The
    generator is the moving average of the weights when the run kept one (train.ema_decay)."""
    cfg = config_of_checkpoint(ckpt)
    critic, generator = build_models(cfg)
    try:
        critic.load_state_dict(ckpt["critic"])
        generator.load_state_dict(ckpt.get("generator_ema") or ckpt["generator"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunError(f"the checkpoint's weights do not fit its model config ({first})") from None
    return critic.to(device), generator.to(device), cfg, json.loads(ckpt["dataset"])
