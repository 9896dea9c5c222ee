"""`lsscore paint`: paint a NumPy catalogue onto a grid (a thin wrapper of ops.paint)."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from lsswgan_core.config import SCHEMES

from ._options import output_file


@click.command()
@click.argument("positions", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--box-size", "box_size", type=float, required=True, help="Box side L in Mpc/h.")
@click.option("--grid", "n", type=click.IntRange(min=1), default=256, show_default=True,
              help="Cells per side.")
@click.option("--scheme", type=click.Choice(SCHEMES), default="ngp",
              show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              callback=output_file,
              help="Output .npy grid.")
def paint(positions, box_size, n, scheme, out):
    """Paint POSITIONS (an (N, 3) .npy array in Mpc/h) onto an (n, n, n) periodic grid."""
    from lsswgan_core import ops  # noqa: PLC0415

    try:
        pos = np.load(positions, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"{positions}: not a readable .npy array ({exc})") from None
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise click.ClickException(f"{positions}: expected shape (N, 3), got {pos.shape}")
    if pos.dtype not in (np.float32, np.float64):
        pos = pos.astype(np.float64)
    if not np.isfinite(box_size) or box_size <= 0:
        raise click.BadParameter("must be positive", param_hint="--box-size")
    from lsswgan_core.resources import require_memory  # noqa: PLC0415

    try:
        require_memory(n**3 * pos.dtype.itemsize, f"--grid {n}: a {n}^3 {pos.dtype} grid",
                       "choose a smaller --grid")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    grid = np.zeros((n, n, n), dtype=pos.dtype)
    chunk = 1 << 22
    try:
        for start in range(0, pos.shape[0], chunk):
            ops.paint(np.ascontiguousarray(pos[start:start + chunk]), n, box_size, scheme=scheme,
                      out=grid)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    from lsswgan_core.files import atomic_file  # noqa: PLC0415

    with atomic_file(out) as f:
        np.save(f, grid)
    click.echo(f"painted {pos.shape[0]} particles ({scheme}) onto {n}^3 -> {out}; "
               f"total mass {grid.sum(dtype=np.float64):.6g}")
