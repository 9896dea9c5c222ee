"""The training loop of the paper's Table 4: critic step, generator step, end of epoch.

An epoch is one pass of the critic over the training split (the paper's Table 4): the split is
shuffled, cut into batches (the last incomplete batch is dropped), and every `n_critic`-th
critic step is followed by one generator step. The generator step's summary loss compares
the generated batch with the last real batch the critic saw, for the first
`summary_epochs` epochs. The losses are `losses.critic_loss` and `losses.generator_loss`;
the dataset is read through `data.dataset`, the run directory written through `run`, and
the process group handled by `distributed`.

Reproducibility: every random stream (shuffle, latents, gradient-penalty interpolation,
the duality gap's) is seeded from (seed, epoch, rank, purpose), never from a global
generator. A run killed at any point and resumed from `checkpoints/last.pt` (written
atomically at the end of every epoch) therefore replays the unfinished epoch exactly and
ends with the same weights as an uninterrupted run (on the CPU; GPU kernels may not be
bitwise deterministic). `metrics.jsonl` is cut back to what the checkpoint had seen.

Many processes: under `torchrun` the generator is wrapped in DistributedDataParallel and
the critic is not: its loss calls it twice before one backward (see `losses.critic_loss`),
so after the backward the loop averages its gradients over the ranks in one flat
all-reduce (`Distributed.average_gradients`), and its replicas start from rank 0's
parameters and buffers. `train.batch_size` is the global batch: each of the W ranks takes
batch_size / W cubes of each batch of the shared permutation (`rank_batch`), so one epoch
still covers the split once, in the same batches at any number of ranks. Rank 0 writes the run
directory (under the run lock) and computes the duality gap; BatchNorm running statistics are
per-rank between DDP's buffer broadcasts, and rank 0's are saved.

World sizes: a checkpoint written at W ranks resumes at any W' dividing the batch, with the
same batches of real cubes and the same effective batch. What differs is what is seeded per
rank: each rank draws its latents and gradient-penalty interpolation weights from its own
stream (seed, epoch, rank), so after a change of world size those draws differ from an
uninterrupted run's (as they differ between two runs at different world sizes); and the
statistics computed within a rank's share of the batch (BatchNorm batch statistics, the
summary loss's per-bin means and spreads) are over batch_size / W cubes. The resumed run says
so once and records `resumed_from_world_size` in metrics.jsonl.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import Config, config_to_toml, load_config
from ..data.dataset import CropSplit, Dataset, DatasetError, Split, data_config_of
from .distributed import DeviceError, Distributed, choose_device, configure_cuda, default_device
from .duality_gap import duality_gap
from .losses import critic_loss, generator_loss, train_split_units, weighted_summary
from .models import init_output_bias, input_spectrum
from ..ops import power_spectrum
from ..progress import Progress
from .run import (Reporter, RunDir, RunError, build_models, load_checkpoint, save_checkpoint)

PURPOSE_SHUFFLE, PURPOSE_STEPS, PURPOSE_DG = 0, 1, 2


class TrainingError(RunError):
    """A run that cannot start or go on (bad dataset, existing run, non-finite loss)."""


def stream_seed(*key: int) -> int:
    """A 63-bit seed derived from integers (seed, epoch, rank, purpose)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> 1)


def random_stream(device, *key) -> torch.Generator:
    rng = torch.Generator(device=device)
    rng.manual_seed(stream_seed(*key))
    return rng


@dataclass
class TrainState:
    """Everything the loop reads and changes; a checkpoint is its `payload`."""
    config: Config
    device: str
    dist: Distributed
    run: RunDir
    critic: torch.nn.Module
    generator: torch.nn.Module
    opt_critic: torch.optim.Optimizer
    opt_generator: torch.optim.Optimizer
    reporter: Reporter
    dataset_attrs: str
    generator_ddp: torch.nn.Module = None
    autocast: object = None
    critic_step: int = 0
    generator_step: int = 0
    elapsed0: float = 0.0
    t_start: float = field(default_factory=time.perf_counter)
    last_real: torch.Tensor | None = None
    record: dict | None = None
    generator_ema: torch.nn.Module | None = None   # train.ema_decay > 0
    summary_units: dict | None = None              # summary.units = 'train'

    def elapsed(self) -> float:
        return round(self.elapsed0 + time.perf_counter() - self.t_start, 3)

    def payload(self, epoch: int) -> dict:
        return {"epoch": epoch, "generator_step": self.generator_step,
                "critic_step": self.critic_step, "critic": self.critic.state_dict(),
                "generator": self.generator.state_dict(),
                "opt_critic": self.opt_critic.state_dict(),
                "opt_generator": self.opt_generator.state_dict(),
                "config": config_to_toml(self.config), "dataset": self.dataset_attrs,
                "world_size": self.dist.world, "metrics_offset": self.reporter.offset(),
                "elapsed": self.elapsed(),
                **({"generator_ema": self.generator_ema.state_dict()}
                   if self.generator_ema is not None else {}),
                **({"summary_units": self.summary_units} if self.summary_units else {})}

    def flush(self, epoch: int) -> None:
        self.record = self.reporter.flush(epoch=epoch, step=self.generator_step,
                                          critic_step=self.critic_step,
                                          elapsed=self.elapsed()) or self.record


# ---------------------------------------------------------------------------- entry


def train(data, out, config: Config | str | Path | None = None, *, resume: bool = False,
          device: str | None = None, seed: int | None = None, show_progress: bool = True,
          max_epochs: int | None = None) -> dict:
    """Train a critic and a generator on the `train` split of a preprocessed dataset.

    data: the HDF5 file `lsscore preprocess` wrote. out: the run directory (config.toml,
    metrics.jsonl, checkpoints/). config: a Config, a TOML path, or None for the paper's.
    resume: continue the run in `out` from checkpoints/last.pt (its config.toml is used;
    a different config is an error). seed overrides config.train.seed. max_epochs stops
    early (the run can be resumed later). Returns the last flushed metrics record."""
    run = RunDir(out)
    config = _resolve_config(run, config, resume, seed)
    dist = Distributed(device or default_device())
    try:
        try:
            device = choose_device(device, dist.local_rank)
        except DeviceError as exc:
            raise TrainingError(str(exc)) from None
        configure_cuda(device, config.train.tf32)
        with contextlib.ExitStack() as held:
            if dist.main:  # one process writes the run: the lock is rank 0's
                try:
                    held.enter_context(run.lock())
                except RunError as exc:
                    raise TrainingError(str(exc)) from None
                if not resume and run.holds_run():  # one finished while we were starting
                    raise TrainingError(f"{run.root} already holds a run; pass --resume to "
                                        "continue it or choose another --out")
            return _train(data, run, config, resume, device, dist, show_progress, max_epochs)
    finally:
        dist.close()


def _resolve_config(run: RunDir, config, resume: bool, seed: int | None) -> Config:
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if not resume:
        if run.holds_run():
            raise TrainingError(f"{run.root} already holds a run; pass --resume to continue it "
                                "or choose another --out")
        config = copy.deepcopy(config) if config is not None else Config()
        if seed is not None:
            config.train.seed = seed
        return config.validate()
    if not run.last.is_file():
        raise TrainingError(f"--resume: {run.last} does not exist (nothing to resume)")
    stored = run.load_config()
    if seed is not None and seed != stored.train.seed:
        raise TrainingError(f"--resume: the run was started with seed {stored.train.seed}")
    if config is not None:
        # what may change on resume: the time limit; [data] is the dataset's own record
        given = copy.deepcopy(config)
        given.train.seed = stored.train.seed if seed is None else seed
        given.train.time_limit, given.data = stored.train.time_limit, stored.data
        if config_to_toml(given) != config_to_toml(stored):
            raise TrainingError(f"--resume: the given config differs from {run.config}; "
                                "resume with the run's own config (omit --config)")
        stored.train.time_limit = config.train.time_limit
    return stored


def _open_splits(data, config: Config, dist: Distributed):
    """(dataset, train split, dg split or None, critic steps per epoch), with clear
    refusals. The box generator's splits are random crops of the whole boxes."""
    boxes = config.model.generator == "box"

    def split(name):
        if boxes:
            return CropSplit(dataset.boxes(name), config.model.cube, config.train.seed)
        return dataset.split(name)

    try:
        dataset = Dataset(data)
        train_split = split("train")
    except DatasetError as exc:
        raise TrainingError(str(exc)) from None
    if train_split.cube != config.model.cube:
        train_split.close()
        raise TrainingError(f"{data}: cubes are {train_split.cube}^3 but the model takes "
                            f"{config.model.cube}^3 (preprocess with --cube {config.model.cube})")
    batch = config.train.batch_size
    if batch % dist.world:
        train_split.close()
        raise TrainingError(f"train.batch_size ({batch}) is the batch of all {dist.world} "
                            f"processes together: it must be a multiple of {dist.world} (each "
                            "process takes an equal share); choose another batch size or "
                            "number of processes")
    steps = len(train_split) // batch
    if steps < 1:
        train_split.close()
        raise TrainingError(f"{data}: the train split has {len(train_split)} cubes, fewer than "
                            f"one batch of {batch}")
    dc, dg_split = config.duality_gap, None
    if dc.enabled and dist.main:
        try:
            dg_split = split("dg")
        except DatasetError:
            dg_split = None
        if dg_split is None or len(dg_split) < dc.batch_size:
            if dg_split is not None:
                dg_split.close()
            dg_split = None
            print(f"note: {data} has no dg split of at least {dc.batch_size} cubes; "
                  "the duality gap is not computed")
    return dataset, train_split, dg_split, steps


def _build_state(data, dataset, train_split, run, config, resume, device, dist) -> tuple:
    """(TrainState, first epoch): new models, or the models and counters of last.pt."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(config.train.seed, 0, 0, 99))
        critic, generator = build_models(config)
    critic.to(device)
    generator.to(device)
    oc = config.optim
    state = TrainState(
        config=config, device=device, dist=dist, run=run, critic=critic, generator=generator,
        opt_critic=torch.optim.Adam(critic.parameters(), lr=oc.lr_critic or oc.lr,
                                    betas=oc.betas),
        opt_generator=torch.optim.Adam(generator.parameters(), lr=oc.lr_generator or oc.lr,
                                       betas=oc.betas),
        reporter=Reporter(run.metrics if dist.main else None),
        dataset_attrs=json.dumps(_run_attrs(dataset, data, train_split)))
    start_epoch = 0
    ckpt = load_checkpoint(run.last, map_location=device) if resume else None
    if resume:
        start_epoch = _restore(state, ckpt)
        if dist.main and run.load_config() != config:   # a new time limit
            run.config.write_text(config_to_toml(config))
    else:
        config.data = data_config_of(dataset.attrs, config.data)
        if isinstance(train_split, CropSplit):   # the large-scale input's spectrum, once
            boxes = train_split.boxes
            generator.set_input_power(*input_spectrum(
                config.model.box_input, boxes.cell_size, torch.from_numpy(boxes.physical())),
                cell_size=boxes.cell_size, seed=config.train.seed)
        if config.model.init_output_bias and isinstance(train_split, CropSplit):
            # the box generator starts with the data's P(k) and one-point distribution in its
            # output space: the input filtered to the spectrum of logit(transformed boxes),
            # then the skip as a linear map onto their logit's mean and spread
            generator.calibrate_input(*logit_spectrum(train_split))
            generator.match_output(train_split.batch(torch.arange(min(64, len(train_split)))))
        elif config.model.init_output_bias:
            init_output_bias(generator, train_split.mean())
        if config.summary.units == "train" and config.train.lambda_summ > 0:
            state.summary_units = train_split_units(train_split, config.summary, device)
        if dist.main:
            run.start(config)
    if config.train.ema_decay > 0:
        state.generator_ema = copy.deepcopy(generator).requires_grad_(False)
        if resume:
            state.generator_ema.load_state_dict(ckpt["generator_ema"])
    state.t_start = time.perf_counter()
    return state, start_epoch


def logit_spectrum(crops: CropSplit):
    """(k, P) of logit(transformed values) of the whole train boxes, mean over boxes (k in
    h/Mpc): the target of BoxGenerator.calibrate_input."""
    boxes = crops.boxes
    s = np.clip(crops.transform.forward(boxes.physical()), 1e-6, 1 - 1e-6)
    logit = torch.from_numpy(np.log(s / (1 - s)))
    logit = logit - logit.mean(dim=(-3, -2, -1), keepdim=True)
    k, pk, modes = power_spectrum(logit, boxes.n * boxes.cell_size)
    keep = (modes > 0) & (pk.mean(0) > 0)
    return k[keep].double(), pk.mean(0)[keep].double()


def _run_attrs(dataset: Dataset, data, train_split) -> dict:
    """The dataset's attributes as the run records them (what sampling and evaluation read):
    for the box generator, the transform is the boxes' (x_max of the train boxes)."""
    attrs = {**dataset.attrs, "path": str(Path(data).resolve().name)}
    if isinstance(train_split, CropSplit):
        x_max = train_split.transform.x_max
        attrs.update(transform_x_max=x_max, x_max=x_max, generator="box",
                     cell_size=train_split.boxes.cell_size)
    return attrs


def _restore(state: TrainState, ckpt: dict) -> int:
    try:   # tensors of other shapes, or a config edited since: one line, not a trace
        state.critic.load_state_dict(ckpt["critic"])
        state.generator.load_state_dict(ckpt["generator"])
        state.opt_critic.load_state_dict(ckpt["opt_critic"])
        state.opt_generator.load_state_dict(ckpt["opt_generator"])
    except (KeyError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise TrainingError(f"{state.run.last}: the checkpoint's weights do not fit the run's "
                            f"model config ({first})") from None
    state.generator_step, state.critic_step = ckpt["generator_step"], ckpt["critic_step"]
    state.elapsed0 = float(ckpt.get("elapsed", 0.0))
    state.summary_units = ckpt.get("summary_units")
    if ckpt["world_size"] != state.dist.world:   # see the module docstring
        state.reporter.report("resumed_from_world_size", ckpt["world_size"])
        if state.dist.main:
            print(f"note: the checkpoint was written by {ckpt['world_size']} processes, this run "
                  f"has {state.dist.world}: the same batches of "
                  f"{state.config.train.batch_size} cubes, but the per-process random streams "
                  "(latents, gradient-penalty weights) differ from here on")
    if state.dist.main:
        state.run.truncate_metrics(ckpt["metrics_offset"])
    return int(ckpt["epoch"])


def _train(data, run, config, resume, device, dist, show_progress, max_epochs):
    dataset, train_split, dg_split, steps = _open_splits(data, config, dist)
    try:
        return _train_on(data, dataset, train_split, dg_split, steps, run, config, resume,
                         device, dist, show_progress, max_epochs)
    finally:
        for split in (train_split, dg_split):
            if split is not None:
                split.close()


def _train_on(data, dataset, train_split, dg_split, steps, run, config, resume, device, dist,
              show_progress, max_epochs):
    tc = config.train
    state, start_epoch = _build_state(data, dataset, train_split, run, config, resume, device,
                                      dist)
    if dist.main and not resume and tc.checkpoint_every > 0:   # the untrained models
        save_checkpoint(run.epoch_checkpoint(0), state.payload(0))
    dist.barrier()
    dist.broadcast_module(state.critic)      # its gradients are averaged by hand
    state.generator_ddp = dist.wrap(state.generator, device)
    state.autocast = torch.autocast("cuda", dtype=torch.bfloat16,
                                    enabled=device.startswith("cuda") and tc.bf16)
    end_epoch = tc.epochs if max_epochs is None else min(tc.epochs, start_epoch + max_epochs)
    for epoch in range(start_epoch, end_epoch):
        train_epoch(state, train_split, epoch, steps, show_progress)
        end_of_epoch(state, epoch, dg_split, show_progress)
        if tc.time_limit and dist.any(dist.main and state.elapsed() >= tc.time_limit):
            break
    return state.record or {}


# ---------------------------------------------------------------------------- the loop


def train_epoch(state: TrainState, split: Split, epoch: int, steps: int,
                show_progress: bool) -> None:
    """One pass of the critic over the split, a generator step every n_critic critic steps."""
    tc, dist = state.config.train, state.dist
    if hasattr(split, "set_epoch"):   # crops of whole boxes: other ones every epoch
        split.set_epoch(epoch)
    shuffle = random_stream("cpu", tc.seed, epoch, 0, PURPOSE_SHUFFLE)
    order = torch.randperm(len(split), generator=shuffle)
    rng = random_stream(state.device, tc.seed, epoch, dist.rank, PURPOSE_STEPS)
    use_summary = epoch < tc.summary_epochs and tc.lambda_summ > 0
    bar = Progress(steps, f"epoch {epoch + 1}/{tc.epochs}", enabled=dist.main and show_progress)
    state.critic.train()
    state.generator.train()
    for i in range(steps):
        real = split.batch(rank_batch(order, i, tc.batch_size, dist.rank, dist.world))
        real = real.to(state.device)
        critic_step(state, real, rng, epoch, i)
        if state.critic_step % tc.n_critic:
            bar.update(1)
            continue
        generator_step(state, rng, use_summary, epoch, i)
        if state.generator_step % tc.log_every == 0:
            state.flush(epoch + 1)
        latest = state.reporter.latest
        bar.update(1, f"W {latest.get('wasserstein', float('nan')):.3g} "
                      f"gp {latest.get('gp', float('nan')):.3g}")


def rank_batch(order: torch.Tensor, i: int, batch: int, rank: int, world: int) -> torch.Tensor:
    """The indices of rank `rank`'s share of batch i of the permutation `order`: its
    batch / world consecutive entries of order[i * batch:(i + 1) * batch]."""
    share = batch // world
    start = i * batch + rank * share
    return order[start:start + share]


def critic_step(state: TrainState, real: torch.Tensor, rng: torch.Generator, epoch: int,
                i: int) -> None:
    """One Adam step of the critic on a real batch and as many generated cubes."""
    t0 = time.perf_counter()
    cfg, report = state.config, state.reporter.report
    z = state.generator.sample_latent(real.shape[0], generator=rng, device=state.device)
    with torch.no_grad(), state.autocast:
        fake = state.generator_ddp(z).float()
    with state.autocast:
        loss, wasserstein, gp = critic_loss(state.critic, real, fake, cfg.train.gp_lambda, rng)
    state.opt_critic.zero_grad(set_to_none=True)
    loss.backward()
    state.dist.average_gradients(state.critic)
    norm = _grad_norm(state.critic.parameters())
    if not state.dist.all_finite(loss, norm):
        _stop(state, epoch, i, "critic")
    report("grad_norm_critic", norm)
    state.opt_critic.step()
    state.critic_step += 1
    state.last_real = real
    report("critic_loss", loss)
    report("wasserstein", wasserstein)
    report("gp", gp)
    report("sec_per_critic_step", time.perf_counter() - t0)


def generator_step(state: TrainState, rng: torch.Generator, use_summary: bool, epoch: int,
                   i: int) -> None:
    """One Adam step of the generator: the adversarial loss against the bare critic (no DDP
    sync and no critic weight gradients), plus the summary loss while it is on."""
    t0 = time.perf_counter()
    cfg, report = state.config, state.reporter.report
    z = state.generator.sample_latent(cfg.train.batch_size // state.dist.world, generator=rng,
                                      device=state.device)
    with state.autocast:
        fake = state.generator_ddp(z).float()

    def critic(x):
        with state.autocast:
            return state.critic(x)

    loss, adversarial, terms = generator_loss(
        critic, fake, state.last_real if use_summary else None,
        cfg.train.lambda_summ if use_summary else 0.0, cfg.summary, state.summary_units)
    if terms:
        report("summary", weighted_summary(terms, cfg.summary))
        for name, value in terms.items():
            report(f"summary_{name}", value)
    params = [p for p in state.generator.parameters() if p.requires_grad]
    state.opt_generator.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    norm = _grad_norm(params)
    if not state.dist.all_finite(loss, norm):
        _stop(state, epoch, i, "generator")
    report("grad_norm_generator", norm)
    state.opt_generator.step()
    state.generator_step += 1
    if state.generator_ema is not None:
        _update_ema(state.generator_ema, state.generator, cfg.train.ema_decay)
    report("generator_loss", loss.detach())
    report("adversarial", adversarial)
    report("sec_per_generator_step", time.perf_counter() - t0)


def end_of_epoch(state: TrainState, epoch: int, dg_split: Split | None,
                 show_progress: bool) -> None:
    """Flush the metrics, compute the duality gap when due, write the checkpoints."""
    cfg, dist, report = state.config, state.dist, state.reporter.report
    if dist.active:
        report("ddp_divergence", max(dist.divergence(state.critic),
                                     dist.divergence(state.generator)))
    state.flush(epoch + 1)
    if dist.main and dg_split is not None and (epoch + 1) % cfg.duality_gap.every == 0:
        t0 = time.perf_counter()
        dg = duality_gap(state.critic, state.generator, dg_split, cfg.duality_gap,
                         cfg.optim.betas, cfg.train.gp_lambda,
                         seed=stream_seed(cfg.train.seed, epoch, 0, PURPOSE_DG),
                         device=state.device, show_progress=show_progress)
        report("duality_gap", dg["duality_gap"])
        report("dg_max", dg["max"])
        report("dg_min", dg["min"])
        report("dg_seconds", time.perf_counter() - t0)
        state.flush(epoch + 1)
    if dist.main:
        payload = state.payload(epoch + 1)
        save_checkpoint(state.run.last, payload)
        every = cfg.train.checkpoint_every
        if every > 0 and (epoch + 1) % every == 0:
            save_checkpoint(state.run.epoch_checkpoint(epoch + 1), payload)
    dist.barrier()


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model for the weights; buffers (BatchNorm statistics)
    are copied."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def _grad_norm(params) -> torch.Tensor:
    norms = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def _stop(state: TrainState, epoch: int, i: int, which: str):
    last = state.run.last
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    raise TrainingError(f"non-finite {which} loss at epoch {epoch + 1}, critic step {i + 1} of "
                        f"the epoch (generator step {state.generator_step + 1}); stopping, {kept}")


__all__ = ["TrainState", "TrainingError", "critic_step", "end_of_epoch", "generator_step",
           "rank_batch", "stream_seed", "train", "train_epoch"]
