"""The `lsscore` click group. One module per command; each only parses and calls the library."""
from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

import click

try:
    __version__ = version("lsscore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "unknown"


class _Group(click.Group):
    """Every command's OSError (a file that cannot be read or written: disk full, file too
    large, quota, permission, a missing path) is one 'Error:' line, however it is invoked."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            from lsswgan_core.files import describe  # noqa: PLC0415

            raise click.ClickException(describe(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lsscore")
def cli():
    """lsscore: summary-driven 3D WGAN-GP emulators of the cosmic web, with fast
    statistics kernels (painting, peaks, power spectra, soft histograms)."""


def _register():
    from . import demo, evaluate, info, paint, preprocess, sample, simulate, train  # noqa: PLC0415

    cli.add_command(info.info)
    cli.add_command(paint.paint)
    cli.add_command(simulate.simulate)
    cli.add_command(preprocess.preprocess)
    cli.add_command(train.train)
    cli.add_command(sample.sample)
    cli.add_command(evaluate.evaluate)
    cli.add_command(demo.demo)


_register()


def main():
    """Console entry point: a missing or stale build, or a file that cannot be read or written
    (disk full, file too large, quota, permission, path), is a one-line message, not a trace."""
    try:
        cli(standalone_mode=True)
    except ImportError as exc:  # lsswgan_core.BuildError included
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:
        from lsswgan_core.files import describe  # noqa: PLC0415

        click.echo(f"Error: {describe(exc)}", err=True)
        sys.exit(1)
