"""`lsscore simulate`: the embedded default data (a small N-body suite)."""
from __future__ import annotations

from pathlib import Path

import click

from ._options import SEED, output_dir


def _finite(ctx, param, value):
    """Click's FloatRange lets NaN and infinity through (no comparison is true for NaN)."""
    import math  # noqa: PLC0415

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              callback=output_dir,
              help="Directory for the suite (one sim_XXX/ per simulation).")
@click.option("--n-sims", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--particles", type=click.IntRange(min=4, max=1024), default=64, show_default=True,
              help="Particles per side (particles^3 in all).")
@click.option("--box-size", "box_size", type=click.FloatRange(min=0, min_open=True), default=256.0,
              show_default=True, callback=_finite, help="Box side in Mpc/h.")
@click.option("--seed", type=SEED, default=0, show_default=True)
@click.option("--pm-steps", type=click.IntRange(min=1, max=1000), default=10, show_default=True,
              help="Particle-mesh steps (a handful evolve the large scales exactly).")
@click.option("--mesh-factor", type=click.IntRange(min=1, max=4), default=2, show_default=True,
              help="Particle-mesh cells per particle spacing (1 is 4-8x faster, coarser forces).")
@click.option("--redshift", type=click.FloatRange(min=0), default=0.0, show_default=True,
              callback=_finite)
@click.option("--format", "fmt", type=click.Choice(["gadget2", "hdf5"]), default="gadget2",
              show_default=True)
def simulate(out, n_sims, particles, box_size, seed, pm_steps, mesh_factor, redshift, fmt):
    """Simulate a suite: Eisenstein & Hu initial conditions (WMAP7), 2LPT, particle-mesh
    steps; written as multi-file Gadget-2 (positions in Mpc/h) or Gadget-4-style HDF5."""
    from lsswgan_core.sim.simulate import write_suite  # noqa: PLC0415

    try:
        paths = write_suite(out, n_sims, particles, box_size, seed, pm_steps, redshift, fmt,
                            mesh_factor=mesh_factor)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {len(paths)} snapshots of {particles}^3 particles in {box_size:g} Mpc/h "
               f"boxes under {out}/")
    for p in paths:
        click.echo(f"  {p}")
