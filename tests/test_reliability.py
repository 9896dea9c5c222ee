"""Reliability (issue 13), the fast part: every command that writes, under a file-size limit
(a full disk); kills and reruns; two writers of one output; corrupted snapshots of every
format; hostile arguments. bench/stress.py (`make stress`) runs the same checks at length."""
import json
import shutil

import numpy as np
import pytest
import torch

from lsswgan_core.simulate import write_suite
from lsswgan_core.train import train

from . import _reliability as rel
from ._datasets import write_dataset
from .test_train import tiny_config, write_toml

SENTINEL = b"the previous file\n"


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    write_suite(root, 8, 16, 64.0, seed=1, pm_steps=1, show_progress=False)
    return sorted(str(p / "snapshot_000") for p in root.glob("sim_*"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data") / "d.h5", sizes=(8, 4, 4))


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_toml(tmp_path_factory.mktemp("cfg") / "tiny.toml",
                      tiny_config(train={"epochs": 2}))


@pytest.fixture(scope="module")
def run(dataset, config, tmp_path_factory):
    from lsswgan_core.config import load_config

    out = tmp_path_factory.mktemp("runs") / "run"
    train(dataset, out, load_config(config), show_progress=False, max_epochs=1)
    return out


# ------------------------------------------------------------------ full disk


def _assert_clean_failure(res, root, previous: dict):
    line = rel.one_line_failure(res)
    assert "file too large" in line, line
    assert rel.temporaries(root) == []
    now = rel.tree_bytes(root)
    for name, content in previous.items():
        assert now.get(name) == content, f"{name} changed"
    return line


def test_full_disk_simulate(tmp_path):
    out = tmp_path / "suite"
    (out / "sim_000").mkdir(parents=True)
    (out / "sim_000" / "snapshot_000.0").write_bytes(SENTINEL)
    res = rel.lsscore("simulate", "--out", out, "--n-sims", 1, "--particles", 16, "--pm-steps", 1,
                      fsize=4096)
    line = _assert_clean_failure(res, out, {"sim_000/snapshot_000.0": SENTINEL})
    assert "snapshot_000" in line


def test_full_disk_simulate_hdf5(tmp_path):
    out = tmp_path / "suite"
    res = rel.lsscore("simulate", "--out", out, "--n-sims", 1, "--particles", 16, "--pm-steps", 1,
                      "--format", "hdf5", fsize=4096)
    _assert_clean_failure(res, out, {})
    assert not list(out.rglob("*.hdf5"))


def test_full_disk_preprocess(tmp_path, suite):
    out = tmp_path / "d.h5"
    out.write_bytes(SENTINEL)
    # the per-simulation cubes fit, the final file does not
    res = rel.lsscore("preprocess", *suite, "--out", out, "--grid", 16, "--cube", 16,
                      "--cubes-per-box", 4, "--length-unit", "Mpc/h", fsize=80_000)
    line = _assert_clean_failure(res, tmp_path, {"d.h5": SENTINEL})
    assert str(out) in line


def test_full_disk_train_checkpoint(tmp_path, dataset, config, run):
    copy = rel.copy_run(run, tmp_path / "run")
    before = rel.tree_bytes(copy / "checkpoints")
    res = rel.lsscore("train", "--data", dataset, "--out", copy, "--resume", fsize=64 * 1024)
    line = _assert_clean_failure(res, copy, {})
    assert "last.pt" in line
    assert rel.tree_bytes(copy / "checkpoints") == before
    assert not (copy / "lock").exists()


def test_full_disk_sample(tmp_path, run):
    out = tmp_path / "s.h5"
    out.write_bytes(SENTINEL)
    res = rel.lsscore("sample", "--checkpoint", run / "checkpoints" / "last.pt", "--n", 64,
                      "--out", out, fsize=200 * 1024)
    line = _assert_clean_failure(res, tmp_path, {"s.h5": SENTINEL})
    assert str(out) in line


def test_full_disk_evaluate(tmp_path, run, dataset):
    out = tmp_path / "report"
    out.mkdir()
    (out / "fig6_slices.png").write_bytes(SENTINEL)
    res = rel.lsscore("evaluate", "--checkpoint", run / "checkpoints" / "last.pt", "--data",
                      dataset, "--out", out, "--n", 4, fsize=8 * 1024)
    _assert_clean_failure(res, out, {"fig6_slices.png": SENTINEL})


# ------------------------------------------------------------------ one-line errors


def _invoke(*args):
    from click.testing import CliRunner

    from lsscore.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("option, value", [("--box-size", "nan"), ("--box-size", "inf"),
                                           ("--redshift", "nan"), ("--redshift", "inf")])
def test_simulate_refuses_non_finite_numbers(tmp_path, option, value):
    res = _invoke("simulate", "--out", tmp_path / "s", "--n-sims", 1, "--particles", 4,
                  "--pm-steps", 1, option, value)
    assert res.exit_code == 2 and option in res.output and "finite" in res.output, res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("command, option", [("simulate", "--particles"),
                                             ("preprocess", "--grid"), ("paint", "--grid")])
def test_sizes_beyond_memory_are_refused_before_allocating(tmp_path, suite, command, option):
    np.save(tmp_path / "p.npy", np.zeros((4, 3)))
    args = {"simulate": ["simulate", "--out", tmp_path / "s", "--n-sims", 1, "--particles", 1024],
            "preprocess": ["preprocess", suite[0], suite[1], "--out", tmp_path / "d.h5",
                           "--grid", 100_000, "--length-unit", "Mpc/h"],
            "paint": ["paint", tmp_path / "p.npy", "--box-size", 1, "--grid", 100_000, "--out",
                      tmp_path / "g.npy"]}[command]
    res = _invoke(*args)
    assert res.exit_code in (1, 2), res.output
    assert isinstance(res.exception, SystemExit), res.exception
    assert option in res.output and "memory" in res.output, res.output


def test_evaluate_names_a_missing_dataset(tmp_path, run):
    res = rel.lsscore("evaluate", "--checkpoint", run / "checkpoints" / "last.pt", "--data",
                      tmp_path / "missing.h5", "--out", tmp_path / "report")
    line = rel.one_line_failure(res)
    assert "missing.h5" in line and "no such file" in line, line
    assert not (tmp_path / "report").exists()   # refused before any work


@pytest.mark.parametrize("damage", ["shape", "width"])
def test_resume_with_a_checkpoint_that_does_not_fit_is_one_line(tmp_path, dataset, run, damage):
    copy = rel.copy_run(run, tmp_path / "run")
    if damage == "shape":   # the right keys, a tensor of another shape
        ckpt = torch.load(copy / "checkpoints" / "last.pt", weights_only=True)
        name = next(iter(ckpt["critic"]))
        ckpt["critic"][name] = torch.zeros(3, 1)
        torch.save(ckpt, copy / "checkpoints" / "last.pt")
    else:                   # the run's config edited to another model width
        text = (copy / "config.toml").read_text().replace("width = 0.125", "width = 0.25")
        (copy / "config.toml").write_text(text)
    before = rel.tree_bytes(copy / "checkpoints")
    res = rel.lsscore("train", "--data", dataset, "--out", copy, "--resume")
    line = rel.one_line_failure(res)
    assert "checkpoint" in line and "do not fit" in line, line
    assert rel.tree_bytes(copy / "checkpoints") == before


def test_batch_size_zero_is_refused(tmp_path, dataset):
    res = rel.lsscore("train", "--data", dataset, "--out", tmp_path / "r", "--set",
                      "train.batch_size=0")
    line = rel.one_line_failure(res)
    assert "train.batch_size must be >= 1" in line, line
    assert not (tmp_path / "r").exists()
