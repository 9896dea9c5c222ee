"""`lsscore demo`: the demo of what is built so far. At this stage it paints a small
clustered catalogue with every scheme and prints checks a person can verify by eye."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np


def _catalogue(rng, n_particles, box_size):
    """Half uniform background, half in Gaussian blobs (a crude cosmic web), in Mpc/h."""
    n_blob = n_particles // 2
    centres = rng.uniform(0, box_size, size=(32, 3))
    blobs = centres[rng.integers(0, 32, n_blob)] + rng.normal(0, box_size / 40, (n_blob, 3))
    uniform = rng.uniform(0, box_size, size=(n_particles - n_blob, 3))
    return np.concatenate([blobs, uniform]) % box_size


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="demo",
              show_default=True, help="Directory for the demo's outputs.")
@click.option("--particles", type=click.IntRange(min=1000), default=1 << 20, show_default=True)
@click.option("--grid", "n", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out, particles, n, seed):
    """Paint a clustered catalogue with NGP, CIC and TSC and check mass conservation and the
    shot-noise variance of a uniform catalogue."""
    import time

    from lsswgan_core import ops  # noqa: PLC0415

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    box_size = 500.0
    pos = _catalogue(rng, particles, box_size)
    click.echo(f"{particles} particles in a {box_size:g} Mpc/h box onto {n}^3 cells")
    click.echo(f"{'scheme':<7}{'total mass':>14}{'max cell':>12}{'ms':>9}")
    grids = {}
    for scheme in ("ngp", "cic", "tsc"):
        t0 = time.perf_counter()
        grid = ops.paint(pos, n, box_size, scheme=scheme)
        ms = 1e3 * (time.perf_counter() - t0)
        grids[scheme] = grid
        click.echo(f"{scheme:<7}{grid.sum():>14.1f}{grid.max():>12.1f}{ms:>9.1f}")
    click.echo(f"(every total mass should equal {particles})")

    uniform = rng.uniform(0, box_size, size=(particles, 3))
    nbar = particles / n**3
    click.echo("shot-noise check, uniform catalogue: cell variance / expected")
    for scheme, factor in (("ngp", 1.0), ("cic", (2 / 3) ** 3), ("tsc", (11 / 20) ** 3)):
        var = ops.paint(uniform, n, box_size, scheme=scheme).var()
        click.echo(f"  {scheme}: {var:.2f} / {nbar * factor:.2f} = {var / (nbar * factor):.3f}")
    np.save(out / "painted_cic.npy", grids["cic"].astype(np.float32))
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
        for ax, (scheme, grid) in zip(axes, grids.items()):
            im = ax.imshow(np.log10(1 + grid[:, :, n // 2]).T, origin="lower",
                           extent=[0, box_size, 0, box_size], cmap="magma")
            ax.set(title=f"{scheme.upper()}, slice z = {n // 2}", xlabel="x [Mpc/h]",
                   ylabel="y [Mpc/h]")
        fig.colorbar(im, ax=axes, label="log10(1 + particles per cell)")
        fig.savefig(out / "painted_slices.png", dpi=80)
        plt.close(fig)
        click.echo(f"slices: {out / 'painted_slices.png'}")
    except ImportError:
        click.echo("(matplotlib not installed: no plot)")
    click.echo(f"demo outputs are in {out}/")
