"""The training loop of the paper's Table 4, with checkpoints, resume, metrics and DDP.

An epoch is one pass of the critic over the training split (SPEC section 6): the split is
shuffled, cut into batches (the last incomplete batch is dropped), and every `n_critic`-th
critic step is followed by one generator step. The generator step's summary loss compares
the generated batch with the last real batch the critic saw, for the first
`summary_epochs` epochs.

Reproducibility: every random stream (shuffle, latents, gradient-penalty interpolation,
the duality gap's) is seeded from (seed, epoch, rank, purpose), never from a global
generator. A run killed at any point and resumed from `checkpoints/last.pt` (written
atomically at the end of every epoch) therefore replays the unfinished epoch exactly and
ends with the same weights as an uninterrupted run (on the CPU; GPU kernels may not be
bitwise deterministic). `metrics.jsonl` is cut back to what the checkpoint had seen.

Many processes: under `torchrun` the critic and the generator are wrapped in
DistributedDataParallel (gloo on the CPU, nccl on GPUs); each rank takes every
world-th cube of the shared permutation, so one epoch still covers the split once. The
critic sees real, fake and interpolated cubes in one forward call, so the gradient
penalty's double backward happens inside one DDP forward/backward pair. Rank 0 writes
the run directory and computes the duality gap; BatchNorm running statistics are
per-rank between DDP's buffer broadcasts, and rank 0's are saved.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from .config import Config, config_from_dict, config_to_toml, load_config
from .duality_gap import duality_gap
from .losses import critic_loss, summary_loss
from .models import Critic, Generator
from .progress import Progress

CHECKPOINT_FORMAT = 1
IN_MEMORY_LIMIT = 2 << 30   # bytes of a split held in memory; larger splits are read per batch


class TrainingError(RuntimeError):
    """A run that cannot start or go on (bad dataset, existing run, non-finite loss)."""


# ---------------------------------------------------------------------------- data


class CubeSource:
    """One split of a preprocessed dataset: `batch(indices)` -> (b, 1, n, n, n) float32.
    Small splits are held in memory; large ones are read from the file per batch."""

    def __init__(self, path, split: str):
        import h5py  # noqa: PLC0415

        self.path, self.split = str(path), split
        try:
            self._file = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as exc:
            raise TrainingError(f"{path}: cannot open the dataset ({exc})") from None
        if split not in self._file:
            have = sorted(k for k in self._file.keys())
            raise TrainingError(f"{path} has no split {split!r} (it has {', '.join(have) or 'none'})")
        self._dset = self._file[split]
        if self._dset.ndim != 4 or len(set(self._dset.shape[1:])) != 1:
            raise TrainingError(f"{path}:{split} has shape {self._dset.shape}, expected (M, n, n, n)")
        self.attrs = {k: _plain(v) for k, v in self._file.attrs.items()}
        self.cube = int(self._dset.shape[1])
        self._data = None
        if self._dset.nbytes <= IN_MEMORY_LIMIT:
            self._data = torch.from_numpy(self._dset[...].astype(np.float32, copy=False))
        if self._data is not None and not torch.isfinite(self._data).all():
            raise TrainingError(f"{path}:{split} contains NaN or infinite values")

    def __len__(self):
        return int(self._dset.shape[0])

    def mean(self) -> float:
        """Mean value of the split (of its first 1024 cubes when it is not in memory)."""
        if self._data is not None:
            return float(self._data.mean(dtype=torch.float64))
        return float(np.mean(self._dset[:1024], dtype=np.float64))

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        if self._data is not None:
            return self._data[indices].unsqueeze(1)
        order = np.argsort(indices.numpy())
        rows = self._dset[np.sort(indices.numpy())]   # h5py wants increasing indices
        out = np.empty_like(rows)
        out[order] = rows
        return torch.from_numpy(out.astype(np.float32, copy=False)).unsqueeze(1)


def init_output_bias(generator, mean: float) -> None:
    """Set the bias of the generator's last layer (before the sigmoid) to logit(mean)."""
    last = [m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose3d)][-1]
    mean = min(max(float(mean), 1e-4), 1 - 1e-4)
    with torch.no_grad():
        last.bias.fill_(math.log(mean / (1 - mean)))


def _plain(value):
    """HDF5 attribute -> a JSON-able value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------- random streams


def stream_seed(*key: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, rank, purpose)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> 1)


def _generator(device, *key) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(stream_seed(*key))
    return g


PURPOSE_SHUFFLE, PURPOSE_STEPS, PURPOSE_DG = 0, 1, 2


# ------------------------------------------------------------------------- metrics


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


# ------------------------------------------------------------------------ helpers


def _grad_norm(params) -> torch.Tensor:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save to a temporary name in the same directory, fsync, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise TrainingError(f"{path}: not a readable lsscore checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an lsscore checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def models_from_checkpoint(ckpt: dict, device="cpu"):
    """(critic, generator, config, dataset attributes) of a checkpoint, on `device`."""
    cfg = config_from_dict(__import__("tomllib").loads(ckpt["config"]))
    critic = Critic(cfg.model.width, cfg.model.cube).to(device)
    generator = Generator(cfg.model.width, cfg.model.latent_dim, cfg.model.cube).to(device)
    critic.load_state_dict(ckpt["critic"])
    generator.load_state_dict(ckpt["generator"])
    return critic, generator, cfg, json.loads(ckpt["dataset"])


class _Distributed:
    """The process group under torchrun (WORLD_SIZE > 1), a no-op otherwise."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            backend = "nccl" if device.startswith("cuda") else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))

    def wrap(self, model, device):
        if not self.active:
            return model
        import warnings  # noqa: PLC0415

        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        # the penalty's double backward leaves the dense layer's gradient transposed in
        # memory; DDP copies it into its bucket correctly and only warns about speed
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def all_finite(self, *values: torch.Tensor) -> bool:
        ok = torch.tensor([float(all(bool(torch.isfinite(v).all()) for v in values))])
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() == 1.0)

    def divergence(self, model) -> float:
        """Largest |difference| between this rank's parameters and rank 0's, over all ranks
        (0 when DDP keeps the replicas in step)."""
        if not self.active:
            return 0.0
        import torch.distributed as dist  # noqa: PLC0415

        flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max().reshape(1).cpu()
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def barrier(self):
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            dist.barrier()

    def close(self):
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            if dist.is_initialized():
                dist.destroy_process_group()


def _device(device: str | None, dist_local_rank: int) -> str:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was asked for but torch sees no GPU")
        if device == "cuda":
            device = f"cuda:{dist_local_rank}"
    elif device != "cpu":
        raise TrainingError(f"device must be cpu or cuda, got {device!r}")
    return device


# ---------------------------------------------------------------------------- train


def train(data, out, config: Config | str | Path | None = None, *, resume: bool = False,
          device: str | None = None, seed: int | None = None, show_progress: bool = True,
          max_epochs: int | None = None) -> dict:
    """Train a critic and a generator on the `train` split of a preprocessed dataset.

    data: the HDF5 file `lsscore preprocess` wrote. out: the run directory (config.toml,
    metrics.jsonl, checkpoints/). config: a Config, a TOML path, or None for the paper's.
    resume: continue the run in `out` from checkpoints/last.pt (its config.toml is used;
    a different config is an error). seed overrides config.train.seed. max_epochs stops
    early (the run can be resumed later). Returns the last flushed metrics record."""
    out = Path(out)
    run_config_path = out / "config.toml"
    ckpt_dir = out / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if resume:
        if not last_path.is_file():
            raise TrainingError(f"--resume: {last_path} does not exist (nothing to resume)")
        stored = load_config(run_config_path)
        if seed is not None and seed != stored.train.seed:
            raise TrainingError(f"--resume: the run was started with seed {stored.train.seed}")
        if config is not None:
            given = copy.deepcopy(config)
            given.train.seed = stored.train.seed if seed is None else seed
            if config_to_toml(given) != config_to_toml(stored):
                raise TrainingError(f"--resume: the given config differs from {run_config_path}; "
                                    "resume with the run's own config (omit --config)")
        config = stored
    else:
        config = copy.deepcopy(config) if config is not None else Config()
        if last_path.exists():
            raise TrainingError(f"{out} already holds a run; pass --resume to continue it "
                                "or choose another --out")
        if seed is not None:
            config.train.seed = seed
    tc = config.train

    dist = _Distributed(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        device = _device(device, dist.local_rank)
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
            torch.backends.cuda.matmul.allow_tf32 = tc.tf32
            torch.backends.cudnn.allow_tf32 = tc.tf32
        return _train(data, out, config, resume, device, dist, show_progress, max_epochs)
    finally:
        dist.close()


def _train(data, out, config, resume, device, dist, show_progress, max_epochs):
    tc, dc = config.train, config.duality_gap
    main = dist.rank == 0
    train_set = CubeSource(data, "train")
    if train_set.cube != config.model.cube:
        raise TrainingError(f"{data}: cubes are {train_set.cube}^3 but the model takes "
                            f"{config.model.cube}^3 (preprocess with --cube {config.model.cube})")
    per_rank = len(train_set) // dist.world
    steps_per_epoch = per_rank // tc.batch_size
    if steps_per_epoch < 1:
        raise TrainingError(f"{data}: the train split has {len(train_set)} cubes, fewer than one "
                            f"batch of {tc.batch_size} per process ({dist.world} processes)")
    dg_set = None
    if dc.enabled and main:
        try:
            dg_set = CubeSource(data, "dg")
        except TrainingError:
            dg_set = None
        if dg_set is not None and len(dg_set) < dc.batch_size:
            dg_set = None
        if dg_set is None:
            print(f"note: {data} has no dg split of at least {dc.batch_size} cubes; "
                  "the duality gap is not computed")

    ckpt_dir = out / "checkpoints"
    metrics_path = out / "metrics.jsonl"
    torch_rng = torch.random.fork_rng(devices=[])
    with torch_rng:
        torch.manual_seed(stream_seed(tc.seed, 0, 0, 99))
        critic = Critic(config.model.width, config.model.cube)
        generator = Generator(config.model.width, config.model.latent_dim, config.model.cube)
    critic.to(device)
    generator.to(device)
    opt_c = torch.optim.Adam(critic.parameters(), lr=config.optim.lr, betas=config.optim.betas)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.optim.lr, betas=config.optim.betas)
    start_epoch, gstep, cstep, elapsed0 = 0, 0, 0, 0.0
    if resume:
        ckpt = load_checkpoint(ckpt_dir / "last.pt", map_location=device)
        critic.load_state_dict(ckpt["critic"])
        generator.load_state_dict(ckpt["generator"])
        opt_c.load_state_dict(ckpt["opt_critic"])
        opt_g.load_state_dict(ckpt["opt_generator"])
        start_epoch, gstep, cstep = ckpt["epoch"], ckpt["generator_step"], ckpt["critic_step"]
        elapsed0 = float(ckpt.get("elapsed", 0.0))
        if ckpt["world_size"] != dist.world:
            raise TrainingError(f"the run was started with {ckpt['world_size']} processes; "
                                f"resume it with the same number (got {dist.world})")
        if main:
            with open(metrics_path, "a") as f:   # drop what the killed run logged after it
                f.truncate(ckpt["metrics_offset"])
    else:
        if config.model.init_output_bias:
            init_output_bias(generator, train_set.mean())
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (out / "config.toml").write_text(config_to_toml(config))
            metrics_path.write_text("")

    def payload(epoch):
        return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "generator_step": gstep,
                "critic_step": cstep, "critic": critic.state_dict(),
                "generator": generator.state_dict(), "opt_critic": opt_c.state_dict(),
                "opt_generator": opt_g.state_dict(), "config": config_to_toml(config),
                "dataset": dataset_attrs, "world_size": dist.world,
                "metrics_offset": reporter.offset(), "elapsed": elapsed()}

    dataset_attrs = json.dumps({**train_set.attrs, "path": str(Path(data).resolve().name)})
    reporter = Reporter(metrics_path if main else None)
    t_start = time.perf_counter()

    def elapsed():
        return round(elapsed0 + time.perf_counter() - t_start, 3)

    if main and not resume and tc.checkpoint_every > 0:   # the untrained models, for comparison
        save_checkpoint(ckpt_dir / "epoch_00000.pt", payload(0))
    dist.barrier()

    critic_ddp, generator_ddp = dist.wrap(critic, device), dist.wrap(generator, device)
    g_params = [p for p in generator.parameters() if p.requires_grad]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                              enabled=device.startswith("cuda") and tc.bf16)
    last_real = None
    end_epoch = tc.epochs if max_epochs is None else min(tc.epochs, start_epoch + max_epochs)
    record = None
    for epoch in range(start_epoch, end_epoch):
        shuffle = _generator("cpu", tc.seed, epoch, 0, PURPOSE_SHUFFLE)
        order = torch.randperm(len(train_set), generator=shuffle)[dist.rank::dist.world]
        steps_gen = _generator(device, tc.seed, epoch, dist.rank, PURPOSE_STEPS)
        use_summary = epoch < tc.summary_epochs and tc.lambda_summ > 0
        bar = Progress(steps_per_epoch, f"epoch {epoch + 1}/{tc.epochs}", enabled=main and show_progress)
        critic.train()
        generator.train()
        for i in range(steps_per_epoch):
            # ---- critic step
            t0 = time.perf_counter()
            real = train_set.batch(order[i * tc.batch_size:(i + 1) * tc.batch_size]).to(device)
            z = torch.randn(real.shape[0], config.model.latent_dim, generator=steps_gen, device=device)
            with torch.no_grad(), autocast:
                fake = generator_ddp(z).float()
            with autocast:
                loss_c, wasserstein, gp = critic_loss(critic_ddp, real, fake, tc.gp_lambda, steps_gen)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            norm_c = _grad_norm(critic.parameters())
            if not dist.all_finite(loss_c, norm_c):
                _stop(epoch, i, gstep, "critic", ckpt_dir)
            reporter.report("grad_norm_critic", norm_c)
            opt_c.step()
            cstep += 1
            last_real = real
            reporter.report("critic_loss", loss_c)
            reporter.report("wasserstein", wasserstein)
            reporter.report("gp", gp)
            reporter.report("sec_per_critic_step", time.perf_counter() - t0)
            if cstep % tc.n_critic:
                bar.update(1)
                continue
            # ---- generator step
            t0 = time.perf_counter()
            z = torch.randn(tc.batch_size, config.model.latent_dim, generator=steps_gen, device=device)
            with autocast:
                fake = generator_ddp(z).float()
                adversarial = -critic(fake).float().mean()   # the bare critic: no DDP sync here
            loss_g = adversarial
            if use_summary:
                s, terms = summary_loss(last_real, fake, config.summary)
                loss_g = adversarial + tc.lambda_summ * s
                reporter.report("summary", s.detach())
                for name, value in terms.items():
                    reporter.report(f"summary_{name}", value)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward(inputs=g_params)
            norm_g = _grad_norm(g_params)
            if not dist.all_finite(loss_g, norm_g):
                _stop(epoch, i, gstep, "generator", ckpt_dir)
            reporter.report("grad_norm_generator", norm_g)
            opt_g.step()
            gstep += 1
            reporter.report("generator_loss", loss_g.detach())
            reporter.report("adversarial", adversarial.detach())
            reporter.report("sec_per_generator_step", time.perf_counter() - t0)
            if gstep % tc.log_every == 0:
                record = reporter.flush(epoch=epoch + 1, step=gstep, critic_step=cstep, elapsed=elapsed()) or record
            latest = reporter.latest
            bar.update(1, f"W {latest.get('wasserstein', float('nan')):.3g} "
                          f"gp {latest.get('gp', float('nan')):.3g}")

        # ---- end of epoch: flush, duality gap, checkpoint
        if dist.active:
            reporter.report("ddp_divergence", max(dist.divergence(critic), dist.divergence(generator)))
        record = reporter.flush(epoch=epoch + 1, step=gstep, critic_step=cstep, elapsed=elapsed()) or record
        if main and dg_set is not None and (epoch + 1) % dc.every == 0:
            t0 = time.perf_counter()
            dg = duality_gap(critic, generator, dg_set, dc, config.optim.betas, config.train.gp_lambda,
                             seed=stream_seed(tc.seed, epoch, 0, PURPOSE_DG), device=device,
                             show_progress=show_progress)
            reporter.report("duality_gap", dg["duality_gap"])
            reporter.report("dg_max", dg["max"])
            reporter.report("dg_min", dg["min"])
            reporter.report("dg_seconds", time.perf_counter() - t0)
            record = reporter.flush(epoch=epoch + 1, step=gstep, critic_step=cstep, elapsed=elapsed()) or record
        if main:
            state = payload(epoch + 1)
            save_checkpoint(ckpt_dir / "last.pt", state)
            if tc.checkpoint_every > 0 and (epoch + 1) % tc.checkpoint_every == 0:
                save_checkpoint(ckpt_dir / f"epoch_{epoch + 1:05d}.pt", state)
        dist.barrier()
    return record or {}


def _stop(epoch, i, gstep, which, ckpt_dir):
    last = ckpt_dir / "last.pt"
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    raise TrainingError(f"non-finite {which} loss at epoch {epoch + 1}, critic step {i + 1} of the "
                        f"epoch (generator step {gstep + 1}); stopping, {kept}")


__all__ = ["CubeSource", "Reporter", "TrainingError", "load_checkpoint", "models_from_checkpoint",
           "read_metrics", "save_checkpoint", "stream_seed", "train"]
