"""The `lsscore` CLI: info, paint, demo options, and the message for a missing build
(the demo pipeline itself: tests/test_evaluate.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from lsscore.main import cli


def test_info_reports_build_facts():
    result = CliRunner().invoke(cli, ["info", "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.output)
    import torch

    assert facts["torch"] == torch.__version__
    assert facts["gpu_visible"] == torch.cuda.is_available()
    assert facts["cpu_threads"] == torch.get_num_threads()
    assert isinstance(facts["cuda_kernels"], bool) and facts["openmp"] is True
    text = CliRunner().invoke(cli, ["info"]).output
    assert "CUDA kernels built:" in text and "GPU visible:" in text


@pytest.mark.slow
def test_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "lsscore")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert "lsscore" in out.stdout


def test_paint_command_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 10, (5000, 3))
    np.save(tmp_path / "pos.npy", pos)
    result = CliRunner().invoke(cli, ["paint", str(tmp_path / "pos.npy"), "--box-size", "10",
                                      "--grid", "8", "--scheme", "ngp",
                                      "--out", str(tmp_path / "grid.npy")])
    assert result.exit_code == 0, result.output
    grid = np.load(tmp_path / "grid.npy")
    ref, _ = np.histogramdd(pos, bins=8, range=[(0, 10)] * 3)
    np.testing.assert_array_equal(grid, ref)


def test_paint_command_bad_input(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((10, 2)))
    result = CliRunner().invoke(cli, ["paint", str(tmp_path / "bad.npy"), "--box-size", "1",
                                      "--out", str(tmp_path / "g.npy")])
    assert result.exit_code != 0 and "expected shape (N, 3)" in result.output
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    result = CliRunner().invoke(cli, ["paint", str(tmp_path / "junk.npy"), "--box-size", "1",
                                      "--out", str(tmp_path / "g.npy")])
    assert result.exit_code != 0 and "not a readable .npy" in result.output
    pos = np.zeros((4, 3))
    pos[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", pos)
    result = CliRunner().invoke(cli, ["paint", str(tmp_path / "nan.npy"), "--box-size", "1",
                                      "--out", str(tmp_path / "g.npy")])
    assert result.exit_code != 0 and "1 non-finite" in result.output
    assert "Traceback" not in result.output


def test_demo_refuses_a_missing_config(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--config",
                                      str(tmp_path / "none.toml")])
    assert result.exit_code != 0 and "none.toml not found" in result.output


@pytest.mark.slow
def test_missing_build_gives_a_build_message():
    # the package imports (its leaves need no build); the first use of the ops says what to do
    code = ("import sys; sys.modules['lsswgan_core._C'] = None\nimport lsswgan_core\n"
            "try:\n    lsswgan_core.ops\nexcept ImportError as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "BuildError" in out.stdout and "make build" in out.stdout
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['lsswgan_core._C'] = "
                             "None; sys.argv = ['lsscore', 'info']; from lsscore.main import main; main()"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "not built" in result.stderr
    assert "Traceback" not in result.stderr
