"""The commands under torchrun with 2 local CPU processes (gloo), each against the result of
one process: preprocess (the same file bit for bit, a killed rank's work redone, ranks that see
different inputs stopped with one message), sample (the same cubes and boxes), and train
(a checkpoint resumed at another world size, the same effective batch)."""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from lsswgan_core.data import DataConfig, preprocess
from lsswgan_core.sim.simulate import write_suite

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# seed 1: the largest x of the train cubes and boxes are both in simulation 3, rank 1's (see
# test_the_maxima_are_rank_1s), so a rank 0 that did not reduce them would write others
PREPROCESS = ["--grid", "32", "--cube", "8", "--cubes-per-box", "5", "--seed", "1",
              "--length-unit", "Mpc/h"]


def torchrun(*args, nproc=2, timeout=240, cwd=None, python=True):
    """`torchrun --standalone --nproc-per-node 2 ...` as a subprocess (rc, output)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc-per-node", str(nproc), *([] if python else ["--no-python"]), *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)
    return res.returncode, res.stdout + res.stderr


def contents(path) -> dict:
    """Every dataset's dtype, shape and bytes and every attribute (file, groups, datasets)."""
    found = {}

    def attrs(obj):
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            data = obj[()]
            found[name] = (data.dtype.str, data.shape, data.tobytes(), attrs(obj))
        else:
            found[name] = attrs(obj)

    with h5py.File(path, "r") as f:
        found["/"] = attrs(f)
        f.visititems(visit)
    return found


def assert_same_file(a, b):
    ca, cb = contents(a), contents(b)
    assert sorted(ca) == sorted(cb)
    for name in ca:
        assert ca[name] == cb[name], name


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    write_suite(root, 5, 16, 64.0, seed=2, pm_steps=3, show_progress=False)
    return sorted(str(p) for p in root.glob("sim_*"))


@pytest.fixture(scope="module")
def reference(suite, tmp_path_factory):
    """The single-process dataset (whole boxes kept: both maxima are reduced)."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    preprocess(suite, out, DataConfig(grid=32, cube=8, cubes_per_box=5, seed=1,
                                      length_unit="Mpc/h"), show_progress=False)
    return out


def test_the_maxima_are_rank_1s(reference):
    """The premise of the next tests: rank 0's train simulations (even indices) alone do not
    hold x_max nor box_x_max."""
    from lsswgan_core.data import Transform

    with h5py.File(reference) as f:
        sims = f["train"].attrs["simulations"].tolist()
        x = Transform.from_attrs(dict(f.attrs)).inverse(f["train"][()].astype(np.float64))
        boxes = f["boxes/train"][()]
        x_max, box_x_max = f.attrs["x_max"], f.attrs["box_x_max"]
    even = [j for j, i in enumerate(sims) if i % 2 == 0]
    assert x.reshape(len(sims), -1)[even].max() < x_max * (1 - 1e-6)
    assert x.max() == pytest.approx(x_max, rel=1e-6)
    assert boxes[even].max() < box_x_max == boxes.max()


def test_preprocess_on_two_ranks_is_the_single_process_file(suite, reference, tmp_path):
    out = tmp_path / "two.h5"
    rc, output = torchrun("-m", "lsscore", "preprocess", *suite, *PREPROCESS, "--out", out)
    assert rc == 0, output[-3000:]
    assert output.count(f"wrote {out}") == 1   # rank 0 reports
    assert_same_file(out, reference)
    assert not Path(str(out) + ".partial").exists() and not Path(str(out) + ".lock").exists()


# rank 1 kills itself (SIGKILL) when it starts its second simulation: the test's own hook
KILL_RANK_1 = """
import importlib, os, signal, sys
p = importlib.import_module("lsswgan_core.data.preprocess")
if os.environ["RANK"] == "1":
    fast, calls = p.cubes_of_simulation, []
    def killed(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return fast(*a, **k)
    p.cubes_of_simulation = killed
sys.argv[0] = "lsscore"
from lsscore.main import main
main()
"""


def test_a_killed_rank_is_redone_on_rerun(suite, reference, tmp_path):
    script = tmp_path / "kill_rank_1.py"
    script.write_text(KILL_RANK_1)
    out = tmp_path / "killed.h5"
    rc, output = torchrun(script, "preprocess", *suite, *PREPROCESS, "--out", out)
    assert rc != 0 and not out.exists()
    partial = Path(str(out) + ".partial")
    # rank 1 (simulations 1, 3) stored 1 and died in 3; rank 0 was stopped at some point
    assert (partial / "sim_00001.npy").exists() and not (partial / "sim_00003.npy").exists()
    rc, output = torchrun("-m", "lsscore", "preprocess", *suite, *PREPROCESS, "--out", out)
    assert rc == 0, output[-3000:]
    assert_same_file(out, reference)
    assert not partial.exists()


def test_ranks_that_see_different_inputs_stop_with_one_message(suite, tmp_path):
    """The same relative input paths on two 'nodes' (each rank runs in its own directory):
    on rank 1, simulation 2 is another snapshot with fewer particles."""
    for rank in (0, 1):
        for i, sim in enumerate(suite):
            os.makedirs(tmp_path / f"node{rank}", exist_ok=True)
            os.symlink(sim, tmp_path / f"node{rank}" / f"sim_{i}")
    other = tmp_path / "other"
    write_suite(other, 1, 12, 64.0, seed=5, pm_steps=1, show_progress=False)
    os.unlink(tmp_path / "node1" / "sim_2")
    os.symlink(other / "sim_000", tmp_path / "node1" / "sim_2")
    wrapper = tmp_path / "on_node.sh"
    wrapper.write_text(f'#!/bin/sh\ncd "{tmp_path}/node$RANK" && exec "{sys.executable}" '
                       '-m lsscore "$@"\n')
    wrapper.chmod(0o755)
    out = tmp_path / "out.h5"
    t0 = time.monotonic()
    rc, output = torchrun(wrapper, "preprocess", *[f"sim_{i}" for i in range(5)], *PREPROCESS,
                          "--out", out, python=False, timeout=180)
    assert rc != 0 and not out.exists()
    assert time.monotonic() - t0 < 170
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output[-3000:]
    assert "rank 1 sees sim_2/snapshot_000.0 with" in errors[0] and "rank 0 with" in errors[0]
    assert not list(Path(str(out) + ".partial").glob("sim_*.npy"))   # before any work


def _checkpoint(path, model: dict, generator) -> Path:
    """A checkpoint of an untrained generator, as `lsscore train` writes one."""
    import json

    from lsswgan_core.config import config_from_dict, config_to_toml
    from lsswgan_core.data import Transform
    from lsswgan_core.gan.run import save_checkpoint

    cfg = config_from_dict({"model": model, "train": {"batch_size": 4}})
    attrs = {**Transform(x_max=40.0).attrs(), "x_max": 40.0, "box_size": 256.0, "grid": 64,
             "cube_size": 128.0, "cube": 32}
    save_checkpoint(path, {"epoch": 0, "generator_step": 0, "critic_step": 0,
                           "generator": generator.state_dict(), "config": config_to_toml(cfg),
                           "dataset": json.dumps(attrs)})
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    from lsswgan_core.gan.models import BoxGenerator, Generator

    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    cubes = _checkpoint(root / "cubes.pt", {"width": 0.125, "standing_batches": 2},
                        Generator(width=0.125))
    g = BoxGenerator(width=0.125)
    k = np.geomspace(0.005, 3.0, 40)
    g.set_input_power(k, 2e4 * (k / 0.05) ** -1.4 / (1 + (0.02 / k) ** 2), cell_size=4.0)
    boxes = _checkpoint(root / "boxes.pt", {"generator": "box", "width": 0.125}, g)
    return cubes, boxes


def test_sample_on_two_ranks_is_the_single_process_file(checkpoints, tmp_path):
    """Cubes (10 in batches of 4: rank 0 draws batches 0 and 2, rank 1 batch 1) and whole
    boxes (3: rank 0 draws boxes 0 and 2, rank 1 box 1), against one process."""
    from lsswgan_core.gan.sample import sample_boxes, sample_cubes

    cubes, boxes = checkpoints
    sample_cubes(cubes, tmp_path / "one.h5", 10, batch=4, seed=7, physical=True)
    sample_boxes(boxes, tmp_path / "one_boxes.h5", 16, 3, tile=16, seed=5)
    rc, output = torchrun("-m", "lsscore", "sample", "--checkpoint", cubes, "--n-cubes", 10,
                          "--batch", 4, "--seed", 7, "--physical", "--out", tmp_path / "two.h5")
    assert rc == 0, output[-3000:]
    assert output.count("wrote 10 cubes") == 1
    assert_same_file(tmp_path / "two.h5", tmp_path / "one.h5")
    rc, output = torchrun("-m", "lsscore", "sample", "--checkpoint", boxes, "--box", 16, "--n-cubes", 3,
                          "--tile", 16, "--seed", 5, "--out", tmp_path / "two_boxes.h5")
    assert rc == 0, output[-3000:]
    assert_same_file(tmp_path / "two_boxes.h5", tmp_path / "one_boxes.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "one.h5", "one_boxes.h5", "two.h5", "two_boxes.h5"]   # no part file left
    with h5py.File(tmp_path / "one.h5") as f:   # the batches differ: a per-batch seed each
        x = f["samples"][()]
        assert not np.array_equal(x[0], x[4]) and not np.array_equal(x[4], x[8])


def test_training_resumes_at_another_world_size(tmp_path):
    """2 -> 1 and 1 -> 2 processes: the same batches and steps per epoch as one process (the
    effective batch is train.batch_size at any world size), a note and a metrics record of the
    change, replicas in step, and only the run's own files in the run directory."""
    from lsswgan_core.gan.run import load_checkpoint, read_metrics
    from lsswgan_core.gan.train import train

    from ._helpers import tiny_config, write_dataset, write_toml

    data = write_dataset(tmp_path / "tiny.h5", sizes=(32, 8, 8))
    cfg = tiny_config(train={"epochs": 2, "checkpoint_every": 1},
                      duality_gap={"every": 2, "epochs": 1, "batch_size": 4})
    config = write_toml(tmp_path / "tiny.toml", cfg)
    train(data, tmp_path / "one", cfg, show_progress=False)   # the single-process run

    def run(out, *extra, nproc=2):
        rc, output = torchrun("-m", "lsscore", "train", "--data", data, "--config", config,
                              "--out", out, *extra, nproc=nproc)
        assert rc == 0, output[-3000:]
        return output

    run(tmp_path / "two_one", "--max-epochs", 1)
    train(data, tmp_path / "two_one", resume=True, show_progress=False)
    train(data, tmp_path / "one_two", cfg, max_epochs=1, show_progress=False)
    output = run(tmp_path / "one_two", "--resume")
    assert output.count("checkpoint was written by 1 processes, this run has 2") == 1
    one = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    for name, before in (("two_one", 2), ("one_two", 1)):
        root = tmp_path / name
        ckpt = load_checkpoint(root / "checkpoints" / "last.pt")
        assert (ckpt["epoch"], ckpt["critic_step"], ckpt["generator_step"]) == \
            (one["epoch"], one["critic_step"], one["generator_step"]) == (2, 16, 8)
        assert ckpt["world_size"] == 3 - before
        records = read_metrics(root / "metrics.jsonl")
        assert [r["resumed_from_world_size"] for r in records
                if "resumed_from_world_size" in r] == [before]
        assert [r["step"] for r in records if "critic_loss" in r] == \
            [r["step"] for r in read_metrics(tmp_path / "one" / "metrics.jsonl")
             if "critic_loss" in r]
        # the duality gap once (rank 0's, after epoch 2), the replicas in step
        assert sum("duality_gap" in r for r in records) == 1
        # one epoch on two ranks: rank 0's weights checked against every rank's once
        assert [r["ddp_divergence"] for r in records if "ddp_divergence" in r] == [0.0]
        steps = [r for r in records if "gp" in r]   # the penalty, on every rank's share
        assert steps and all(math.isfinite(r["gp"]) and r["gp"] > 0 for r in steps)
        assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
            "checkpoints", "checkpoints/epoch_00000.pt", "checkpoints/epoch_00001.pt",
            "checkpoints/epoch_00002.pt", "checkpoints/last.pt", "config.toml",
            "metrics.jsonl"]
        assert not all(torch_equal(ckpt["generator"], one["generator"]))   # other streams


def torch_equal(a: dict, b: dict):
    import torch

    return [torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point()]


def test_the_ranks_cube_rows_cover_the_cubes_once():
    from lsswgan_core.gan.sample import _count, cube_rows

    for n, batch, world in ((10, 4, 2), (1, 4, 3), (17, 5, 4), (8, 8, 1)):
        rows = [cube_rows(n, batch, r, world) for r in range(world)]
        assert sorted(np.concatenate(rows).tolist()) == list(range(n))
        assert [len(x) for x in rows] == [_count(n, batch, r, world) for r in range(world)]
