"""The training loop: resume after a real SIGKILL, the duality gap's isolation and meaning,
non-finite losses, clear errors, DistributedDataParallel with 2 CPU processes, sampling."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from lsswgan_core.gan import train as train_module
from lsswgan_core.config import DualityGapConfig
from lsswgan_core.data import Dataset, dataset as dataset_module
from lsswgan_core.gan.duality_gap import duality_gap
from lsswgan_core.gan.models import Critic, Generator
from lsswgan_core.gan.run import RunDir, load_checkpoint, read_metrics
from lsswgan_core.gan.train import TrainingError, train

from ._helpers import assert_same_checkpoint, tiny_config, write_dataset, write_toml

TIMING = ("sec_per_critic_step", "sec_per_generator_step", "dg_seconds", "elapsed")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "tiny.h5", sizes=(32, 8, 8))


@pytest.fixture(scope="module")
def reference_run(dataset, tmp_path_factory):
    """An uninterrupted 3-epoch run with the duality gap on (after epoch 2)."""
    out = tmp_path_factory.mktemp("runs") / "reference"
    train(dataset, out, tiny_config(), show_progress=False)
    return out


def strip_timing(records):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def test_run_directory_and_metrics(reference_run):
    assert (reference_run / "config.toml").is_file()
    ckpts = sorted(p.name for p in (reference_run / "checkpoints").iterdir())
    assert ckpts == ["epoch_00000.pt", "epoch_00002.pt", "last.pt"]
    assert load_checkpoint(reference_run / "checkpoints" / "epoch_00000.pt")["generator_step"] == 0
    records = read_metrics(reference_run / "metrics.jsonl")
    steps = [r for r in records if "critic_loss" in r]
    # 32 cubes / batch 4 = 8 critic steps per epoch, a generator step every 2: 4 per epoch
    assert [r["step"] for r in steps] == list(range(1, 13))
    for key in ("generator_loss", "wasserstein", "gp", "grad_norm_critic", "grad_norm_generator",
                "sec_per_critic_step", "sec_per_generator_step"):
        assert all(np.isfinite(r[key]) for r in steps), key
    # the summary loss is on for summary_epochs = 2, then off
    assert all("summary_pk" in r and r["summary"] > 0 for r in steps if r["epoch"] <= 2)
    assert not any("summary" in r for r in steps if r["epoch"] == 3)
    dg = [r for r in records if "duality_gap" in r]
    assert len(dg) == 1 and dg[0]["epoch"] == 2 and dg[0]["duality_gap"] >= 0
    last = load_checkpoint(reference_run / "checkpoints" / "last.pt")
    assert last["epoch"] == 3 and last["generator_step"] == 12


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights(dataset, reference_run, tmp_path):
    """Kill a real `lsscore train` process in the middle of epoch 2, resume, compare."""
    out = tmp_path / "killed"
    config = write_toml(tmp_path / "tiny.toml", tiny_config())
    cmd = [sys.executable, "-m", "lsscore", "train", "--data", str(dataset), "--config",
           str(config), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if metrics.exists() and any(r.get("epoch") == 2 and r.get("step") == 6
                                        for r in read_metrics(metrics)):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1   # killed mid-epoch 2
    assert any(r["step"] >= 6 for r in read_metrics(metrics))
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_same_checkpoint(out / "checkpoints" / "last.pt",
                           reference_run / "checkpoints" / "last.pt")
    assert strip_timing(read_metrics(metrics)) == \
        strip_timing(read_metrics(reference_run / "metrics.jsonl"))


def test_duality_gap_does_not_touch_the_run(dataset, reference_run, tmp_path):
    out = tmp_path / "no_dg"
    train(dataset, out, tiny_config(duality_gap={"enabled": False}), show_progress=False)
    assert_same_checkpoint(out / "checkpoints" / "last.pt",
                           reference_run / "checkpoints" / "last.pt")
    assert not any("duality_gap" in r for r in read_metrics(out / "metrics.jsonl"))


class Cubes:
    """A dataset split stand-in over a tensor."""

    def __init__(self, cubes):
        self.cubes = cubes

    def __len__(self):
        return len(self.cubes)

    def batch(self, idx):
        return self.cubes[idx]


def test_duality_gap_small_at_equilibrium_large_when_off():
    """At an equilibrium (G's own distribution as data, a constant critic, which is the
    optimal critic there) the gap is near 0; with data far from G it is large."""
    torch.manual_seed(3)
    generator = Generator(width=0.125)
    critic = Critic(width=0.125)
    with torch.no_grad():
        critic.dense.weight.zero_()
        matched = torch.cat([generator(torch.randn(8, 256)) for _ in range(4)])
    off = (0.9 + 0.05 * torch.rand(32, 1, 32, 32, 32)).clamp(max=1)
    cfg = DualityGapConfig(epochs=2, batch_size=8)
    gap_matched = duality_gap(critic, generator, Cubes(matched), cfg, seed=1)
    gap_off = duality_gap(critic, generator, Cubes(off), cfg, seed=1)
    assert gap_matched["duality_gap"] >= 0
    assert gap_off["duality_gap"] > 10 * gap_matched["duality_gap"]
    assert gap_off["max"] > gap_off["max_curve"][0]    # the critic copy learned to separate


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = train_module.critic_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, w, gp = real_loss(*args, **kwargs)
        return (loss * float("nan") if calls["n"] == 11 else loss), w, gp

    monkeypatch.setattr(train_module, "critic_loss", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"non-finite critic loss at epoch 2, critic step 3 "
                                            r"of the epoch \(generator step 6\)"):
        train(dataset, out, tiny_config(duality_gap={"enabled": False}), show_progress=False)
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["critic"].values())


def run_cli(*args):
    """`lsscore ARGS` in this process (click's runner: a subprocess would spend most of its
    time importing torch): (returncode, stdout, stderr) like subprocess.run's result."""
    from click.testing import CliRunner

    from lsscore.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception      # a traceback, which the CLI must never show
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr)


@pytest.mark.slow
def test_clear_errors(dataset, reference_run, tmp_path):
    small = write_dataset(tmp_path / "small.h5", sizes=(8, 2, 2), n=16)
    res = run_cli("train", "--data", small, "--out", tmp_path / "r")
    assert res.returncode != 0 and "cubes are 16^3 but the model takes 32^3" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("train", "--data", dataset, "--out", reference_run)
    assert res.returncode != 0 and "already holds a run; pass --resume" in res.stderr
    res = run_cli("train", "--data", dataset, "--out", tmp_path / "nothing", "--resume")
    assert res.returncode != 0 and "nothing to resume" in res.stderr
    copy = tmp_path / "copy"
    shutil.copytree(reference_run, copy)
    other = write_toml(tmp_path / "other.toml", tiny_config(train={"n_critic": 3}))
    res = run_cli("train", "--data", dataset, "--out", copy, "--resume", "--config", other)
    assert res.returncode != 0 and "differs from" in res.stderr
    res = run_cli("train", "--data", dataset, "--out", copy, "--resume", "--seed", 5)
    assert res.returncode != 0 and "started with seed 0" in res.stderr
    res = run_cli("sample", "--checkpoint", tmp_path / "none.pt", "--n", 2, "--out", tmp_path / "s.h5")
    assert res.returncode != 0 and "no such checkpoint" in res.stderr
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    res = run_cli("sample", "--checkpoint", tmp_path / "junk.pt", "--n", 2, "--out", tmp_path / "s.h5")
    assert res.returncode != 0 and "not a readable lsscore checkpoint" in res.stderr
    if not torch.cuda.is_available():
        res = run_cli("train", "--data", dataset, "--out", tmp_path / "gpu", "--device", "cuda")
        assert res.returncode != 0 and "torch sees no GPU" in res.stderr
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f.create_dataset("train", data=np.full((8, 32, 32, 32), np.nan, np.float32))
    with pytest.raises(TrainingError, match="NaN"):
        train(tmp_path / "nan.h5", tmp_path / "r2", tiny_config(), show_progress=False)
    with pytest.raises(TrainingError, match="fewer than one batch"):
        train(write_dataset(tmp_path / "few.h5", sizes=(3, 2, 2)), tmp_path / "r3", tiny_config(),
              show_progress=False)


@pytest.mark.parametrize("damage, match", [
    (lambda f: f.attrs.__setitem__("x_max", 0.0), "x_max = 0.0 is not a positive number"),
    (lambda f: f.attrs.__setitem__("transform_x_max", -2.0), "transform_x_max = -2.0"),
    (lambda f: f["train"].__setitem__((0, 0, 0, 0), 1.5), r"train holds values in .*1\.5.*\[0, 1\]"),
    (lambda f: f["train"].__setitem__((1, 0, 0, 0), -0.25), r"-0\.25"),
])
def test_a_dataset_outside_the_transform_range_is_refused(tmp_path, damage, match):
    path = write_dataset(tmp_path / "d.h5", sizes=(4, 2, 2), n=8)
    assert len(Dataset(path).split("train")) == 4  # as written: accepted
    with h5py.File(path, "r+") as f:
        damage(f)
    with pytest.raises(dataset_module.DatasetError, match=match):
        Dataset(path).split("train")
    with pytest.raises(TrainingError, match=match):
        train(path, tmp_path / "run", tiny_config(), show_progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_sample_refuses_what_cannot_be_done_in_one_line(reference_run, tmp_path):
    from click.testing import CliRunner

    from lsscore.main import cli

    ckpt = reference_run / "checkpoints" / "last.pt"
    res = CliRunner().invoke(cli, ["sample", "--checkpoint", str(ckpt), "--n-cubes",
                                   str(10**12), "--out", str(tmp_path / "s.h5")])
    assert res.exit_code == 1 and "of memory available" in res.output, res.output
    res = CliRunner().invoke(cli, ["sample", "--checkpoint", str(ckpt), "--n", "2", "--out",
                                   str(tmp_path / "no" / "s.h5")])
    assert res.exit_code == 1 and "does not exist" in res.output, res.output
    # the right keys with tensors of other shapes
    bad = load_checkpoint(ckpt)
    for key in ("generator", "generator_ema"):
        if key in bad:
            name = next(iter(bad[key]))
            bad[key][name] = torch.zeros(3, 1)
    torch.save(bad, tmp_path / "shapes.pt")
    res = CliRunner().invoke(cli, ["sample", "--checkpoint", str(tmp_path / "shapes.pt"), "--n",
                                   "2", "--out", str(tmp_path / "s.h5")])
    assert res.exit_code == 1 and "do not fit its model config" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "s.h5").exists()


def test_a_second_trainer_of_a_locked_run_is_refused(dataset, tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():  # as a live `lsscore train` into the same --out
        with pytest.raises(TrainingError, match=rf"pid {os.getpid()} on host "
                                                rf"{re.escape(socket.gethostname())}"):
            train(dataset, run.root, tiny_config(), show_progress=False)
        assert sorted(os.listdir(run.root)) == ["lock"]  # nothing written


@pytest.mark.slow
def test_sample_writes_transformed_and_physical_cubes(dataset, reference_run, tmp_path):
    ckpt = reference_run / "checkpoints" / "last.pt"
    res = run_cli("sample", "--checkpoint", ckpt, "--n", 10, "--out", tmp_path / "t.h5",
                  "--batch", 4)
    assert res.returncode == 0, res.stderr
    assert "cubes/s" in res.stdout
    res = run_cli("sample", "--checkpoint", ckpt, "--n", 10, "--out", tmp_path / "p.h5",
                  "--batch", 4, "--physical")
    assert res.returncode == 0, res.stderr
    from lsswgan_core.data import Transform

    with h5py.File(tmp_path / "t.h5") as t, h5py.File(tmp_path / "p.h5") as p, h5py.File(dataset) as d:
        y, x = t["samples"][...], p["samples"][...]
        assert y.shape == x.shape == (10, 32, 32, 32)
        assert 0 <= y.min() and y.max() <= 1
        for key in ("transform_x_max", "transform_c", "transform_s", "transform_name", "cube_size"):
            assert t.attrs[key] == d.attrs[key]
        transform = Transform.from_attrs(p.attrs)
        np.testing.assert_allclose(x, transform.inverse(y.astype(np.float64)), rtol=1e-5, atol=1e-6)
        assert not t.attrs["physical"] and p.attrs["physical"]


@pytest.mark.slow
def test_gradient_penalty_under_torchrun(tmp_path):
    """The gradient penalty's gradients under DDP on two gloo processes match one process's
    (tests/_ddp_gradient_penalty.py). A whole `lsscore train` under torchrun, its replicas in
    step and its steps per epoch: tests/test_distributed.py."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([str(torchrun), "--nproc-per-node", "2",
                          str(Path(__file__).with_name("_ddp_gradient_penalty.py"))],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert res.stdout.count("largest relative gradient difference") == 2


def test_split_read_from_the_file_trains_like_the_one_in_memory(dataset, tmp_path, monkeypatch):
    """Splits over dataset.IN_MEMORY_LIMIT are read per batch (h5py wants sorted indices): the run
    must be the same as with the split in memory."""
    cfg = tiny_config(train={"epochs": 1}, duality_gap={"enabled": False})
    train(dataset, tmp_path / "memory", cfg, show_progress=False)
    monkeypatch.setattr(dataset_module, "IN_MEMORY_LIMIT", 0)
    source = Dataset(dataset).split("train")
    assert not source.in_memory
    idx = torch.tensor([5, 1, 7])
    with h5py.File(dataset) as f:
        assert torch.equal(source.batch(idx)[:, 0], torch.from_numpy(f["train"][...][idx.numpy()]))
    train(dataset, tmp_path / "file", cfg, show_progress=False)
    assert_same_checkpoint(tmp_path / "file" / "checkpoints" / "last.pt",
                           tmp_path / "memory" / "checkpoints" / "last.pt")


FIDELITY = {"model": {"upsample": "nearest", "padding": "replicate", "minibatch_std": True},
            "optim": {"lr_critic": 3e-4, "lr_generator": 1e-4},
            "train": {"ema_decay": 0.9},
            "summary": {"units": "train", "pk_bins": "corner"},
            "duality_gap": {"enabled": False}}


def test_fidelity_options_checkpoint_and_resume(dataset, tmp_path):
    """The options beyond the paper train, store what they add (the generator's moving
    average, the summary units of the train split) and resume to the same weights."""
    cfg = tiny_config(**FIDELITY)
    train(dataset, tmp_path / "full", cfg, show_progress=False)
    train(dataset, tmp_path / "split", cfg, show_progress=False, max_epochs=2)
    train(dataset, tmp_path / "split", cfg, show_progress=False, resume=True)
    assert_same_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt",
                           tmp_path / "full" / "checkpoints" / "last.pt")
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for name in a["generator_ema"]:
        assert torch.equal(a["generator_ema"][name], b["generator_ema"][name]), name
    assert set(a["summary_units"]) == {"pk", "mass", "peak"}
    assert all(float(v) > 0 for v in a["summary_units"].values())
    # the moving average differs from the live weights, and the learning rates are separate
    assert not torch.equal(a["generator_ema"]["dense.weight"], a["generator"]["dense.weight"])
    assert a["opt_critic"]["param_groups"][0]["lr"] == 3e-4
    assert a["opt_generator"]["param_groups"][0]["lr"] == 1e-4
    records = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert all(np.isfinite(r["summary_pk"]) for r in records if "summary_pk" in r)


def test_standing_statistics_make_a_cube_independent_of_its_batch(dataset, reference_run):
    from lsswgan_core.gan.run import generator_from_checkpoint
    from lsswgan_core.gan.sample import generate, standing_statistics

    ckpt_path = reference_run / "checkpoints" / "last.pt"
    gen, cfg, _ = generator_from_checkpoint(load_checkpoint(ckpt_path))
    # the standing statistics are the plain average of the batch statistics over the batches
    first_bn = next(m for m in gen.modules() if isinstance(m, torch.nn.BatchNorm3d))
    means = []
    hook = first_bn.register_forward_hook(
        lambda module, args, out: means.append(args[0].mean(dim=(0, 2, 3, 4))))
    gen.train()
    rng = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(4):
            gen(torch.randn(4, 256, generator=rng))
    hook.remove()
    standing_statistics(gen, 4, 4, torch.Generator().manual_seed(1))
    assert not gen.training
    torch.testing.assert_close(first_bn.running_mean, torch.stack(means).mean(0))
    z = torch.randn(6, 256, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(gen(z)[:2], gen(z[:2]), rtol=1e-5, atol=1e-6)
        gen.train()   # batch statistics: the same latents give other cubes in another batch
        assert not torch.allclose(gen(z)[:2], gen(z[:2]))
    # generate: standing statistics by default, batch statistics as an option
    a, meta, _ = generate(ckpt_path, 5, batch=5, seed=3)
    assert meta["batchnorm"] == "standing" and a.shape == (5, 32, 32, 32)
    b, _, _ = generate(ckpt_path, 5, batch=5, seed=3, bn="batch")
    assert not np.allclose(a, b)


def test_the_ranks_shares_make_the_single_process_batches():
    """rank_batch: at any world size dividing the batch, the ranks' shares of batch i are
    disjoint and together the batch one process takes."""
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    for world in (1, 2, 4):
        for i in range(5):
            shares = [train_module.rank_batch(order, i, 8, r, world) for r in range(world)]
            assert all(len(s) == 8 // world for s in shares)
            assert torch.equal(torch.cat(shares), order[i * 8:(i + 1) * 8])


def test_a_batch_that_the_processes_cannot_share_is_refused(dataset):
    config = tiny_config(train={"batch_size": 4})
    with pytest.raises(TrainingError, match=r"batch_size \(4\).*multiple of 3"):
        train_module._open_splits(dataset, config, SimpleNamespace(world=3, main=True))
    _, train_split, dg_split, steps = train_module._open_splits(
        dataset, config, SimpleNamespace(world=2, main=True))
    assert steps == 32 // 4   # the global batch: as many steps as one process takes
    for split in (train_split, dg_split):
        if split is not None:
            split.close()
