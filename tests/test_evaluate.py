"""`lsscore evaluate` and the demo pipeline: the report's contents, its physics, the figures,
and clear messages (with what can still be made) when an input is missing."""
import json
import math
import shutil
import subprocess
import sys

from pathlib import Path

import h5py
import numpy as np
import pytest

from lsswgan_core.config import config_from_dict
from lsswgan_core.evaluation.evaluate import _stats_block, evaluate, spectrum_checks, summaries
from lsswgan_core.ops import find_peaks
from lsswgan_core.gan.train import train

from ._helpers import lognormal_cubes, write_dataset

FIGURES = {"fig4_losses.png", "fig5_duality_gap.png", "fig6_slices.png", "fig7_summaries.png",
           "fig8_compatibility.png"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = write_dataset(root / "data.h5", sizes=(16, 8, 8))
    cfg = config_from_dict({"model": {"width": 0.125},
                            "train": {"epochs": 1, "batch_size": 4, "n_critic": 2, "log_every": 1},
                            "duality_gap": {"every": 1, "epochs": 1, "batch_size": 4}})
    train(data, root / "run", cfg, show_progress=False)
    return root, data


def test_report_contents_and_figures(run, tmp_path):
    root, data = run
    m = evaluate(root / "run" / "checkpoints" / "last.pt", data, tmp_path, n=6)
    assert m["problems"] == []
    assert {p.split("/")[-1] for p in m["figures"]} == FIGURES
    assert all((tmp_path / f).stat().st_size > 10_000 for f in FIGURES)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["n_real"] == 8 and on_disk["n_fake"] == 6
    with h5py.File(data) as f:
        cube_size = float(f.attrs["cube_size"])
    k_f = 2 * math.pi / cube_size
    assert on_disk["k"][0] == pytest.approx(k_f * 1.2, rel=0.3)     # k in h/Mpc from cube_size
    for name in ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum"):
        block = on_disk["summaries"][name]
        assert len(block["real_mean"]) == len(block["compatibility"])
        assert block["frechet_distance"] is not None and block["frechet_distance"] >= 0
    assert len(on_disk["duality_gap"]) == 1
    assert on_disk["training"]["epochs"] == 1 and on_disk["training"]["seconds"] > 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_split_with_nan_or_inf_is_a_problem_not_a_traceback(run, tmp_path, bad):
    root, data = run
    damaged = shutil.copy(data, tmp_path / "damaged.h5")
    with h5py.File(damaged, "r+") as f:
        f["val"][2, 1, 1, 1] = bad
    m = evaluate(root / "run" / "checkpoints" / "last.pt", damaged, tmp_path / "out", n=4)
    assert "summaries" not in m
    assert any("'val' split" in p and "NaN or infinite" in p for p in m["problems"]), m["problems"]


def test_summaries_physics():
    x = lognormal_cubes(6, 32, seed=5)
    x[:, :4] = 0.0                                   # empty voxels fall out of log10 bins
    edges = np.linspace(-2, 2, 21)
    s = summaries(x, 100.0, edges, [(0.2, 0.2)])
    inside = (x > 0) & (np.log10(np.where(x > 0, x, 1)) >= -2) & (np.log10(np.where(x > 0, x, 1)) < 2)
    np.testing.assert_allclose(s["mass_histogram"].sum(1), inside.reshape(6, -1).mean(1))
    peaks = find_peaks(x, radius=2, boundary="open")
    assert np.array_equal(s["peak_histogram"].sum(1), peaks.reshape(6, -1).sum(1))
    # the spectrum of delta = x - 1 in bins up to the corner: Parseval, the sum over every
    # mode but k = 0 of P n_modes / L^3 is the variance of x over the cube
    total = (s["power_spectrum"] * s["n_modes"]).sum(1) / 100.0**3
    np.testing.assert_allclose(total, x.reshape(6, -1).var(1), rtol=1e-9)
    assert s["n_modes"].sum() == 32**3 - 1
    # identical sets: compatibility 0 and Frechet distance 0
    same = _stats_block(s["power_spectrum"], s["power_spectrum"].copy(), log=True)
    assert np.all(same["compatibility"] == 0) and same["frechet_distance"] == pytest.approx(0, abs=1e-9)
    other = _stats_block(s["power_spectrum"], 2 * s["power_spectrum"], log=True)
    assert other["compatibility_mean"] > 1 and other["frechet_distance"] > 0.5


def lsscore(*args):
    return subprocess.run([sys.executable, "-m", "lsscore", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_missing_inputs_give_messages_and_what_can_be_made(run, tmp_path):
    root, data = run
    # no checkpoint: a clear error, and the loss and duality-gap figures are still drawn
    res = lsscore("evaluate", "--checkpoint", root / "run" / "checkpoints" / "nope.pt", "--data",
                  data, "--out", tmp_path / "a")
    assert res.returncode == 1 and "no such checkpoint" in res.stderr
    assert {p.name for p in (tmp_path / "a").glob("*.png")} == {"fig4_losses.png",
                                                               "fig5_duality_gap.png"}
    # a dataset without the split
    res = lsscore("evaluate", "--checkpoint", root / "run" / "checkpoints" / "last.pt", "--data",
                  data, "--split", "test", "--out", tmp_path / "b")
    assert res.returncode == 1 and "has no split 'test'" in res.stderr
    # a run without metrics: a warning, and the comparison figures
    lonely = tmp_path / "lonely" / "checkpoints"
    lonely.mkdir(parents=True)
    (lonely / "last.pt").write_bytes((root / "run" / "checkpoints" / "last.pt").read_bytes())
    res = lsscore("evaluate", "--checkpoint", lonely / "last.pt", "--data", data, "--n", 4,
                  "--out", tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert "metrics.jsonl not found" in res.stderr
    assert {p.name for p in (tmp_path / "c").glob("*.png")} == {"fig6_slices.png",
                                                               "fig7_summaries.png",
                                                               "fig8_compatibility.png"}


@pytest.mark.slow
def test_demo_pipeline_miniature(tmp_path):
    """simulate -> preprocess -> train -> sample -> evaluate through the CLI, tiny sizes."""
    tiny = Path(__file__).resolve().parents[1] / "configs" / "tiny.toml"
    res = lsscore("demo", "--config", tiny, "--out", tmp_path / "demo")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    summary = lines[lines.index("== summary") + 1:]
    assert len(summary) == 6 and summary[-1].startswith("report: ")
    assert "checkerboard" in summary[4] and "diversity" in summary[4]
    assert "train" in summary[0] and "generator steps" in summary[1]
    report = tmp_path / "demo" / "report"
    assert {p.name for p in report.glob("*.png")} == FIGURES
    with h5py.File(tmp_path / "demo" / "samples.h5") as f:
        assert f["samples"].shape == (8, 32, 32, 32) and f.attrs["physical"]


def test_spectrum_checks_see_a_lattice_and_a_brightness_bias():
    """A period-2 lattice added to real cubes lives in the shells past k_Nyq, which the
    checkerboard indicator sees and the bins below k_Nyq do not; a brighter copy of the real
    cubes (x -> 1.2 x) shows as P ratio 1.44 since delta is taken with the simulation's mean."""
    x = lognormal_cubes(8, 32, seed=7)
    edges = np.linspace(-2, 2, 21)
    lattice = x + 0.5 * (np.indices((32, 32, 32)).sum(0) % 2)[None]
    s_real = summaries(x, 100.0, edges, [(0.2, 0.2)])
    for fake, check in ((lattice, "lattice"), (1.2 * x, "bright"), (x.copy(), "same")):
        s_fake = summaries(fake, 100.0, edges, [(0.2, 0.2)])
        block = _stats_block(s_real["power_spectrum"], s_fake["power_spectrum"], log=True)
        c = spectrum_checks(s_real["k"], s_real["n_modes"], block, 32, 100.0)
        assert c["k_nyquist"] == pytest.approx(math.pi * 32 / 100.0)
        if check == "lattice":
            assert c["checkerboard"] > 2
            assert c["ratio_max_deviation_below_nyquist"] < 0.05
        elif check == "bright":
            assert c["ratio_min_below_nyquist"] == pytest.approx(1.44)
            assert c["ratio_max_below_nyquist"] == pytest.approx(1.44)
        else:
            assert c["checkerboard"] == pytest.approx(1.0)
            assert c["ratio_max_deviation_below_nyquist"] == pytest.approx(0.0, abs=1e-12)


def test_diversity_shows_collapse():
    x = lognormal_cubes(8, 32, seed=8)
    edges = np.linspace(-2, 2, 21)
    s_real = summaries(x, 100.0, edges, [(0.2, 0.2)])
    collapsed = summaries(np.repeat(x[:1], 8, 0) * (1 + 1e-3 * np.arange(8))[:, None, None, None],
                          100.0, edges, [(0.2, 0.2)])
    block = _stats_block(s_real["power_spectrum"], collapsed["power_spectrum"], log=True)
    assert block["diversity_median"] < 0.1
    same = _stats_block(s_real["mass_histogram"], s_real["mass_histogram"].copy())
    assert same["diversity_median"] == pytest.approx(1.0)
