"""Training configuration: one dataclass tree, loaded from TOML, defaults the paper's.

Unknown keys are refused by name (a typo never silently falls back to a default), and values
are checked against the field types."""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .losses import SummaryConfig


@dataclass
class ModelConfig:
    width: float = 1.0
    latent_dim: int = 256
    cube: int = 32
    # start the generator's last bias at logit(mean of the training cubes), so that its first
    # outputs have the data's mean instead of sigmoid(0) = 0.5 (not in the paper; off there)
    init_output_bias: bool = False


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple = (0.0, 0.9)


@dataclass
class TrainConfig:
    epochs: int = 500
    batch_size: int = 16
    n_critic: int = 5
    gp_lambda: float = 10.0
    lambda_summ: float = 0.3
    summary_epochs: int = 170
    seed: int = 0
    checkpoint_every: int = 10
    log_every: int = 10
    tf32: bool = True
    bf16: bool = False


@dataclass
class DualityGapConfig:
    enabled: bool = True
    every: int = 10
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-4


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    duality_gap: DualityGapConfig = field(default_factory=DualityGapConfig)


class ConfigError(ValueError):
    pass


def _coerce(value, default, where):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or len(value) != len(default):
            raise ConfigError(f"{where} must be a list of {len(default)} numbers, got {value!r}")
        return tuple(_coerce(v, d, f"{where}[{i}]") for i, (v, d) in enumerate(zip(value, default)))
    return value


def _fill(cls, table: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(fields))})")
    obj = cls()
    for name, value in table.items():
        default = getattr(obj, name)
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"[{where}.{name}] must be a table")
            setattr(obj, name, _fill(type(default), value, f"{where}.{name}"))
        else:
            setattr(obj, name, _coerce(value, default, f"{where}.{name}"))
    return obj


def config_from_dict(table: dict) -> Config:
    cfg = Config()
    unknown = sorted(set(table) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ConfigError(f"unknown section{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}")
    for section, value in table.items():
        if not isinstance(value, dict):
            raise ConfigError(f"[{section}] must be a table")
        setattr(cfg, section, _fill(type(getattr(cfg, section)), value, section))
    return cfg


def load_config(path) -> Config:
    path = Path(path)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return config_from_dict(table)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_toml(cfg: Config) -> str:
    """The resolved configuration as TOML (what a run directory records)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (tuple, list)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return repr(v)

    lines = []
    for section in dataclasses.fields(Config):
        lines.append(f"[{section.name}]")
        for f in dataclasses.fields(getattr(cfg, section.name)):
            lines.append(f"{f.name} = {value(getattr(getattr(cfg, section.name), f.name))}")
        lines.append("")
    return "\n".join(lines)
