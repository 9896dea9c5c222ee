"""`lsscore sample`: generated cubes from a checkpoint into an HDF5 file."""
from __future__ import annotations

from pathlib import Path

import click

from lsswgan_core.config import DEVICES, SAMPLE_BN

from ._options import SEED, output_file


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A checkpoint of `lsscore train` (RUN/checkpoints/last.pt).")
@click.option("--n-cubes", "--n", "n", type=click.IntRange(min=1), required=True, help="How many cubes.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=output_file)
@click.option("--physical", is_flag=True, help="Write rho/rhobar (the exact inverse transform) "
              "instead of the transformed values in [0, 1].")
@click.option("--batch", type=click.IntRange(min=2), default=None,
              help="Cubes per generator call (default: the training batch size).")
@click.option("--sample-bn", type=click.Choice(SAMPLE_BN), default=None,
              help="[model] sample_bn: BatchNorm from standing statistics or from each batch "
                   "(default: the run's).")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="cpu or cuda (default: cuda when a GPU is visible, else cpu).")
def sample(checkpoint, n, out, physical, batch, sample_bn, seed, device):
    """Draw N cubes from the generator of CHECKPOINT and write them to OUT (dataset `samples`,
    with the dataset's transform attributes)."""
    from lsswgan_core.gan.sample import check_output_dir, generate, write_samples  # noqa: PLC0415
    from lsswgan_core.gan.run import RunError  # noqa: PLC0415

    try:
        check_output_dir(out)  # before the work, not after
        cubes, attrs, rate = generate(checkpoint, n, batch=batch, physical=physical, seed=seed,
                                      device=device, show_progress=True, bn=sample_bn)
        write_samples(out, cubes, attrs)
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {n} cubes to {out} ({'rho/rhobar' if physical else 'transformed'}); "
               f"{rate:.1f} cubes/s")
