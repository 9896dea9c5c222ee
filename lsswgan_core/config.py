"""The one configuration tree: dataclasses loaded from TOML, defaults the paper's.

Sections: [data] (how `lsscore preprocess` builds the dataset), [model], [optim], [train],
[summary] (the summary loss), [duality_gap], [evaluate] and [suite] (the simulated suite
of `lsscore demo`). Unknown keys are refused by name
(a typo never silently falls back to a default), values are checked against the field types,
and `Config.validate()` refuses values that make no sense (a width of 0, a grid that does not
divide into cubes). A leaf module: it imports nothing of the package, so every other module
can import it.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# The allowed values of the keys that name a choice, in one place: the config checks, the
# networks, the op wrappers and the CLI's choices all import them from here.
SCHEMES = ("ngp", "cic", "tsc")                   # mass assignment, in order p = 1, 2, 3
UPSAMPLING = ("transposed", "nearest", "trilinear")   # model.upsample
PADDING = ("zeros", "replicate", "reflect")       # model.padding
SAMPLE_BN = ("standing", "batch")                # model.sample_bn
GENERATORS = ("paper", "box")                     # model.generator
BOX_INPUTS = ("data", "linear", "lpt")                   # model.box_input
DEVICES = ("cpu", "cuda")
SPLITS = ("train", "val", "dg")
ANY_LENGTH = {"evaluate.box_sizes"}                # list keys of any length (others: fixed)


class ConfigError(ValueError):
    pass


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(key: str, value: str, allowed: tuple) -> None:
    _require(value in allowed, f"{key} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass
class DataConfig:
    """Snapshots -> dataset: how `lsscore preprocess` paints, cuts, transforms and splits."""
    grid: int = 256               # cells per side of the painted box
    cube: int = 32                # cells per side of a training cube
    # cubes per split (train, val, dg), spread evenly over each split's simulations: the
    # paper's 992 / 128 / 128 ...
    split_cubes: tuple = (992, 128, 128)
    cubes_per_box: int = 0        # ... unless this is > 0: then this many from every simulation
    scheme: str = "ngp"           # the paper's histogram
    split_fractions: tuple = (0.8, 0.1, 0.1)   # train, val, dg fractions of the simulations
    seed: int = 0
    workers: int = 1
    length_unit: str = ""         # "Mpc/h" or "kpc/h" for files that do not say; "" = ask the file
    hubble: float = 0.0           # h for files that store lengths without h nor give it; 0 = none
    chunk: int = 1 << 20          # particles read and painted at a time
    transform_c: float = 11.0
    transform_s: float = 0.002
    ptype: int = 1                # the particle type painted (1: dark matter in Gadget files)
    # also keep each simulation's whole painted box (rho/rhobar, group `boxes` of the file):
    # what the box generator trains on, in random periodic crops
    keep_boxes: bool = True

    def validate(self) -> None:
        _require(self.grid >= 1 and self.cube >= 1, "data.grid and data.cube must be positive")
        _require(self.grid % self.cube == 0,
                 f"the grid ({self.grid}) does not divide into cubes of {self.cube} cells: "
                 "choose a grid that is a multiple of the cube size")
        _require(self.cubes_per_box >= 0, "data.cubes_per_box must be >= 0")
        _require(self.cubes_per_box > 0 or (len(self.split_cubes) == 3
                                            and all(c >= 0 for c in self.split_cubes)
                                            and self.split_cubes[0] > 0),
                 f"data.split_cubes must be three cube counts (train > 0), got "
                 f"{list(self.split_cubes)}; or set data.cubes_per_box")
        _choice("data.scheme", self.scheme, SCHEMES)
        split = tuple(float(s) for s in self.split_fractions)
        _require(len(split) == 3 and all(s >= 0 and math.isfinite(s) for s in split)
                 and sum(split) > 0,
                 f"split fractions must be three non-negative numbers, got {list(self.split_fractions)}")
        _require(split[0] > 0, "the train split must not be empty (x_max comes from it)")
        _require(self.workers >= 1, "data.workers must be >= 1")
        _require(self.length_unit.lower() in ("", "mpc/h", "kpc/h"),
                 f"data.length_unit must be Mpc/h or kpc/h, got {self.length_unit!r}")
        _require(self.hubble == 0 or (math.isfinite(self.hubble) and 0 < self.hubble < 10),
                 f"data.hubble (h = H0 / 100 km/s/Mpc) must be in (0, 10), or 0 for not "
                 f"given, got {self.hubble}")
        _require(self.chunk >= 1, "data.chunk must be >= 1")
        _require(self.transform_c > 0 and self.transform_s > 0,
                 "data.transform_c and data.transform_s must be positive")

    def fractions(self) -> tuple:
        total = sum(float(s) for s in self.split_fractions)
        return tuple(float(s) / total for s in self.split_fractions)


@dataclass
class ModelConfig:
    # 'paper': the paper's generator of 32^3 cubes (Tables 2-3); 'box': the translation-
    # equivariant generator of periodic boxes of any size (gan.models.BoxGenerator), trained
    # on random crops of `cube` cells of the dataset's whole boxes
    generator: str = "paper"
    width: float = 1.0
    latent_dim: int = 256
    cube: int = 32                # the critic's input: the cubes, or the box generator's crops
    # the box generator: white-noise channels beside the large-scale one, and the large-scale
    # input's spectrum: 'data' (the training boxes' own P(k), continued below their
    # fundamental by the linear spectrum's shape), 'linear' (the linear spectrum at z = 0) or
    # 'lpt' (the log density of the 2LPT displacement of that linear field)
    noise_channels: int = 2
    box_input: str = "data"
    # start the generator's last bias at logit(mean of the training cubes), so that its first
    # outputs have the data's mean instead of sigmoid(0) = 0.5 (not in the paper; off there);
    # the box generator: its output starts as the data's one-point distribution, a linear map
    # of the large-scale input in logit space (BoxGenerator.match_output)
    init_output_bias: bool = False
    # beyond the paper (see lsswgan_core.gan.models): 'transposed' (the paper), 'nearest' or
    # 'trilinear' x2 interpolation + a 3^3 convolution
    upsample: str = "transposed"
    padding: str = "zeros"        # of the generator's 3^3 convolutions: zeros, replicate, reflect
    minibatch_std: bool = False   # the critic sees each group's spread (a batch-level signal)
    # BatchNorm when sampling: 'standing' statistics (re-estimated over `standing_batches`
    # full batches of fresh latents, then eval mode: a cube does not depend on the others of
    # its batch) or 'batch' statistics (as during training)
    sample_bn: str = "standing"
    standing_batches: int = 32

    def validate(self) -> None:
        _require(self.width > 0 and math.isfinite(self.width),
                 f"model.width must be a positive number, got {self.width}")
        _require(self.latent_dim >= 1, f"model.latent_dim must be >= 1, got {self.latent_dim}")
        _require(self.cube == 32, f"model.cube: the paper's networks take 32^3 cubes, got {self.cube}")
        _choice("model.upsample", self.upsample, UPSAMPLING)
        _choice("model.padding", self.padding, PADDING)
        _choice("model.sample_bn", self.sample_bn, SAMPLE_BN)
        _choice("model.generator", self.generator, GENERATORS)
        _choice("model.box_input", self.box_input, BOX_INPUTS)
        _require(self.noise_channels >= 0, "model.noise_channels must be >= 0")
        _require(self.standing_batches >= 1, "model.standing_batches must be >= 1")


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: tuple = (0.0, 0.9)
    lr_critic: float = 0.0        # > 0: the critic's own learning rate (else lr)
    lr_generator: float = 0.0     # > 0: the generator's own learning rate (else lr)

    def validate(self) -> None:
        _require(self.lr > 0 and math.isfinite(self.lr), f"optim.lr must be positive, got {self.lr}")
        _require(self.lr_critic >= 0 and self.lr_generator >= 0
                 and math.isfinite(self.lr_critic) and math.isfinite(self.lr_generator),
                 "optim.lr_critic and optim.lr_generator must be >= 0 (0: use optim.lr)")
        _require(all(0 <= b < 1 for b in self.betas), f"optim.betas must lie in [0, 1), got {self.betas}")


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
    # beyond the paper: an exponential moving average of the generator's weights (this decay
    # per generator step; 0: off), which sampling then uses
    ema_decay: float = 0.0
    # > 0: stop at the end of the first epoch that ends past this many seconds of training
    # (for equal-budget comparisons; the run can be resumed)
    time_limit: float = 0.0

    def validate(self) -> None:
        _require(0 <= self.ema_decay < 1, f"train.ema_decay must lie in [0, 1), got {self.ema_decay}")
        _require(self.time_limit >= 0, "train.time_limit must be >= 0")
        for key in ("epochs", "batch_size", "n_critic", "log_every"):
            _require(getattr(self, key) >= 1, f"train.{key} must be >= 1, got {getattr(self, key)}")
        _require(self.gp_lambda >= 0 and self.lambda_summ >= 0,
                 "train.gp_lambda and train.lambda_summ must be >= 0")
        _require(self.summary_epochs >= 0 and self.checkpoint_every >= 0,
                 "train.summary_epochs and train.checkpoint_every must be >= 0")


@dataclass
class SummaryConfig:
    """The summary loss S of the generator; see lsswgan_core.gan.losses."""
    lambda_pk: float = 2.0
    lambda_mass: float = 2.0
    lambda_peak: float = 1.0
    delta: float = 1e-3
    eps: float = 1e-3
    box_size: float = 1.0        # only sets the k units; the loss is scale-free in it
    mass_bins: int = 50
    peak_bins: int = 30
    peak_radius: int = 2
    value_range: tuple = (0.0, 1.0)
    normalise: bool = True       # each statistic divided by a unit, its mean over samples and bins
    # the unit: of each real 'batch' (re-estimated every step), or of the 'train' split (fixed
    # once when the run starts, stored in the checkpoint)
    units: str = "batch"
    # P(k) bins: up to the Nyquist frequency (the default bins) or up to the cube's corner,
    # sqrt(3) k_Nyq (every rfft mode, the period-2 checkerboard included)
    pk_bins: str = "nyquist"

    def validate(self) -> None:
        _choice("summary.units", self.units, ("batch", "train"))
        _require(self.normalise or self.units == "batch",
                 "summary.units = 'train' needs summary.normalise = true (the units divide "
                 "the statistics only when they are normalised)")
        _choice("summary.pk_bins", self.pk_bins, ("nyquist", "corner"))
        _require(self.mass_bins >= 1 and self.peak_bins >= 1, "summary bins must be >= 1")
        _require(self.peak_radius >= 1, "summary.peak_radius must be >= 1")
        _require(self.value_range[1] > self.value_range[0], "summary.value_range must be [lo, hi], lo < hi")
        _require(self.box_size > 0, "summary.box_size must be positive")


@dataclass
class DualityGapConfig:
    enabled: bool = True
    every: int = 10
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-4

    def validate(self) -> None:
        _require(self.every >= 1 and self.epochs >= 1 and self.batch_size >= 1,
                 "duality_gap.every, epochs and batch_size must be >= 1")


@dataclass
class EvaluateConfig:
    """`lsscore evaluate`: the real split and the generated cubes it compares."""
    split: str = "val"            # the real cubes compared with
    n_cubes: int = 0              # generated cubes; 0: as many as the split has
    seed: int = 0                 # of the generated cubes' latents
    hist_bins: int = 30           # bins of log10 rho/rhobar for the mass and peak histograms
    peak_radius: int = 2          # peaks: strict maxima over (2 r + 1)^3, open boundary
    bispectrum_pairs: tuple = ((3.0, 3.0), (3.0, 6.0))   # (k1, k2) in units of k_F of the cube
    n_theta: int = 9              # angles between k1 and k2, evenly in (0.05, 0.95) pi
    # whole boxes (the box generator): one generated box of each of these multiples of the
    # real boxes' side, for the size-independence check of P(k)
    box_sizes: tuple = (2, 4)

    def validate(self) -> None:
        _require(bool(self.split), "evaluate.split must name a split (train, val or dg)")
        _require(self.n_cubes >= 0, "evaluate.n_cubes must be >= 0")
        _require(self.hist_bins >= 1 and self.peak_radius >= 1 and self.n_theta >= 1,
                 "evaluate.hist_bins, peak_radius and n_theta must be >= 1")
        _require(all(len(p) == 2 and min(p) > 0 for p in self.bispectrum_pairs),
                 "evaluate.bispectrum_pairs must be pairs of positive numbers")
        _require(all(1 <= s <= 16 for s in self.box_sizes),
                 "evaluate.box_sizes must be multiples of the box side in [1, 16]")


@dataclass
class SuiteConfig:
    """The simulated suite that `lsscore demo` (and bench/bm_fidelity.py) makes with `lsscore
    simulate` before preprocessing it by [data]: a demo's sizes live in its config file."""
    n_sims: int = 16
    particles: int = 128          # per side
    box_size: float = 256.0       # Mpc/h
    pm_steps: int = 8
    mesh_factor: int = 1

    def validate(self) -> None:
        _require(self.n_sims >= 1, f"suite.n_sims must be >= 1, got {self.n_sims}")
        _require(4 <= self.particles <= 1024, f"suite.particles must lie in [4, 1024], got {self.particles}")
        _require(self.box_size > 0 and math.isfinite(self.box_size), "suite.box_size must be positive")
        _require(1 <= self.pm_steps <= 1000, "suite.pm_steps must lie in [1, 1000]")
        _require(1 <= self.mesh_factor <= 4, "suite.mesh_factor must lie in [1, 4]")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    summary: SummaryConfig = field(default_factory=SummaryConfig)
    duality_gap: DualityGapConfig = field(default_factory=DualityGapConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)

    def validate(self) -> "Config":
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()
        return self


# ------------------------------------------------------------------------ TOML <-> tree


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
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        return _coerce_list(value, default, where)
    return value


def _coerce_list(value, default: tuple, where: str) -> tuple:
    """A fixed-length list of numbers, a list of pairs, or a free-length list of numbers
    (when the default is empty), as a tuple."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list, got {value!r}")
    if default and isinstance(default[0], tuple):      # a list of pairs, any length
        return tuple(_coerce_list(v, default[0], f"{where}[{i}]") for i, v in enumerate(value))
    template = default[0] if default else 0
    if where in ANY_LENGTH:                            # a list of any length, default's type
        default = ()
    if default and len(value) != len(default):
        raise ConfigError(f"{where} must be a list of {len(default)} numbers, got {value!r}")
    return tuple(_coerce(v, d, f"{where}[{i}]") for i, (v, d) in
                 enumerate(zip(value, default or [template] * len(value))))


def _fill(cls, table: dict, where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(fields))})")
    obj = cls()
    for name, value in table.items():
        setattr(obj, name, _coerce(value, getattr(obj, name), f"{where}.{name}"))
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


def override(cfg: Config, assignments) -> Config:
    """A copy of `cfg` with `section.key=value` assignments (values in TOML syntax, a bare
    word read as a string): what the CLI's `--set` does."""
    table = tomllib.loads(config_to_toml(cfg))
    for text in assignments:
        key, sep, raw = text.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set expects section.key=value, got {text!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        table.setdefault(section, {})[name.strip()] = value
    return config_from_dict(table)


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
