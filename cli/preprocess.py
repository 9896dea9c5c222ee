"""`lsscore preprocess`: snapshots -> an HDF5 dataset of transformed 32^3 cubes."""
from __future__ import annotations

from pathlib import Path

import click


def _split(ctx, param, value):
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter("expected three fractions like 0.8,0.1,0.1") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or sum(parts) <= 0 or parts[0] <= 0:
        raise click.BadParameter("expected three non-negative fractions, train > 0")
    return parts


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--grid", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--cube", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--cubes-per-box", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--scheme", type=click.Choice(["ngp", "cic", "tsc"]), default="ngp", show_default=True)
@click.option("--split", default="0.8,0.1,0.1", show_default=True, callback=_split,
              help="train,val,dg fractions of the simulations.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--length-unit", type=click.Choice(["Mpc/h", "kpc/h"], case_sensitive=False),
              default=None, help="For files that do not state their length unit.")
def preprocess(inputs, out, grid, cube, cubes_per_box, scheme, split, seed, workers, length_unit):
    """Paint each snapshot in INPUTS (one per simulation; any format open_snapshot reads),
    cut augmented cubes, apply the paper's transform and write OUT. Rerun the same command
    after a crash to resume."""
    from lsswgan_core.data import PreprocessConfig  # noqa: PLC0415
    from lsswgan_core.data import preprocess as run  # noqa: PLC0415
    from lsswgan_core.io import SnapshotError  # noqa: PLC0415

    cfg = PreprocessConfig(grid=grid, cube=cube, cubes_per_box=cubes_per_box, scheme=scheme,
                           split=split, seed=seed, workers=workers, length_unit=length_unit)
    try:
        path = run(inputs, out, cfg)
    except (SnapshotError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    import h5py  # noqa: PLC0415

    with h5py.File(path, "r") as f:
        sizes = {k: f[k].shape[0] for k in ("train", "val", "dg")}
        click.echo(f"wrote {path}: " + ", ".join(f"{k} {v} cubes" for k, v in sizes.items())
                   + f"; x_max = {f.attrs['x_max']:.4g}")
