"""`lsscore demo`: the whole pipeline, each step through the `lsscore` CLI itself, writing
under one directory: simulate a small suite, preprocess it, train, sample, evaluate the
untrained and the trained generator, and print a six-line summary.

Every size comes from the config: [suite] (what `lsscore simulate` makes), [data] (how
`lsscore preprocess` cuts it), the training sections, and [evaluate] n_cubes (generated cubes
in the report). `configs/demo.toml` (what `make demo` runs) is sized for a few minutes of
training on 2 CPU cores; `configs/tiny.toml` is a miniature of the same steps for the tests."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click

from ._options import SEED

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
@click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
              default="configs/demo.toml", show_default=True,
              help="The demo's config: suite, dataset, training and report sizes.")
@click.option("--seed", type=SEED, default=0, show_default=True)
def demo(out, config, seed):
    """Simulate -> preprocess -> train -> sample -> evaluate, all under OUT; ends with the
    report's path and a six-line summary."""
    from lsswgan_core.config import ConfigError, load_config  # noqa: PLC0415

    if not config.is_file():
        raise click.BadParameter(f"{config} not found (run from the repository root)",
                                 param_hint="--config")
    try:
        cfg = load_config(config).validate()
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    suite, n_eval = cfg.suite, cfg.evaluate.n_cubes
    out.mkdir(parents=True, exist_ok=True)
    run, data, report = out / "run", out / "dataset.h5", out / "report"
    for stale in (run, out / "suite"):
        if stale.exists():
            import shutil  # noqa: PLC0415

            shutil.rmtree(stale)
    seconds = {}
    seconds["simulate"] = _step("simulate", "simulate", "--out", str(out / "suite"), "--n-sims",
                                str(suite.n_sims), "--particles", str(suite.particles),
                                "--box-size", str(suite.box_size), "--pm-steps",
                                str(suite.pm_steps), "--mesh-factor", str(suite.mesh_factor),
                                "--seed", str(seed))
    sims = sorted(str(s) for s in (out / "suite").glob("sim_*"))
    seconds["preprocess"] = _step("preprocess", "preprocess", *sims, "--out", str(data),
                                  "--config", str(config), "--seed", str(seed), "--length-unit",
                                  "Mpc/h")
    seconds["train"] = _step("train", "train", "--data", str(data), "--config", str(config),
                             "--out", str(run), "--seed", str(seed), "--device", "cpu")
    last = run / "checkpoints" / "last.pt"
    from lsswgan_core.data import Dataset  # noqa: PLC0415

    sizes = Dataset(data).splits
    n_eval = n_eval or sizes[cfg.evaluate.split]   # 0: as many as the evaluated split has
    seconds["sample"] = _step("sample", "sample", "--checkpoint", str(last), "--n-cubes",
                              str(n_eval), "--out", str(out / "samples.h5"), "--physical")
    seconds["evaluate"] = _step("evaluate (untrained generator)", "evaluate", "--checkpoint",
                                str(run / "checkpoints" / "epoch_00000.pt"), "--data", str(data),
                                "--out", str(report / "untrained"), "--n-cubes", str(n_eval))
    seconds["evaluate"] += _step("evaluate", "evaluate", "--checkpoint", str(last), "--data",
                                 str(data), "--out", str(report), "--n-cubes", str(n_eval))

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
