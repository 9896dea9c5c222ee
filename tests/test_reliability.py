"""Reliability (issue 13), the fast part: every command that writes, under a file-size limit
(a full disk); kills and reruns; two writers of one output; corrupted snapshots of every
format; hostile arguments. bench/stress.py (`make stress`) runs the same checks at length."""
import os

import numpy as np
import pytest
import torch

from lsswgan_core.sim.simulate import write_suite
from lsswgan_core.gan.train import train

from . import _helpers as rel
from ._helpers import tiny_config, write_dataset, write_toml

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


@pytest.mark.slow
def test_full_disk_simulate(tmp_path):
    out = tmp_path / "suite"
    (out / "sim_000").mkdir(parents=True)
    (out / "sim_000" / "snapshot_000.0").write_bytes(SENTINEL)
    res = rel.lsscore("simulate", "--out", out, "--n-sims", 1, "--particles", 16, "--pm-steps", 1,
                      fsize=4096)
    line = _assert_clean_failure(res, out, {"sim_000/snapshot_000.0": SENTINEL})
    assert "snapshot_000" in line


@pytest.mark.slow
def test_full_disk_preprocess(tmp_path, suite):
    out = tmp_path / "d.h5"
    out.write_bytes(SENTINEL)
    # the per-simulation cubes fit, the final file does not
    res = rel.lsscore("preprocess", *suite, "--out", out, "--grid", 16, "--cube", 16,
                      "--cubes-per-box", 4, "--length-unit", "Mpc/h", fsize=80_000)
    line = _assert_clean_failure(res, tmp_path, {"d.h5": SENTINEL})
    assert str(out) in line


@pytest.mark.slow
def test_full_disk_train_checkpoint(tmp_path, dataset, config, run):
    copy = rel.copy_run(run, tmp_path / "run")
    before = rel.tree_bytes(copy / "checkpoints")
    res = rel.lsscore("train", "--data", dataset, "--out", copy, "--resume", fsize=64 * 1024)
    line = _assert_clean_failure(res, copy, {})
    assert "last.pt" in line
    assert rel.tree_bytes(copy / "checkpoints") == before
    assert not (copy / "lock").exists()


@pytest.mark.slow
def test_full_disk_sample(tmp_path, run):
    out = tmp_path / "s.h5"
    out.write_bytes(SENTINEL)
    res = rel.lsscore("sample", "--checkpoint", run / "checkpoints" / "last.pt", "--n", 64,
                      "--out", out, fsize=200 * 1024)
    line = _assert_clean_failure(res, tmp_path, {"s.h5": SENTINEL})
    assert str(out) in line


@pytest.mark.slow
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


def _one_error_line(res) -> str:
    assert res.exit_code in (1, 2) and isinstance(res.exception, SystemExit), res.exception
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def test_evaluate_names_a_missing_dataset(tmp_path, run):
    """The report makes what it can (the loss figures); the error names the missing file."""
    res = _invoke("evaluate", "--checkpoint", run / "checkpoints" / "last.pt", "--data",
                  tmp_path / "missing.h5", "--out", tmp_path / "report")
    line = _one_error_line(res)
    assert "missing.h5" in line and "no such file" in line, line
    assert (tmp_path / "report" / "fig4_losses.png").is_file()


@pytest.mark.slow
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
    res = _invoke("train", "--data", dataset, "--out", tmp_path / "r", "--set",
                  "train.batch_size=0")
    line = _one_error_line(res)
    assert "train.batch_size must be >= 1" in line, line
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ corrupted snapshots


@pytest.mark.parametrize("fmt", rel.FORMATS)
def test_corrupted_snapshots_give_a_snapshot_error_or_the_same_read(tmp_path, fmt):
    """A few hundred truncations, bit flips in headers and markers and absurd counts per
    format (bench/stress.py runs 10,000): a SnapshotError or exactly the original positions
    (for HDF5 also a consistent rescale, when a unit or h attribute was hit)."""
    outcome = rel.fuzz_format(fmt, 300, tmp_path)
    assert outcome["failures"] == [], outcome["failures"][:5]
    assert outcome["snapshot_error"] > 30   # the corruptions do reach the checks
    assert outcome["snapshot_error"] + outcome["identical"] + outcome["rescaled"] == 300


@pytest.mark.parametrize("exc", [RuntimeError("Can't synchronously determine if attribute exists"),
                                 KeyError("Unable to synchronously open object")])
def test_what_h5py_raises_on_a_corrupt_file_is_a_snapshot_error(tmp_path, monkeypatch, exc):
    from lsswgan_core.io import SnapshotError, open_snapshot
    from lsswgan_core.io import hdf5 as hdf5_module

    path, kwargs = rel.write_snapshot("hdf5-gadget", tmp_path)

    def broken(*args, **kw):
        raise exc

    monkeypatch.setattr(hdf5_module, "_attr", broken)
    with pytest.raises(SnapshotError, match="snap.hdf5"):
        open_snapshot(path, **kwargs)


def test_a_corrupt_npy_header_is_a_snapshot_error(tmp_path):
    from lsswgan_core.io import SnapshotError, open_snapshot

    path, kwargs = rel.write_snapshot("numpy", tmp_path)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"}"):raw.index(b"}") + 1] = b"("   # an unclosed bracket: a TokenError
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="snap.npy"):
        rel.read_positions(open_snapshot(path, **kwargs))


def test_an_hdf5_data_address_past_the_end_is_a_snapshot_error(tmp_path):
    """libhdf5 reads a chunk it cannot find as zeros, without an error."""
    import h5py

    from lsswgan_core.io import SnapshotError, open_snapshot

    path, kwargs = rel.write_snapshot("hdf5-gadget", tmp_path)
    with h5py.File(path, "r") as f:
        offset = f["PartType1/Coordinates"].id.get_chunk_info(0).byte_offset
    raw = bytearray(path.read_bytes())
    at = raw.index(offset.to_bytes(8, "little"))   # the chunk index's address of the data
    raw[at:at + 8] = (2**32 - 1).to_bytes(8, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="past the end of the file"):
        rel.read_positions(open_snapshot(path, **kwargs))


def test_positions_that_are_all_zero_are_a_snapshot_error(tmp_path):
    from lsswgan_core.io import SnapshotError, open_snapshot

    np.save(tmp_path / "zeros.npy", np.zeros((10, 3)))
    with pytest.raises(SnapshotError, match="exactly 0"):
        rel.read_positions(open_snapshot(tmp_path / "zeros.npy", box_size=10.0))
    np.save(tmp_path / "one.npy", np.zeros((1, 3)))   # one particle at the origin is fine
    assert rel.read_positions(open_snapshot(tmp_path / "one.npy", box_size=10.0)).shape == (1, 3)


def test_an_npy_header_length_that_shifts_the_data_is_a_snapshot_error(tmp_path):
    from lsswgan_core.io import SnapshotError, open_snapshot

    path, kwargs = rel.write_snapshot("numpy", tmp_path)
    raw = bytearray(path.read_bytes())
    raw[8] -= 16    # the header length: the data would start 16 bytes early, in the padding
    path.write_bytes(bytes(raw))
    with pytest.raises(SnapshotError, match="header"):
        rel.read_positions(open_snapshot(path, **kwargs))


def test_an_npy_shape_that_disagrees_with_the_data_is_a_snapshot_error(tmp_path):
    from lsswgan_core.io import SnapshotError, open_snapshot

    path, kwargs = rel.write_snapshot("numpy", tmp_path)   # 40 particles
    raw = path.read_bytes().replace(b"(40, 3)", b"(00, 3)", 1)   # a flipped bit: 0 particles
    path.write_bytes(raw)
    with pytest.raises(SnapshotError, match="bytes of data"):
        rel.read_positions(open_snapshot(path, **kwargs))


# ------------------------------------------------------------------ two writers, kills


def _samples(path):
    import h5py

    with h5py.File(path, "r") as f:
        return f["samples"][...]


def _reference_samples(ckpt, n, seed):
    from lsswgan_core.gan.sample import generate

    return generate(ckpt, n, seed=seed)[0]


@pytest.mark.slow
def test_two_samples_into_one_output_leave_one_complete_result(tmp_path, run):
    ckpt = run / "checkpoints" / "last.pt"
    refs = [_reference_samples(ckpt, 16, seed) for seed in (1, 2)]
    assert not np.array_equal(refs[0], refs[1])
    procs = [rel.lsscore("sample", "--checkpoint", ckpt, "--n", 16, "--seed", seed, "--out",
                         tmp_path / "s.h5", background=True) for seed in (1, 2)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    got = _samples(tmp_path / "s.h5")
    assert any(np.array_equal(got, ref) for ref in refs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]   # no temporary file


def test_a_second_preprocess_of_one_output_is_refused_while_the_first_runs(tmp_path, suite):
    from lsswgan_core.data import DataConfig, preprocess
    from lsswgan_core.files import exclusive_lock

    out = tmp_path / "d.h5"
    cfg = DataConfig(grid=16, cube=8, cubes_per_box=2, length_unit="Mpc/h")
    with exclusive_lock(tmp_path / "d.h5.lock", str(out)):   # as a live preprocess would
        with pytest.raises(ValueError, match=r"d\.h5 is in use: pid \d+"):
            preprocess(suite[:3], out, cfg, show_progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing touched
    preprocess(suite[:3], out, cfg, show_progress=False)      # released: it runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5"]


@pytest.mark.slow
def test_a_killed_sample_leaves_nothing_and_a_rerun_gives_the_same_file(tmp_path, run):
    ckpt = run / "checkpoints" / "last.pt"
    ref = _reference_samples(ckpt, 32, 0)
    out = tmp_path / "s.h5"
    proc = rel.lsscore("sample", "--checkpoint", ckpt, "--n", 32, "--out", out, background=True)
    rel.kill_after(proc, 2.5)
    proc.communicate()
    assert not out.exists() or np.array_equal(_samples(out), ref)   # never a torn file
    res = rel.lsscore("sample", "--checkpoint", ckpt, "--n", 32, "--out", out)
    assert res.returncode == 0
    assert np.array_equal(_samples(out), ref)
    assert rel.temporaries(tmp_path) == []   # a killed writer's temporary file is gone


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    import socket
    import subprocess

    from lsswgan_core.files import write_bytes

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f"x.h5.{host}.{dead.pid}.0123abcd.tmp"        # a killed writer's
    live = tmp_path / f"x.h5.{host}.{os.getpid()}.0123abcd.tmp"       # a live writer's
    other = tmp_path / f"x.h5.another-host.{dead.pid}.0123abcd.tmp"  # unknowable: kept
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    write_bytes(tmp_path / "x.h5", b"complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["x.h5", live.name, other.name])


# ------------------------------------------------------------------ hostile arguments

# found by the sweep in the kernels' wrappers (csrc/, not this suite's to fix): listed in the
# issue's follow-up, kept visible here so that a fix shows as a change
def test_hostile_op_arguments_are_refused():
    cases = rel.hostile_ops()
    assert len(cases) > 40
    found = {name: problem for name, call in cases
             if (problem := rel.run_hostile_op(call)) is not None}
    assert not found, found


@pytest.fixture(scope="module")
def sweep_files(suite, dataset, run, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    np.save(root / "p.npy", np.random.default_rng(0).uniform(0, 100, (50, 3)))
    (root / "t").mkdir()
    return {"suite": suite, "dataset": dataset, "checkpoint": run / "checkpoints" / "last.pt",
            "positions": root / "p.npy", "tmp": root / "t"}


def test_hostile_cli_arguments_sample(sweep_files):
    """A sample of the sweep of every option of every command with nan, inf, -1, 0, huge,
    empty, wrong type and missing files (bench/stress.py runs all of it): one 'Error' line or
    a run that the value makes sense for; never a traceback."""
    cases = rel.hostile_cases(sweep_files)
    rng = np.random.default_rng(13)
    picked = [cases[i] for i in rng.choice(len(cases), 24, replace=False)
              if cases[i][0] != "train" or cases[i][2] not in ("0", "-1", "99999999999999999999")]
    problems = {case: p for case in picked if (p := rel.run_hostile(sweep_files, *case))}
    assert problems == {}, problems
