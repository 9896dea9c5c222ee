"""`lsscore demo`: the whole pipeline, each step through the `lsscore` CLI itself, writing
under one directory: simulate a small suite, preprocess it, train, sample, evaluate the
untrained and the trained generator, and print a six-line summary.

`--size demo` (what `make demo` runs) is sized for about 10 minutes on 2 CPU cores;
`--size tiny` is a miniature of the same steps for the tests."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from ._options import SEED

# simulate: sims, particles per side, box (Mpc/h); preprocess: grid, cubes per box
# The demo's suite: 16 boxes of 256 Mpc/h with 128^3 particles, painted on 64^3 cells of
# 4 Mpc/h (8 particles per cell, the paper's cell size), so each 32^3 cube is 128 Mpc/h, an
# eighth of a box: 12 boxes for training, 2 for validation and 2 for the duality gap, whose
# cubes come from simulations training never sees and carry real cosmic variance. CIC
# painting: with 8 particles per cell NGP gives discrete x = k/8 in the voids, which no
# continuous generator matches bin by bin (the paper's 64 particles per cell smooth it).
SIZES = {"demo": {"n_sims": 16, "particles": 128, "box": 256.0, "grid": 64, "cubes_per_box": 32,
                  "pm_steps": 8, "mesh_factor": 1, "split": "0.75,0.125,0.125", "n_eval": 64},
         "tiny": {"n_sims": 3, "particles": 32, "box": 64.0, "grid": 32, "cubes_per_box": 8,
                  "pm_steps": 2, "mesh_factor": 1, "split": "1,1,1", "n_eval": 8}}
TINY_CONFIG = """[model]
width = 0.125
[train]
epochs = 2
batch_size = 4
n_critic = 2
summary_epochs = 1
log_every = 1
checkpoint_every = 1
[duality_gap]
every = 1
epochs = 1
batch_size = 4
"""


def _step(title: str, *args: str) -> float:
    click.echo(f"\n== {title}: lsscore {' '.join(args)}", err=True)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lsscore", *args])
    if done.returncode != 0:
        raise click.ClickException(f"the demo stopped at '{title}' (exit {done.returncode})")
    return time.perf_counter() - t0


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="demo",
              show_default=True, help="Directory for everything the demo writes.")
@click.option("--size", type=click.Choice(sorted(SIZES)), default="demo", show_default=True)
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              default="configs/demo.toml", show_default=True,
              help="Training config (ignored with --size tiny).")
@click.option("--seed", type=SEED, default=0, show_default=True)
def demo(out, size, config, seed):
    """Simulate -> preprocess -> train -> sample -> evaluate, all under OUT; ends with the
    report's path and a six-line summary."""
    p = SIZES[size]
    out.mkdir(parents=True, exist_ok=True)
    if size == "tiny":
        config = out / "tiny.toml"
        config.write_text(TINY_CONFIG)
    elif not config.is_file():
        raise click.BadParameter(f"{config} not found (run from the repository root)",
                                 param_hint="--config")
    run, data, report = out / "run", out / "dataset.h5", out / "report"
    for stale in (run, out / "suite"):
        if stale.exists():
            import shutil  # noqa: PLC0415

            shutil.rmtree(stale)
    seconds = {}
    seconds["simulate"] = _step("simulate", "simulate", "--out", str(out / "suite"), "--n-sims",
                                str(p["n_sims"]), "--particles", str(p["particles"]), "--box-size",
                                str(p["box"]), "--pm-steps", str(p["pm_steps"]), "--mesh-factor",
                                str(p["mesh_factor"]), "--seed", str(seed))
    sims = sorted(str(s) for s in (out / "suite").glob("sim_*"))
    seconds["preprocess"] = _step("preprocess", "preprocess", *sims, "--out", str(data), "--grid",
                                  str(p["grid"]), "--cube", "32", "--cubes-per-box",
                                  str(p["cubes_per_box"]), "--seed", str(seed), "--length-unit",
                                  "Mpc/h", "--split-fractions", p["split"], "--scheme", "cic")
    seconds["train"] = _step("train", "train", "--data", str(data), "--config", str(config),
                             "--out", str(run), "--seed", str(seed), "--device", "cpu")
    last = run / "checkpoints" / "last.pt"
    seconds["sample"] = _step("sample", "sample", "--checkpoint", str(last), "--n-cubes",
                              str(p["n_eval"]), "--out", str(out / "samples.h5"), "--physical")
    seconds["evaluate"] = _step("evaluate (untrained generator)", "evaluate", "--checkpoint",
                                str(run / "checkpoints" / "epoch_00000.pt"), "--data", str(data),
                                "--out", str(report / "untrained"), "--n-cubes", str(p["n_eval"]))
    seconds["evaluate"] += _step("evaluate", "evaluate", "--checkpoint", str(last), "--data",
                                 str(data), "--out", str(report), "--n-cubes", str(p["n_eval"]))

    from lsswgan_core.data import Dataset  # noqa: PLC0415

    sizes = Dataset(data).splits
    after = json.loads((report / "metrics.json").read_text())
    before = json.loads((report / "untrained" / "metrics.json").read_text())
    comp = {name: (float(before["summaries"][name]["compatibility_mean"] or "nan"),
                   float(after["summaries"][name]["compatibility_mean"] or "nan"))
            for name in after["summaries"]}
    dg = after.get("duality_gap") or []
    click.echo("\n== summary")
    click.echo(f"dataset: {data}, {sizes['train']} train / {sizes['val']} val / {sizes['dg']} dg "
               f"cubes of 32^3 ({after['cube_size']:g} Mpc/h)")
    click.echo(f"training: {after['training']['epochs']} epochs, "
               f"{after['training']['generator_steps']} generator steps in "
               f"{after['training']['seconds']:.0f} s; duality gap "
               + (" -> ".join(f"{g:.3g}" for _, g in dg) if dg else "not computed"))
    click.echo("compatibility, mean over bins (untrained -> trained; below 1 is compatible):")
    click.echo("  " + ", ".join(f"{n.replace('_', ' ')} {a:.2f} -> {b:.2f}"
                                for n, (a, b) in comp.items()))
    def number(value):   # metrics.json writes NaN as null
        return float("nan") if value is None else float(value)

    checks = [{k: number(v) for k, v in m.get("power_spectrum_checks", {}).items()}
              for m in (before, after)]
    div = [number(m["summaries"]["power_spectrum"].get("diversity_median")) for m in (before, after)]
    click.echo("P(k) (untrained -> trained): gen/real below k_Nyq in "
               + " -> ".join(f"[{c.get('ratio_min_below_nyquist', float('nan')):.2f}, "
                             f"{c.get('ratio_max_below_nyquist', float('nan')):.2f}]" for c in checks)
               + ", checkerboard " + " -> ".join(f"{c.get('checkerboard', float('nan')):.2f}"
                                                for c in checks)
               + ", diversity " + " -> ".join(f"{d:.2f}" for d in div))
    click.echo(f"report: {report}/ (metrics.json, fig4-fig8 PNGs); the whole demo took "
               f"{sum(seconds.values()):.0f} s")
