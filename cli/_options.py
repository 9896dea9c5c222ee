"""Click callbacks shared by the commands' output options."""
from __future__ import annotations

import click


def output_file(ctx, param, value):
    """A click callback for an output file: a name, not a directory. (A missing directory is
    the library's one-line error, checked before any work.)"""
    if value is None:
        return value
    if not value.name or str(value) in ("", "."):
        raise click.BadParameter("an output file name is needed")
    if value.is_dir():
        raise click.BadParameter(f"{value} is a directory; give a file name")
    return value


def output_dir(ctx, param, value):
    """A click callback for an output directory: not empty (it would mean the current one)."""
    if value is not None and str(value).strip() in ("", "."):
        raise click.BadParameter("an output directory is needed (not the empty string)")
    return value


# a seed numpy, torch and an HDF5 attribute all take
SEED = click.IntRange(min=0, max=2**63 - 1)


def fail(exc: Exception):
    """The one-line error of a failed command. Under torchrun an error every rank raised
    together (lsswgan_core.ranks.RankError) is printed by rank 0 only; the other ranks exit
    with status 1 quietly, so the message appears once."""
    from lsswgan_core.ranks import RankError  # noqa: PLC0415

    if isinstance(exc, RankError) and not exc.reporter:
        raise SystemExit(1)
    raise click.ClickException(str(exc)) from None
