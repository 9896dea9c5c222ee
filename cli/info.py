"""`lsscore info`: versions and what the build can do."""
from __future__ import annotations

import json

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(as_json):
    """Package and torch versions, CPU threads, whether CUDA kernels were built and a GPU is
    visible."""
    try:
        from lsswgan_core import build_info  # noqa: PLC0415
    except ImportError as exc:  # BuildError included: say how to build, no trace
        raise click.ClickException(str(exc)) from None
    facts = build_info()
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    labels = {
        "version": "lsscore", "torch": "torch", "built_against_torch": "built against torch",
        "cuda_kernels": "CUDA kernels built", "openmp": "OpenMP", "cpu_threads": "CPU threads",
        "gpu_visible": "GPU visible", "gpu_name": "GPU",
    }
    for key, label in labels.items():
        value = facts[key]
        if isinstance(value, bool):
            value = "yes" if value else "no"
        click.echo(f"{label + ':':<22}{value if value is not None else '-'}")
