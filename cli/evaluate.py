"""`lsscore evaluate`: the report (metrics.json and the paper's figures) of a trained run."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from lsswgan_core.config import DEVICES, SAMPLE_BN

from ._options import SEED, output_dir


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A checkpoint of `lsscore train` (RUN/checkpoints/last.pt); the run's "
              "metrics.jsonl is read from RUN.")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The dataset the run was trained on.")
@click.option("--split", default=None,
              help="[evaluate] split: the real cubes to compare with (val).")
@click.option("--n-cubes", "--n", "n", type=click.IntRange(min=2), default=None,
              help="[evaluate] n_cubes: generated cubes (default: as many as the split has).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              callback=output_dir,
              help="The report directory.")
@click.option("--seed", type=SEED, default=None, help="[evaluate] seed of the latents (0).")
@click.option("--sample-bn", type=click.Choice(SAMPLE_BN), default=None,
              help="[model] sample_bn for the generated cubes (default: the run's).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="cpu or cuda (default: cuda when a GPU is visible, else cpu).")
@click.option("--boxes/--no-boxes", default=None,
              help="Also compare whole generated boxes with the split's real boxes (default: "
                   "when the run trained the box generator).")
def evaluate(checkpoint, data, split, n, out, seed, sample_bn, device, boxes):
    """Compare generated cubes with a real split in physical units (P(k) up to the cube's
    corner, mass and peak histograms, bispectrum; compatibility, P ratio, checkerboard
    indicator and diversity per bin, Frechet distances) and draw Figs. 4-8."""
    from lsswgan_core.evaluation.evaluate import evaluate as run  # noqa: PLC0415

    metrics = run(checkpoint, data, out, split=split, n=n, seed=seed, device=device,
                  show_progress=True, bn=sample_bn, boxes=boxes)
    for name, block in metrics.get("summaries", {}).items():
        click.echo(f"{name:<16} compatibility (mean over bins) {block['compatibility_mean']:.3f}"
                   f"   Frechet distance {block['frechet_distance']:.4g}")
    checks = metrics.get("power_spectrum_checks")
    if checks:
        click.echo(f"P_gen/P_real below k_Nyq in [{checks['ratio_min_below_nyquist']:.3f}, "
                   f"{checks['ratio_max_below_nyquist']:.3f}]; checkerboard "
                   f"{checks['checkerboard']:.3f}; diversity (sigma_gen/sigma_real, median over "
                   f"P(k) bins) {metrics['summaries']['power_spectrum']['diversity_median']:.3f}")
    b = metrics.get("boxes")
    if b:
        ratio = np.asarray(b["ratio"], float)
        click.echo(f"whole boxes ({b['count']} of {b['cells']}^3): P_gen/P_real in "
                   f"[{np.nanmin(ratio):.3f}, {np.nanmax(ratio):.3f}]; tiled vs whole "
                   f"{b['tiled_vs_whole']:.2g}; seams above the null's 99th percentile: "
                   + (", ".join(k for k, v in b["seams"].items()
                                if v["generated"] > v["null_p99"]) or "none"))
    click.echo(f"report: {out / 'metrics.json'} and {len(metrics['figures'])} figures in {out}")
    for problem in metrics["problems"]:
        click.echo(f"warning: {problem}", err=True)
    if "summaries" not in metrics:
        raise click.ClickException("no comparison was possible: " + "; ".join(metrics["problems"]))
