"""`lsscore preprocess`: splits by simulation, the file's contents and attributes, resuming
after a real kill, bad inputs, and the torch Dataset."""
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lsscore.main import cli
from lsswgan_core.data import DataConfig, Dataset, DatasetError, Transform, assign_splits, preprocess
from lsswgan_core.io import write_gadget, write_hdf5
from lsswgan_core.sim.simulate import write_suite

from ._helpers import write_dataset

preprocess_module = importlib.import_module("lsswgan_core.data.preprocess")
dataset_module = importlib.import_module("lsswgan_core.data.dataset")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    write_suite(root, 5, 16, 64.0, seed=2, pm_steps=3, show_progress=False)
    return sorted(str(p) for p in root.glob("sim_*"))


def _contents(path):
    with h5py.File(path, "r") as f:
        data = {}
        f.visititems(lambda name, obj: data.__setitem__(name, obj[:])
                     if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}
    return data, attrs


def test_assign_splits_by_simulation():
    s = assign_splits(10, (0.8, 0.1, 0.1), seed=0)
    assert sorted(s["train"] + s["val"] + s["dg"]) == list(range(10))
    assert (len(s["train"]), len(s["val"]), len(s["dg"])) == (8, 1, 1)
    s = assign_splits(3, (0.8, 0.1, 0.1), seed=0)
    assert all(len(v) == 1 for v in s.values())
    assert assign_splits(10, (0.8, 0.1, 0.1), seed=1) != assign_splits(10, (0.8, 0.1, 0.1), seed=0)


def test_end_to_end_through_the_cli(tmp_path, suite):
    out = tmp_path / "data.h5"
    result = CliRunner().invoke(cli, ["preprocess", *suite, "--out", str(out), "--grid", "32",
                                      "--cube", "8", "--cubes-per-box", "6", "--seed", "4",
                                      "--length-unit", "Mpc/h"])
    assert result.exit_code == 0, result.output
    data, attrs = _contents(out)
    assert data["train"].shape == (3 * 6, 8, 8, 8) and data["dg"].shape == (6, 8, 8, 8)
    assert data["train"].min() >= 0 and data["train"].max() == pytest.approx(1.0)
    assert attrs["box_size"] == 64.0 and attrs["cube_size"] == 16.0 and attrs["grid"] == 32
    assert attrs["scheme"] == "ngp" and attrs["format_version"] == 2
    assert len(attrs["source_files"]) == 5
    with h5py.File(out) as f:
        sims = [set(f[k].attrs["simulations"].tolist()) for k in ("train", "val", "dg")]
    assert not (sims[0] & sims[1] or sims[0] & sims[2] or sims[1] & sims[2])
    # the transform is recorded and inverts to rho/rhobar: mean over many cubes near 1
    t = Transform.from_attrs(attrs)
    x = t.inverse(data["train"].astype(np.float64))
    assert x.max() == pytest.approx(attrs["x_max"], rel=1e-6)
    assert 0.7 < x.mean() < 1.3
    assert not os.path.exists(str(out) + ".partial") and not os.path.exists(str(out) + ".tmp")
    ds = Dataset(out).split("val").torch_dataset()
    assert len(ds) == 6 and ds[0].shape == (1, 8, 8, 8) and ds[0].dtype == torch.float32
    with pytest.raises(KeyError, match="no split"):
        Dataset(out).split("test")


@pytest.mark.slow
def test_workers_give_the_same_file(tmp_path, suite):
    cfg = dict(grid=32, cube=8, cubes_per_box=4, seed=9, length_unit="Mpc/h")
    a = preprocess(suite, tmp_path / "a.h5", DataConfig(**cfg), show_progress=False)
    b = preprocess(suite, tmp_path / "b.h5", DataConfig(**cfg, workers=2),
                   show_progress=False)
    da, _ = _contents(a)
    db, _ = _contents(b)
    for k in da:
        assert np.array_equal(da[k], db[k])


# `lsscore` with each simulation slowed by a second (the test's own hook, not the library's),
# so that the kill lands between two stored simulations
SLOW_PREPROCESS = """
import importlib, sys, time
p = importlib.import_module("lsswgan_core.data.preprocess")
fast = p.cubes_of_simulation
p.cubes_of_simulation = lambda *a, **k: (time.sleep(1), fast(*a, **k))[1]
sys.argv[0] = "lsscore"
from lsscore.main import main
main()
"""


@pytest.mark.slow
def test_resume_after_kill_gives_the_same_file(tmp_path, suite):
    args = [*suite, "--grid", "32", "--cube", "8", "--cubes-per-box", "5", "--seed", "3",
            "--length-unit", "Mpc/h"]
    ref = tmp_path / "ref.h5"
    assert CliRunner().invoke(cli, ["preprocess", *args, "--out", str(ref)]).exit_code == 0
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-c", SLOW_PREPROCESS, "preprocess", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    for line in proc.stderr:  # progress lines: kill once two simulations are stored
        if "2/5" in line or time.time() > deadline:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and os.path.isdir(str(out) + ".partial")
    finished = list((tmp_path / "killed.h5.partial").glob("sim_?????.npy"))
    assert 2 <= len(finished) < 5
    result = CliRunner().invoke(cli, ["preprocess", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    ref_data, ref_attrs = _contents(ref)
    data, attrs = _contents(out)
    for k in ref_data:
        assert np.array_equal(ref_data[k], data[k])
    assert {k: v for k, v in attrs.items()} == ref_attrs


def test_resume_after_an_input_changed_recomputes_that_simulation(tmp_path, suite, monkeypatch):
    sims = [str(shutil.copytree(p, tmp_path / "in" / os.path.basename(p))) for p in suite]
    cfg = DataConfig(grid=32, cube=8, cubes_per_box=3, seed=5, length_unit="Mpc/h")
    before_change = preprocess(sims, tmp_path / "old.h5", cfg, show_progress=False)
    fast, stored = preprocess_module.cubes_of_simulation, []

    def killed_after_two(path, index, *args):
        if len(stored) == 2:
            raise KeyboardInterrupt  # as a kill: the partial results stay
        stored.append(index)
        return fast(path, index, *args)

    out = tmp_path / "d.h5"
    monkeypatch.setattr(preprocess_module, "cubes_of_simulation", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        preprocess(sims, out, cfg, show_progress=False)
    monkeypatch.undo()
    assert stored == [0, 1] and (tmp_path / "d.h5.partial" / "sim_00000.npy").exists()
    # sim 0's second file replaced by sim 1's: same size and header, other particles
    part = tmp_path / "in" / os.path.basename(sims[0]) / "snapshot_000.1"
    old = part.stat()
    part.write_bytes((tmp_path / "in" / os.path.basename(sims[1]) / "snapshot_000.1").read_bytes())
    os.utime(part, ns=(old.st_atime_ns, old.st_mtime_ns + 10**9))  # also on coarse clocks
    assert part.stat().st_size == old.st_size
    preprocess(sims, out, cfg, show_progress=False)
    fresh = preprocess(sims, tmp_path / "fresh.h5", cfg, show_progress=False)
    (data, attrs), (ref, ref_attrs) = _contents(out), _contents(fresh)
    assert attrs == ref_attrs
    for k in ref:
        assert np.array_equal(data[k], ref[k])
    stale, _ = _contents(before_change)
    assert any(not np.array_equal(stale[k], ref[k]) for k in ref)  # the change mattered


def test_hubble_for_files_that_record_lengths_without_h(tmp_path, rng):
    pos = rng.uniform(0, 10.0, (4000, 3))
    write_hdf5(tmp_path / "ics", pos, 10.0, flavour="swift", hubble=0.7, cosmology_group=False)
    write_hdf5(tmp_path / "g4", pos, 10.0, flavour="gadget4")
    args = ["--grid", "8", "--cube", "4", "--cubes-per-box", "2"]
    result = CliRunner().invoke(cli, ["preprocess", str(tmp_path / "ics.hdf5"), *args,
                                      "--out", str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "--hubble" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "x.h5").exists()
    result = CliRunner().invoke(cli, ["preprocess", str(tmp_path / "ics.hdf5"), *args,
                                      "--hubble", "0.7", "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == 0, result.output
    ref = preprocess([tmp_path / "g4.hdf5"], tmp_path / "ref.h5",
                     DataConfig(grid=8, cube=4, cubes_per_box=2), show_progress=False)
    assert np.array_equal(_contents(tmp_path / "x.h5")[0]["train"], _contents(ref)[0]["train"])
    result = CliRunner().invoke(cli, ["preprocess", str(tmp_path / "ics.hdf5"), *args,
                                      "--hubble", "nan", "--out", str(tmp_path / "y.h5")])
    assert result.exit_code != 0 and "data.hubble" in result.output


def test_output_in_a_missing_directory_is_one_line(tmp_path, suite):
    result = CliRunner().invoke(cli, ["preprocess", suite[0], "--out",
                                      str(tmp_path / "no" / "such" / "x.h5")])
    assert result.exit_code != 0 and "does not exist" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "no").exists()


def test_bad_inputs(tmp_path, suite, rng):
    other = tmp_path / "other"
    write_gadget(other, rng.uniform(0, 10, (100, 3)), 10.0)
    result = CliRunner().invoke(cli, ["preprocess", suite[0], str(other), "--out",
                                      str(tmp_path / "x.h5"), "--grid", "32", "--cube", "8",
                                      "--length-unit", "Mpc/h"])
    assert result.exit_code != 0 and "different box sizes" in result.output
    result = CliRunner().invoke(cli, ["preprocess", suite[0], "--out", str(tmp_path / "x.h5"),
                                      "--grid", "30", "--cube", "8"])
    assert result.exit_code != 0 and "does not divide" in result.output
    result = CliRunner().invoke(cli, ["preprocess", str(tmp_path / "missing"), "--out",
                                      str(tmp_path / "x.h5")])
    assert result.exit_code != 0 and "no such file" in result.output
    result = CliRunner().invoke(cli, ["preprocess", suite[0], "--out", str(tmp_path / "x.h5"),
                                      "--split-fractions", "0.8,0.2"])
    assert result.exit_code != 0 and "three" in result.output


def test_validation_spread_is_cosmic_variance(tmp_path):
    """Cubes of an eighth of a box from simulations training never sees: the spread of P(k)
    over the validation cubes is real cosmic variance, near the Gaussian expectation
    sigma_P / P = sqrt(2 / N_modes) on the largest scales (the demo's suite in miniature)."""
    from lsswgan_core.evaluation.evaluate import summaries

    write_suite(tmp_path / "suite", 8, 32, 128.0, seed=5, pm_steps=3, show_progress=False,
                mesh_factor=1)
    sims = sorted(str(p) for p in (tmp_path / "suite").glob("sim_*"))
    cfg = DataConfig(grid=32, cube=16, cubes_per_box=8, split_fractions=(0.25, 0.5, 0.25),
                     seed=1, length_unit="Mpc/h")
    path = preprocess(sims, tmp_path / "data.h5", cfg, show_progress=False)
    ds = Dataset(path)
    val = ds.split("val")
    assert len(val) == 32 and len(set(val.simulations) & set(ds.split("train").simulations)) == 0
    s = summaries(val.physical(), ds.attrs["cube_size"], np.linspace(-1, 1, 11), [(0.2, 0.2)])
    pk = s["power_spectrum"]
    assert np.all(pk.std(0, ddof=1) > 0)
    measured = pk.std(0, ddof=1)[:2] / pk.mean(0)[:2]
    gaussian = np.sqrt(2 / s["n_modes"][:2])
    assert np.all((measured > 0.5 * gaussian) & (measured < 2.5 * gaussian)), (measured, gaussian)


def _is_open(path) -> bool:
    """Whether this process holds `path` open (HDF5 refuses a second, writable opening)."""
    try:
        h5py.File(path, "r+").close()
    except OSError:
        return True
    return False


@pytest.mark.parametrize("in_memory", [True, False])
def test_a_split_closes_its_file(tmp_path, monkeypatch, in_memory):
    path = write_dataset(tmp_path / "d.h5", sizes=(4, 2, 2), n=8)
    if not in_memory:
        monkeypatch.setattr(dataset_module, "IN_MEMORY_LIMIT", 0)
    with h5py.File(path, "r") as f:
        rows = f["train"][...][[3, 0]]
    with Dataset(path).split("train") as train:
        assert train.in_memory == in_memory
        assert _is_open(path) == (not in_memory)   # a split held in memory needs no file
        assert np.array_equal(train.batch(torch.tensor([3, 0]))[:, 0].numpy(), rows)
    assert not _is_open(path)
    assert len(train) == 4   # still usable: a read opens the file again, close() closes it
    assert np.array_equal(train.batch(torch.tensor([3, 0]))[:, 0].numpy(), rows)
    train.close()
    train.close()
    assert not _is_open(path)


def test_whole_boxes_are_kept_and_served_as_random_periodic_crops(tmp_path, suite):
    """Each simulation's painted box is in the file (rho/rhobar, mean 1, split by simulation
    as the cubes), and CropSplit serves crops of it: the transform of a periodic window under
    one of the 48 symmetries, other crops every epoch, the same ones again for the same epoch."""
    from lsswgan_core.data import CropSplit, apply_symmetry, periodic_crop

    out = preprocess(suite, tmp_path / "boxes.h5", DataConfig(grid=16, cube=8, cubes_per_box=2,
                                                                length_unit="Mpc/h"),
                     show_progress=False)
    data, attrs = _contents(out)
    ds = Dataset(out)
    assert ds.box_splits == {"train": 3, "val": 1, "dg": 1}
    boxes = ds.boxes("train")
    assert data["boxes/train"].shape == (3, 16, 16, 16) and boxes.cell_size == 4.0
    np.testing.assert_allclose(data["boxes/train"].mean(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    assert attrs["box_x_max"] == pytest.approx(float(data["boxes/train"].max()))
    assert attrs["box_x_max"] >= attrs["x_max"]     # the cubes are cut from the boxes
    with h5py.File(out) as f:                         # split by simulation, as the cubes
        assert list(f["boxes/val"].attrs["simulations"]) == list(f["val"].attrs["simulations"])
    crops = CropSplit(boxes, 8, seed=1)
    assert len(crops) == 3 * 8 and crops.cube == 8
    first = crops.batch(torch.tensor([0, 4]))
    assert first.shape == (2, 1, 8, 8, 8) and 0 <= float(first.min()) and float(first.max()) <= 1
    rng = np.random.default_rng([1, 0, 4])           # crop 4 of epoch 0, by its definition
    box = data["boxes/train"][4 % 3]
    origin, sym = rng.integers(0, 16, 3), int(rng.integers(0, 48))
    want = ds.box_transform.forward(apply_symmetry(periodic_crop(box, 8, origin), sym)
                                    .astype(np.float64))
    np.testing.assert_allclose(first[1, 0].numpy(), want, rtol=1e-6, atol=1e-7)
    crops.set_epoch(1)
    assert not torch.equal(crops.batch(torch.tensor([0, 4])), first)
    crops.set_epoch(0)
    assert torch.equal(crops.batch(torch.tensor([0, 4])), first)
    with pytest.raises(DatasetError, match="keep-boxes"):
        Dataset(preprocess(suite, tmp_path / "cubes.h5",
                           DataConfig(grid=16, cube=8, cubes_per_box=2, length_unit="Mpc/h",
                                      keep_boxes=False), show_progress=False)).boxes("train")
