"""`lsscore train`: the summary-driven WGAN-GP on a preprocessed dataset."""
from __future__ import annotations

from pathlib import Path

import click

from lsswgan_core.config import DEVICES

from ._options import SEED, output_dir


@click.command()
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The HDF5 dataset `lsscore preprocess` wrote.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="A TOML config (configs/paper.toml, configs/demo.toml); "
              "default: the paper's values.")
@click.option("--set", "assignments", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override one config key, e.g. --set train.epochs=20 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              callback=output_dir,
              help="The run directory (config.toml, metrics.jsonl, checkpoints/).")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from checkpoints/last.pt.")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Default: cuda when a GPU is visible, else cpu.")
@click.option("--seed", type=SEED, default=None, help="[train] seed.")
@click.option("--max-epochs", type=click.IntRange(min=1), default=None,
              help="Stop after this many more epochs (not a config key: the run can be "
                   "resumed up to [train] epochs).")
def train(data, config_path, assignments, out, resume, device, seed, max_epochs):
    """Train the critic and the generator (the paper's Table 4 loop with the summary loss
    and the duality gap). Under `torchrun --nproc-per-node N -m lsscore train ...` it runs
    DistributedDataParallel."""
    import os  # noqa: PLC0415

    from lsswgan_core.config import Config, ConfigError, load_config, override  # noqa: PLC0415
    from lsswgan_core.gan.train import TrainingError  # noqa: PLC0415
    from lsswgan_core.gan.train import train as run  # noqa: PLC0415

    if not data.is_file():
        raise click.BadParameter(f"{data} does not exist", param_hint="--data")
    try:
        config = load_config(config_path) if config_path is not None else None
        if assignments:
            config = override(config or Config(), assignments)
        record = run(data, out, config, resume=resume, device=device, seed=seed,
                     max_epochs=max_epochs)
    except (ConfigError, TrainingError) as exc:
        raise click.ClickException(str(exc)) from None
    if int(os.environ.get("RANK", "0")) == 0:
        summary = ", ".join(f"{k} {record[k]:.4g}" for k in ("wasserstein", "gp", "generator_loss")
                            if k in record)
        click.echo(f"run in {out}: epoch {record.get('epoch', 0)}, {summary}")
