"""The paper's claim, measured: at one fixed CPU budget per variant (the same data, seed, thread
count and wall time), train

    a  paper-arch          the paper's architecture, without the summary loss
    b  paper-arch+summary  the paper's architecture, with it
    c  best+summary        the best architecture (interpolating generator, replicate padding,
                           minibatch-std critic), with the summary loss
    d  best                the best architecture, without it
    e  box-lpt+summary     the whole-box generator (configs/demo.toml: model.generator = "box",
                           minibatch-std critic) with the 2LPT large-scale input, trained on
                           random 32^3 crops of the whole boxes; its cubes are 32^3 windows of
                           generated boxes
    f  box-data+summary    the same with a Gaussian large-scale input of the data's spectrum

on the demo's dataset, evaluate each on the validation split (simulations no variant was
trained or selected on) against as many generated cubes, and print and save a table of the
compatibility per summary (mean over bins), the range of P_gen / P_real below k_Nyq, the
checkerboard indicator, the diversity sigma_gen / sigma_real (median over P(k) bins); for the
box generators also the whole-box report on the split's boxes (64^3): the range of P_gen /
P_real up to k_Nyq, the distances of the reduced bispectrum and of the peak histogram to the
real ones beside the remapped-Gaussian baseline's. With several --seeds the table gives the
mean and the spread over seeds. Everything but the architecture and the summary loss is
configs/demo.toml's for all (batch 8, n_critic 2, lr 5e-4, the generator EMA, standing
BatchNorm statistics for the cube generators, summary units from the train split and P(k)
bins to the corner), so that the table isolates those. Choose with --split dg, report with
--split val (a rerun keeps the finished runs and only evaluates them again).

    python bench/bm_fidelity.py [--data demo/dataset.h5] [--budget 300] [--seeds 0 1]
                                [--variants a b c d e] [--trend c] [--out bench/fidelity]

Without --data the demo's suite is simulated and preprocessed first (configs/demo.toml's
[suite] and [data], as `lsscore demo` does).
Writes OUT/results.json, OUT/slices.png (one row per variant, the real cubes on top) and
OUT/summaries.png (P(k) ratio, mass and peak histograms of every variant).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, set_threads, write_json  # noqa: E402

from lsswgan_core.config import load_config, override  # noqa: E402
from lsswgan_core.evaluation.evaluate import evaluate  # noqa: E402
from lsswgan_core.gan.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAPER_ARCH = ["model.upsample=\"transposed\"", "model.padding=\"zeros\"", "model.minibatch_std=false"]
BEST_ARCH = ["model.upsample=\"nearest\"", "model.padding=\"replicate\"", "model.minibatch_std=true"]
NO_SUMMARY = ["train.lambda_summ=0.0"]
CUBE = ["model.generator=\"paper\""]
BOX = ["model.generator=\"box\"", "model.minibatch_std=true", "evaluate.box_sizes=[1]"]
VARIANTS = {"a": ("paper-arch", CUBE + PAPER_ARCH + NO_SUMMARY),
            "b": ("paper-arch+summary", CUBE + PAPER_ARCH),
            "c": ("best+summary", CUBE + BEST_ARCH),
            "d": ("best", CUBE + BEST_ARCH + NO_SUMMARY),
            "e": ("box-lpt+summary", BOX + ["model.box_input=\"lpt\""]),
            "f": ("box-data+summary", BOX + ["model.box_input=\"data\""]),
            # the generator at 10x the learning rate: does the adversarial training move the
            # numbers beyond the calibrated start within minutes of CPU?
            "g": ("box-data+summary, generator lr 5e-3",
                  BOX + ["model.box_input=\"data\"", "optim.lr_generator=5e-3"])}
BOX_METRICS = ["box_ratio_min", "box_ratio_max", "q_distance", "q_distance_baseline",
               "peak_distance", "peak_distance_baseline"]


def make_data(root: Path, seed: int = 0) -> Path:
    """The demo's dataset, through the CLI as `lsscore demo` makes it: the suite of
    configs/demo.toml's [suite], preprocessed with that config."""
    config = ROOT / "configs" / "demo.toml"
    suite = load_config(config).suite
    lsscore = [sys.executable, "-m", "lsscore"]
    subprocess.run(lsscore + ["simulate", "--out", str(root / "suite"), "--n-sims",
                              str(suite.n_sims), "--particles", str(suite.particles),
                              "--box-size", str(suite.box_size), "--pm-steps", str(suite.pm_steps),
                              "--mesh-factor", str(suite.mesh_factor), "--seed", str(seed)],
                   check=True)
    data = root / "dataset.h5"
    subprocess.run(lsscore + ["preprocess", *sorted(str(s) for s in (root / "suite").glob("sim_*")),
                              "--out", str(data), "--config", str(config), "--length-unit", "Mpc/h",
                              "--seed", str(seed)], check=True)
    return data


def run_variant(key: str, seed: int, data: Path, out: Path, budget: float, split: str) -> dict:
    name, sets = VARIANTS[key]
    cfg = override(load_config(ROOT / "configs" / "demo.toml"),
                   sets + [f"train.time_limit={budget}", "train.epochs=100000",
                           "train.summary_epochs=100000", "duality_gap.enabled=false",
                           f"train.seed={seed}"])
    run = out / f"{key}_seed{seed}"
    if _finished(run, budget):   # rerunning the bench keeps finished runs
        record = {}
    else:
        shutil.rmtree(run, ignore_errors=True)
        record = train(data, run, cfg, show_progress=False)
    m = evaluate(run / "checkpoints" / "last.pt", data, run / f"report_{split}", split=split,
                 seed=seed)   # the cube level: 32^3 windows of boxes; and whole boxes
    if "summaries" not in m:
        raise RuntimeError(f"{run}: no comparison was possible: {'; '.join(m['problems'])}")
    s, c = m["summaries"], m["power_spectrum_checks"]
    box = box_columns(m)
    return {"variant": f"{key} {name}", "seed": seed, "epochs": m["training"]["epochs"],
            "generator_steps": m["training"]["generator_steps"],
            "seconds": m["training"]["seconds"],
            **{f"compat_{n}": s[n]["compatibility_mean"] for n in
               ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum")},
            "p_ratio_min": c["ratio_min_below_nyquist"], "p_ratio_max": c["ratio_max_below_nyquist"],
            "p_ratio_max_dev": c["ratio_max_deviation_below_nyquist"],
            "checkerboard": c["checkerboard"],
            "diversity_pk": s["power_spectrum"]["diversity_median"],
            "diversity_mass": s["mass_histogram"]["diversity_median"], **box,
            "report": str(run / f"report_{split}"), "record": record}


def box_columns(m: dict) -> dict:
    """The whole-box columns of a report (NaN for a cube generator's)."""
    box = {name: float("nan") for name in BOX_METRICS}
    if isinstance(m.get("boxes"), dict) and "ratio" in m["boxes"]:
        b = m["boxes"]
        k, ratio = np.array(b["k"], float), np.array(b["ratio"], float)
        below = (k <= math.pi / b["cell_size"]) & np.isfinite(ratio)
        box = {"box_ratio_min": float(ratio[below].min()),
               "box_ratio_max": float(ratio[below].max()),
               "q_distance": b["bispectrum_distance_generated"],
               "q_distance_baseline": b["bispectrum_distance_baseline"],
               "peak_distance": b["peak_distance_generated"],
               "peak_distance_baseline": b["peak_distance_baseline"]}
    return box


def _finished(run: Path, budget: float) -> bool:
    """A run a previous bench finished (not one killed before its budget)."""
    from lsswgan_core.gan.run import RunError, load_checkpoint  # noqa: PLC0415

    try:
        return float(load_checkpoint(run / "checkpoints" / "last.pt").get("elapsed", 0)) >= budget
    except RunError:
        return False


METRICS = ["compat_power_spectrum", "compat_mass_histogram", "compat_peak_histogram",
           "compat_bispectrum", "p_ratio_min", "p_ratio_max", "checkerboard",
           "diversity_pk"] + BOX_METRICS


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and spread (min-max over seeds) per variant."""
    table = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        line = {"variant": variant, "seeds": len(mine),
                "gen steps": round(float(np.mean([r["generator_steps"] for r in mine])))}
        for key in METRICS:
            values = np.array([r[key] for r in mine], float)
            line[key] = float(np.mean(values))
            if len(values) > 1:
                line[key + "_spread"] = [float(values.min()), float(values.max())]
        table.append(line)
    return table


def figures(rows: list[dict], data: Path, out: Path, seed: int) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from lsswgan_core.data import Dataset  # noqa: PLC0415
    from lsswgan_core.gan.sample import generate  # noqa: PLC0415

    mine = [r for r in rows if r["seed"] == seed]
    real = Dataset(data).split("val").physical()[:6]
    cubes = [("real (val)", real)] + [
        (r["variant"], generate(Path(r["report"]).parent / "checkpoints" / "last.pt", 6,
                                physical=True, seed=seed)[0]) for r in mine]
    fig, axes = plt.subplots(len(cubes), 6, figsize=(12, 2.1 * len(cubes)), squeeze=False)
    for i, (label, x) in enumerate(cubes):
        for j in range(6):
            axes[i, j].imshow(np.log10(1 + x[j, x.shape[1] // 2]), vmin=0, vmax=2, cmap="inferno",
                              origin="lower")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "slices.png", dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for r in mine:
        m = json.loads((Path(r["report"]) / "metrics.json").read_text())
        s = m["summaries"]
        k = np.array(m["k"], float)
        axes[0].plot(k, np.array(s["power_spectrum"]["ratio"], float), label=r["variant"])
        edges = np.array(m["log10_x_edges"], float)
        centres = (edges[1:] + edges[:-1]) / 2
        for ax, name in ((axes[1], "mass_histogram"), (axes[2], "peak_histogram")):
            ax.plot(centres, np.array(s[name]["fake_mean"], float), label=r["variant"])
    for ax, name in ((axes[1], "mass_histogram"), (axes[2], "peak_histogram")):
        ax.plot(centres, np.array(s[name]["real_mean"], float), "k", lw=2, label="real (val)")
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel(r"$\log_{10}\rho/\bar\rho$")
    axes[1].set_yscale("log")
    axes[0].axhline(1, color="k")
    axes[0].axvline(m["power_spectrum_checks"]["k_nyquist"], color="0.5", ls=":")
    axes[0].set_xscale("log")
    axes[0].set_ylim(0, 3)
    axes[0].set_title(r"$P_{\rm gen}/P_{\rm real}$ (dotted: $k_{\rm Nyq}$)")
    axes[0].set_xlabel(r"$k$ [$h$/Mpc]")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "summaries.png", dpi=100)
    plt.close(fig)


def trend(key: str, data: Path, out: Path, budget: float, split: str, factors=(1, 2, 4)) -> list:
    """One run of variant `key` (seed 0) for max(factors) x budget with a checkpoint every
    epoch, evaluated at the first epoch past each factor x budget: does more CPU help?"""
    _, sets = VARIANTS[key]
    cfg = override(load_config(ROOT / "configs" / "demo.toml"),
                   sets + [f"train.time_limit={budget * max(factors)}", "train.epochs=100000",
                           "train.summary_epochs=100000", "duality_gap.enabled=false",
                           "train.checkpoint_every=1", "train.seed=0"])
    run = out / f"{key}_trend"
    if not _finished(run, budget * max(factors)):
        shutil.rmtree(run, ignore_errors=True)
        train(data, run, cfg, show_progress=False)
    from lsswgan_core.gan.run import read_metrics  # noqa: PLC0415

    ends = {}
    for r in read_metrics(run / "metrics.jsonl"):
        ends[r["epoch"]] = r["elapsed"]
    rows = []
    for f in factors:
        epoch = min((e for e, t in ends.items() if t >= f * budget), default=max(ends))
        m = evaluate(run / "checkpoints" / f"epoch_{epoch:05d}.pt", data,
                     run / f"report_{split}_{f}x", split=split, seed=0)
        s, c = m["summaries"], m["power_spectrum_checks"]
        rows.append({"budget": f"{f}x ({ends[epoch]:.0f} s)", "epoch": epoch,
                     **{f"compat_{n}": s[n]["compatibility_mean"] for n in
                        ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum")},
                     "p_ratio_min": c["ratio_min_below_nyquist"],
                     "p_ratio_max": c["ratio_max_below_nyquist"],
                     "checkerboard": c["checkerboard"],
                     "diversity_pk": s["power_spectrum"]["diversity_median"], **box_columns(m)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--split", default="val", help="val for the report; dg for choosing")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "fidelity")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trend", choices=list(VARIANTS), default=None,
                        help="also train this variant for 4x the budget and evaluate it at 1x, 2x, 4x")
    parser.add_argument("--trend-only", action="store_true",
                        help="only the --trend run (its rows go to OUT/trend.json)")
    args = parser.parse_args()
    set_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.data or make_data(args.out / "data")
    if args.trend_only:
        rows = trend(args.trend or "c", data, args.out, args.budget, args.split)
        print_table(rows, ["budget", "epoch"] + METRICS)
        write_json(args.out / "trend.json", {"budget_seconds": args.budget, "split": args.split,
                                             "variant": VARIANTS[args.trend or "c"][0],
                                             "trend": rows})
        return
    t0 = time.perf_counter()
    rows = []
    for seed in args.seeds:
        for key in args.variants:
            rows.append(run_variant(key, seed, data, args.out, args.budget, args.split))
            print(f"{rows[-1]['variant']} seed {seed}: " + ", ".join(
                f"{k} {rows[-1][k]:.3g}" for k in METRICS), flush=True)
    table = aggregate(rows)
    print(f"\nfidelity at {args.budget:g} s of training per run, {args.threads} threads, "
          f"evaluated on the {args.split} split ({time.perf_counter() - t0:.0f} s in all)")
    print_table(table, ["variant", "seeds", "gen steps"] + METRICS)
    figures(rows, data, args.out, args.seeds[0])
    trend_rows = []
    if args.trend:
        trend_rows = trend(args.trend, data, args.out, args.budget, args.split)
        print(f"\nvariant {VARIANTS[args.trend][0]}, seed 0, with more CPU:")
        print_table(trend_rows, ["budget", "epoch"] + [m for m in METRICS if m != "p_ratio_min"]
                    + ["p_ratio_min"])
    write_json(args.out / "results.json", {"budget_seconds": args.budget, "split": args.split,
                                           "data": str(data), "runs": rows, "table": table,
                                           "trend": trend_rows,
                                           "finite": all(math.isfinite(r["compat_power_spectrum"])
                                                         for r in rows)})


if __name__ == "__main__":
    main()
