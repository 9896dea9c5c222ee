"""The `lsscore` click group. One module per command; each only parses and calls the library."""
from __future__ import annotations

import click

from lsswgan_core._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsscore")
def cli():
    """lsscore: summary-driven 3D WGAN-GP emulators of the cosmic web, with fast
    statistics kernels (painting, peaks, power spectra, soft histograms)."""


def _register():
    from . import demo, info, paint  # noqa: PLC0415

    cli.add_command(info.info)
    cli.add_command(paint.paint)
    cli.add_command(demo.demo)


_register()
