"""`lsscore sample`: generated cubes, or whole periodic boxes (--box), from a checkpoint into an
HDF5 file."""
from __future__ import annotations

from pathlib import Path

import click

from lsswgan_core.config import DEVICES, SAMPLE_BN

from ._options import SEED, fail, output_file


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="A checkpoint of `lsscore train` (RUN/checkpoints/last.pt).")
@click.option("--n-cubes", "--n", "n", type=click.IntRange(min=1), required=True,
              help="How many cubes (or boxes, with --box).")
@click.option("--box", "box_cells", type=click.IntRange(min=4, max=4096), default=None,
              help="Write whole periodic boxes of this many cells per side (a multiple of 4) at "
                   "the data's cell size, dataset `boxes` (a run with model.generator = 'box').")
@click.option("--tile", type=click.IntRange(min=4), default=None,
              help="With --box: cells per side of a tile (a multiple of 4 dividing the box); "
                   "default: the largest that fits in memory. Any tile gives the same box.")
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
def sample(checkpoint, n, box_cells, tile, out, physical, batch, sample_bn, seed, device):
    """Draw N cubes from the generator of CHECKPOINT and write them to OUT (dataset `samples`,
    with the dataset's transform attributes); with --box, N whole boxes (dataset `boxes`).
    Under `torchrun ... -m lsscore sample` the cubes (boxes) are divided among the ranks and
    the file is the same (docs/distributed.md)."""
    import os  # noqa: PLC0415

    from lsswgan_core.gan.sample import check_output_dir, sample_boxes, sample_cubes  # noqa: PLC0415
    from lsswgan_core.gan.run import RunError  # noqa: PLC0415

    main = int(os.environ.get("RANK", "0")) == 0
    try:
        check_output_dir(out)  # before the work, not after
        if box_cells is not None:
            meta = sample_boxes(checkpoint, out, box_cells, n, tile=tile, physical=physical,
                                seed=seed, device=device, show_progress=True)
            if main:
                click.echo(f"wrote {n} box{'es' if n > 1 else ''} of {box_cells}^3 cells "
                           f"({meta['box_size']:g} Mpc/h) to {out} in tiles of {meta['tile']}^3; "
                           f"{meta['seconds'] / n:.1f} s per box")
            return
        _, rate = sample_cubes(checkpoint, out, n, batch=batch, physical=physical, seed=seed,
                               device=device, show_progress=True, bn=sample_bn)
    except (RunError, ValueError) as exc:
        fail(exc)
    if main:
        click.echo(f"wrote {n} cubes to {out} ({'rho/rhobar' if physical else 'transformed'}); "
                   f"{rate:.1f} cubes/s")
