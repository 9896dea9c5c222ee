"""`lsscore demo`: the whole pipeline, each step through the `lsscore` CLI itself, writing
under one directory: simulate a small suite, preprocess it, train, sample, evaluate, and print
a short summary.

With the whole-box generator (`configs/demo.toml`, what `make demo` runs: training bounded by
[train] time_limit) the sample is one large periodic box (the largest of [evaluate] box_sizes,
1 Gpc/h on 256^3 cells), and the report has the cube-level comparison (32^3 windows of
generated boxes against the held-out cubes, the paper's Figs. 6-8) beside the whole-box one
(P(k), seams, the remapped-Gaussian baseline, boxes of other sizes). With the paper's cube
generator (`configs/tiny.toml`, a miniature for the tests) the sample is cubes and the report
compares the untrained with the trained generator.

Every size comes from the config: [suite] (what `lsscore simulate` makes), [data] (how
`lsscore preprocess` cuts it), the training sections, and [evaluate] (n_cubes generated cubes,
box_sizes)."""
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
    if cfg.model.generator == "box":
        _box_demo(cfg, out, data, run, last, report, seconds, n_eval, seed)
        return
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


def _fmt(value, spec=".2f") -> str:
    return "nan" if value is None else format(float(value), spec)


def _box_demo(cfg, out, data, run, last, report, seconds, n_eval, seed):
    """sample one box twice the data's side, evaluate (cubes and whole boxes, the largest of
    [evaluate] box_sizes among them: 1 Gpc/h in the demo), print the summary."""
    big = 2 * cfg.data.grid
    box_file = out / f"box_{big}.h5"
    tile = 64 if big > 64 and big % 64 == 0 else big
    seconds["sample"] = _step(f"sample a {big}^3 box", "sample", "--checkpoint", str(last),
                              "--box", str(big), "--n-cubes", "1", "--tile", str(tile),
                              "--physical", "--out", str(box_file), "--seed", str(seed))
    seconds["evaluate"] = _step("evaluate", "evaluate", "--checkpoint", str(last), "--data",
                                str(data), "--out", str(report), "--n-cubes", str(n_eval))
    metrics = json.loads((report / "metrics.json").read_text())
    click.echo("\n== summary")
    for line in box_summary(cfg, metrics, sizes_line(data), box_file, report):
        click.echo(line)
    click.echo(f"the whole demo took {sum(seconds.values()):.0f} s ("
               + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")


def box_summary(cfg, m: dict, splits: str, box_file, report) -> list[str]:
    """The box demo's summary lines, from the report's metrics.json."""
    import math  # noqa: PLC0415

    b, s, c = m.get("boxes") or {}, m.get("summaries") or {}, m.get("power_spectrum_checks") or {}
    t = m.get("training") or {}
    dg = m.get("duality_gap") or []
    lines = [f"dataset: {m.get('data')}, whole boxes of {cfg.data.grid}^3 cells: {splits}",
             f"training: wall budget [train] time_limit = {cfg.train.time_limit:g} s; used "
             f"{_fmt(t.get('seconds'), '.0f')} s, {t.get('epochs')} epochs, "
             f"{t.get('generator_steps')} generator steps on random {cfg.model.cube}^3 crops; "
             "duality gap " + (" -> ".join(f"{g:.3g}" for _, g in dg) if dg else "not computed")]
    if s:
        lines.append(
            f"cubes ({cfg.model.cube}^3 windows of generated boxes vs the {m.get('split')} "
            "cubes), compatibility (below 1 is compatible): " + ", ".join(
                f"{n.replace('_', ' ')} {_fmt(v.get('compatibility_mean'))}" for n, v in s.items())
            + f"; P ratio below k_Nyq [{_fmt(c.get('ratio_min_below_nyquist'))}, "
            f"{_fmt(c.get('ratio_max_below_nyquist'))}], checkerboard "
            f"{_fmt(c.get('checkerboard'))}, diversity "
            f"{_fmt(s.get('power_spectrum', {}).get('diversity_median'))}")
    if "ratio" in b:
        ratio = [(float(k), float(r)) for k, r in zip(b["k"], b["ratio"]) if r is not None]
        below = [r for k, r in ratio if k <= math.pi / b["cell_size"] and math.isfinite(r)]
        lines.append(
            f"whole boxes ({b['count']} generated vs {b['count']} held-out real, {b['cells']}^3): "
            f"P ratio up to k_Nyq [{min(below):.2f}, {max(below):.2f}]; the scales above a crop "
            f"inside the real 2-sigma band: {b['above_crop_inside_2sigma']}; tiled vs whole "
            f"{b['tiled_vs_whole']:.1e}")
        lines.append("seams, generated (null's 99th percentile): " + ", ".join(
            f"{n.replace('_', ' ')} {_fmt(v['generated'], '.3g')} ({_fmt(v['null_p99'], '.3g')})"
            for n, v in b["seams"].items()))
        lines.append(
            "against the remapped-Gaussian baseline (distance to the real; smaller is closer): "
            f"bispectrum Q {b['bispectrum_distance_generated']:.3f} vs "
            f"{b['bispectrum_distance_baseline']:.3f}, peak histogram "
            f"{b['peak_distance_generated']:.3f} vs {b['peak_distance_baseline']:.3f}")
        lines.append("size independence (P(k) of one box per size in the common bins, inside "
                     "the 2-sigma band of the generated / of the real boxes' spread; about 95 % "
                     "expected by chance): " + ", ".join(
                         f"{cells}^3 {v.get('bins_inside')}/{v.get('bins_inside_real_band')}"
                         f"/{v.get('bins')}" for cells, v in b["size_independence"].items())
                     + "; box-to-box spread of the small scales' P(k), generated / real "
                     + _fmt(b.get("spread_ratio")))
    lines.append(f"a whole box: {box_file}; report: {report}/ (metrics.json, box_slices, "
                 "box_large, box_power, box_seams, fig6-fig8 PNGs)")
    return lines


def sizes_line(data) -> str:
    from lsswgan_core.data import Dataset  # noqa: PLC0415

    d = Dataset(data)
    return ", ".join(f"{name} {len(d.boxes(name))}" for name in ("train", "val", "dg"))
