"""The commands under torchrun with 2 local CPU processes (gloo), each against the result of
one process: preprocess (the same file bit for bit, a killed rank's work redone, ranks that see
different inputs stopped with one message), sample (the same cubes and boxes), and train
(a checkpoint resumed at another world size, the same effective batch)."""
import os
import signal
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
PREPROCESS = ["--grid", "32", "--cube", "8", "--cubes-per-box", "5", "--seed", "3",
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
    preprocess(suite, out, DataConfig(grid=32, cube=8, cubes_per_box=5, seed=3,
                                      length_unit="Mpc/h"), show_progress=False)
    return out


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
