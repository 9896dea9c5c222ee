"""bench/gpu_check.py, the prepared GPU run, in its CPU mode, and the benchmark registry it runs:
every section reports without error and has a row in the summary, the registry's timings are
finite and positive and ours gives its reference's numbers, the projection adds up as its
docstring says, and `--device cuda` without a GPU is one line, not a traceback."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCRIPT = BENCH / "gpu_check.py"


def load_bench_module(name: str):
    """A bench/ module by file, with bench/ on sys.path while it imports (and restored)."""
    saved = list(sys.path)
    try:
        sys.path.insert(0, str(BENCH))
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    res = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--no-build",
                          "--skip-tests", "--threads", "1", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert "=== summary ===" in (out / "gpu_check.log").read_text()
    return out


@pytest.fixture(scope="module")
def report(out):
    return json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_every_section_reports_and_has_a_summary_row(report, out):
    names = [name for name, _ in load_bench_module("gpu_check").SECTIONS]
    assert names == ["preflight", "build", "tests", "bench", "projection", "whole_box"]
    assert report["failed_sections"] == []
    for name in names:
        assert "error" not in report[name], (name, report[name]["error"])
    assert report["tests"]["skipped"] == "--skip-tests"
    assert report["build"]["skipped"] == "--no-build" and "build_info" in report["build"]
    summary_sections = {row["section"] for row in report["summary"]}
    assert set(names) <= summary_sections
    assert all(row["ok"] is None for row in report["summary"])   # targets: judged on a GPU
    table = (out / "gpu_check.md").read_text().splitlines()
    assert table[0].startswith("| section |") and len(table) == 2 + len(report["summary"])


@pytest.mark.slow
def test_bench_section_runs_the_registry(report, out):
    bench = json.loads((out / "bench.json").read_text())
    assert bench["device"] == "cpu"
    assert set(report["bench"]["entries"]) == {"paint", "find_peaks", "power_spectrum",
                                               "soft_histogram", "train_step"}
    for name, entries in report["bench"]["entries"].items():
        rows = bench[name]["rows"]
        assert len(rows) == entries > 0
        assert any(r["impl"] != "ours" for r in rows), f"{name}: no baseline was timed"
        for r in rows:
            assert positive(r["ms"]) and positive(r["ours x faster"]), (name, r)
            if r.get("rel_diff") is not None:   # ours gives the reference's numbers
                assert r["rel_diff"] < 1e-4, (name, r)
    assert any(r.get("rel_diff") is not None for r in bench["paint"]["rows"])
    h = report["bench"]["headlines"]
    for key in ("paint vs torch index_put_", "pk_over_rfftn", "critic_vs_plain",
                "summary_overhead", "sampling_cubes_per_s"):
        assert h[key] is not None and math.isfinite(h[key]), key
    assert h["rel_diff"] < 1e-4


@pytest.mark.slow
def test_whole_box_section(report):
    boxes = report["whole_box"]
    assert boxes["halo"] == 23 and set(boxes["sizes"]) == {"32", "64"}   # --quick's sizes
    for row in boxes["sizes"].values():
        assert positive(row["seconds_per_box"]) and row["peak_mem_mib"] is None   # no GPU


@pytest.mark.slow
def test_projection_section(report):
    p = report["projection"]
    for key in ("critic_step_ms", "generator_step_ms", "generator_summary_step_ms", "gap_s"):
        assert positive(p[key]), key
    assert p["peak_mem_mib"] is None   # no GPU
    assert positive(p["projection"]["paper_500_epochs_s"])
    assert p["projection"]["critic_steps_per_epoch"] == 62


def test_projection_arithmetic():
    project = load_bench_module("gpu_check").project
    paper = SimpleNamespace(
        data=SimpleNamespace(split_cubes=(992, 128, 128)),
        train=SimpleNamespace(batch_size=16, n_critic=5, epochs=500, summary_epochs=170),
        duality_gap=SimpleNamespace(enabled=True, every=10, epochs=20, batch_size=8))
    t = {"critic": 0.1, "generator": 0.5, "generator_summary": 1.0}
    p = project(t, gap_s=4.0, gap_steps=32, paper=paper)
    # 62 critic steps and 12.4 generator steps an epoch: 6.2 + 12.4 s with the summary loss,
    # 6.2 + 6.2 s without; the gap: 4 s for 32 steps -> 20 x 16 = 320 steps, 40 s, 50 times
    assert p["critic_steps_per_epoch"] == 62
    assert p["epoch_summary_on_s"] == pytest.approx(18.6)
    assert p["epoch_summary_off_s"] == pytest.approx(12.4)
    assert p["paper_gap_s"] == pytest.approx(40.0) and p["gaps"] == 50
    assert p["paper_500_epochs_s"] == pytest.approx(170 * 18.6 + 330 * 12.4 + 50 * 40.0)
    paper.duality_gap.enabled = False
    assert project(t, 4.0, 32, paper)["paper_500_epochs_s"] == pytest.approx(
        170 * 18.6 + 330 * 12.4)


def test_registry_entries_and_one_timer():
    """Every op registers entries with set-up, ours and a baseline; one small entry runs
    through the registry's runner, and the timer's medians are interleaved and positive."""
    run = load_bench_module("run")
    common = sys.modules["_common"]   # the one run.py and the bm modules imported
    registry = run.REGISTRY
    assert {"paint", "find_peaks", "power_spectrum", "soft_histogram", "train_step",
            "preprocess"} <= set(registry)
    opts = common.Options(torch.device("cpu"), quick=True, threads=1, repeats=2)
    for name in ("paint", "find_peaks", "power_spectrum", "soft_histogram", "train_step"):
        entries = list(registry[name].entries(opts))
        assert entries and all(callable(e.setup) and callable(e.ours) for e in entries), name
        assert any(e.baselines for e in entries), name
        assert any(e.reference for e in entries) or name == "train_step", name
    hist = next(e for e in registry["soft_histogram"].entries(opts) if e.reference)
    rows, _ = common.run_entry(hist, opts, common.Timer("cpu"))
    assert [r["impl"] for r in rows][0] == "ours" and len(rows) == 1 + len(hist.baselines)
    assert rows[0]["rel_diff"] < 1e-4 and all(positive(r["ms"]) for r in rows)
    calls = []
    medians = common.Timer("cpu").medians({"a": lambda: calls.append("a"),
                                           "b": lambda: calls.append("b")}, {"a": 2, "b": 1}, 0)
    assert calls == ["a", "b", "a"] and set(medians) == {"a", "b"}


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
@pytest.mark.parametrize("script", ["bm_paint.py", "run.py"])
def test_cuda_without_a_gpu_is_one_line(script):
    res = subprocess.run([sys.executable, str(BENCH / script), "--device", "cuda"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "no GPU" in lines[0], res.stderr
