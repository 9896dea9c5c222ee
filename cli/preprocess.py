"""`lsscore preprocess`: snapshots -> an HDF5 dataset of transformed 32^3 cubes.

Every option sets the [data] key of the same name (over the --config file's, if given)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from lsswgan_core.config import SCHEMES

from ._options import SEED, fail, output_file


def _numbers(cast, example, hi):
    """A click callback: three comma-separated numbers in [0, hi] -> a tuple (None stays None)."""
    def parse(ctx, param, value):
        if value is None:
            return None
        try:
            numbers = tuple(cast(v) for v in value.split(","))
        except ValueError:
            numbers = ()
        if len(numbers) != 3 or not all(0 <= v <= hi for v in numbers):
            raise click.BadParameter(f"expected three comma-separated numbers in [0, {hi:g}] "
                                     f"like {example}, got {value!r}")
        return numbers
    return parse


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=output_file)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A TOML config whose [data] section is used (configs/paper.toml).")
@click.option("--grid", type=click.IntRange(min=1), default=None, help="[data] grid (256).")
@click.option("--cube", type=click.IntRange(min=1), default=None, help="[data] cube (32).")
@click.option("--cubes-per-box", type=click.IntRange(min=1), default=None,
              help="[data] cubes_per_box: this many cubes from every simulation (default: "
                   "none, split-cubes decides).")
@click.option("--split-cubes", callback=_numbers(int, "992,128,128", 10**9), default=None,
              help="[data] split_cubes: train,val,dg cube counts spread evenly over each "
                   "split's simulations (the paper's 992,128,128).")
@click.option("--scheme", type=click.Choice(SCHEMES), default=None,
              help="[data] scheme (ngp).")
@click.option("--split-fractions", callback=_numbers(float, "0.8,0.1,0.1", 1.0), default=None,
              help="[data] split_fractions: train,val,dg fractions of the simulations (0.8,0.1,0.1).")
@click.option("--seed", type=SEED, default=None, help="[data] seed (0).")
@click.option("--keep-boxes/--no-keep-boxes", default=None,
              help="[data] keep_boxes: also store each simulation's whole box (true), what the "
                   "box generator trains on.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="[data] workers (1).")
@click.option("--length-unit", type=click.Choice(["Mpc/h", "kpc/h"], case_sensitive=False),
              default=None, help="[data] length_unit, for files that do not state their unit.")
@click.option("--hubble", type=float, default=None,
              help="[data] hubble: h, for files that record lengths without h and do not give "
                   "it (SWIFT initial conditions without /Cosmology).")
def preprocess(inputs, out, config_path, **options):
    """Paint each snapshot in INPUTS (one per simulation; any format open_snapshot reads),
    cut augmented cubes, apply the paper's transform and write OUT. Rerun the same command
    after a crash to resume. Under `torchrun ... -m lsscore preprocess` the simulations are
    divided among the ranks (docs/distributed.md); the file is the same."""
    from lsswgan_core.config import Config, load_config  # noqa: PLC0415
    from lsswgan_core.data import Dataset, preprocess as run  # noqa: PLC0415
    from lsswgan_core.io import SnapshotError  # noqa: PLC0415

    try:
        cfg = (load_config(config_path) if config_path is not None else Config()).data
        for key, value in options.items():
            if value is not None:
                setattr(cfg, key, value)
        if options["split_cubes"] is not None and options["cubes_per_box"] is None:
            cfg.cubes_per_box = 0   # counts per split asked for: not per box
        path = run(inputs, out, cfg)
    except (SnapshotError, ValueError) as exc:   # ConfigError and RankError are ValueErrors
        fail(exc)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"wrote {path}: {Dataset(path).summary()}")
