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
import json
import tomllib
from collections import defaultdict
from pathlib import Path

import torch

from ..config import Config, ConfigError, config_from_dict, config_to_toml, load_config
from ..files import atomic_file, exclusive_lock, write_text
from .models import BoxGenerator, Critic, Generator

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

        See lsswgan_core.files.exclusive_lock: the lock records the holder's pid and host, is
        flock'ed while the holder lives, and a dead holder's lock is taken over.

        Raises:
            RunError: the run is locked by a live process (named by pid and host), or by
                another host.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / "lock", str(self.root), RunError):
            yield

    def truncate_metrics(self, offset: int) -> None:
        """Drop what a killed run logged after its last checkpoint."""
        with open(self.metrics, "a") as f:
            f.truncate(offset)


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


def build_generator(cfg: Config) -> Generator | BoxGenerator:
    m = cfg.model
    if m.generator == "box":
        return BoxGenerator(m.width, 1 + m.noise_channels, crop=m.cube, source=m.box_input)
    return Generator(m.width, m.latent_dim, m.cube, upsample=m.upsample, padding=m.padding)


def build_models(cfg: Config):
    """(critic, generator) of a configuration, freshly initialised."""
    m = cfg.model
    return Critic(m.width, m.cube, minibatch_std=m.minibatch_std), build_generator(cfg)


def generator_from_checkpoint(ckpt: dict, device="cpu"):
    """(generator, config, dataset attributes) of a checkpoint, on `device` (no critic is
    built). The generator is the moving average of the weights when the run kept one
    (train.ema_decay)."""
    cfg = config_of_checkpoint(ckpt)
    generator = build_generator(cfg)
    try:
        generator.load_state_dict(ckpt.get("generator_ema") or ckpt["generator"])
    except (KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RunError(f"the checkpoint's weights do not fit its model config ({first})") from None
    return generator.to(device), cfg, json.loads(ckpt["dataset"])
