"""The paper's critic (Table 1) and generator (Tables 2 and 3) for 32^3 cubes.

Channel widths scale with `width` (1 = the paper; the CPU demo uses 1/4). Shapes are
(batch, channels, n, n, n), PyTorch's order; the paper's tables list channels last.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..ops import power_spectrum
from ..ops.kspace import kgrid

from ..config import BOX_INPUTS, PADDING, UPSAMPLING

LATENT_DIM = 256


def _ch(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Critic(nn.Module):
    """Five spectrally normalised Conv3d + LeakyReLU(0.2), then a dense layer to one value
    (Table 1). Input (b, 1, 32, 32, 32) -> (b, 1).

    minibatch_std (not in the paper): the standard deviation of the last features over a group
    of samples, averaged to one number, joins the dense layer's input as an extra channel, so
    the critic sees a batch's diversity and can punish a generator that collapses. `groups`
    splits the batch into that many equal groups (the critic loss passes real, generated and
    interpolated cubes as three groups, so their statistics never mix); the statistic of the
    groups in `detach` is a constant for autograd, which keeps the gradient penalty on the
    interpolated group a per-sample quantity."""

    def __init__(self, width: float = 1.0, cube: int = 32, minibatch_std: bool = False):
        super().__init__()
        if cube != 32:
            raise ValueError(f"the paper's critic takes 32^3 cubes, got {cube}^3")
        c = [_ch(x, width) for x in (64, 128, 256, 512, 512)]
        # (in, out, kernel, stride, padding, dilation), as in Table 1
        specs = [(1, c[0], 4, 2, 1, 1), (c[0], c[1], 4, 2, 1, 1), (c[1], c[2], 4, 2, 1, 1),
                 (c[2], c[3], 3, 1, 2, 2), (c[3], c[4], 3, 1, 1, 1)]
        layers = []
        for i, o, k, s, p, d in specs:
            layers += [spectral_norm(nn.Conv3d(i, o, k, s, p, d)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.minibatch_std = bool(minibatch_std)
        self.dense = nn.Linear(4**3 * (c[4] + int(self.minibatch_std)), 1)

    def forward(self, x: torch.Tensor, groups: int = 1, detach: tuple = ()) -> torch.Tensor:
        f = self.features(x)
        if self.minibatch_std:
            f = torch.cat([f, _group_std(f, groups, detach)], dim=1)
        return self.dense(f.flatten(1))


def _group_std(f: torch.Tensor, groups: int, detach: tuple) -> torch.Tensor:
    """(b, 1, ...) : per group of b / groups samples, the mean over features of their std."""
    if f.shape[0] % groups:
        raise ValueError(f"a batch of {f.shape[0]} does not split into {groups} equal groups")
    size = f.shape[0] // groups
    out = []
    for g, part in enumerate(f.split(size)):
        std = (part.var(0, unbiased=False) + 1e-8).sqrt().mean() if size > 1 \
            else torch.zeros((), dtype=f.dtype, device=f.device)
        out.append((std.detach() if g in detach else std).expand(size, 1, *f.shape[2:]))
    return torch.cat(out)


def _conv(i: int, o: int, padding_mode: str) -> nn.Conv3d:
    return nn.Conv3d(i, o, 3, 1, 1, padding_mode=padding_mode)


class ResBlock(nn.Module):
    """Conv3d-BN-LReLU-Conv3d-BN-LReLU plus the input (Table 3)."""

    def __init__(self, channels: int, padding_mode: str = "zeros"):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels, padding_mode), nn.BatchNorm3d(channels), nn.LeakyReLU(0.2),
            _conv(channels, channels, padding_mode), nn.BatchNorm3d(channels), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Dense to 4^3 x 256, three stride-2 transposed convolutions each followed by BatchNorm,
    LeakyReLU and a ResBlock, two stride-1 transposed convolutions, sigmoid (Table 2).
    z (b, 256) -> (b, 1, 32, 32, 32) in [0, 1].

    Options beyond the paper (the defaults are the paper's):
    upsample   'transposed' (the paper), or 'nearest' / 'trilinear' x2 interpolation followed
               by a 3^3 convolution. A stride-2 transposed convolution learns its 2^3 output
               phases independently and leaves a checkerboard of period 2 that nothing
               smooths; interpolation first makes every output cell see the same kernel.
    padding    'zeros' (the paper), 'replicate' or 'reflect' for every 3^3 convolution (the
               ResBlocks' and, with interpolation, all the others'). Cubes are cut from larger
               boxes, not periodic, and zero padding paints a frame on the cube faces.
    """

    def __init__(self, width: float = 1.0, latent_dim: int = LATENT_DIM, cube: int = 32,
                 upsample: str = "transposed", padding: str = "zeros"):
        super().__init__()
        if cube != 32:
            raise ValueError(f"the paper's generator makes 32^3 cubes, got {cube}^3")
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
        if padding not in PADDING:
            raise ValueError(f"padding must be one of {', '.join(PADDING)}, got {padding!r}")
        c = [_ch(x, width) for x in (256, 128, 64, 32, 16)]
        self.latent_dim, self.c0 = latent_dim, c[0]
        self.dense = nn.Linear(latent_dim, 4**3 * c[0])
        blocks = []
        for i, o in zip(c[:3], c[1:4]):
            up = [nn.ConvTranspose3d(i, o, 4, 2, 1)] if upsample == "transposed" else \
                [nn.Upsample(scale_factor=2, mode=upsample), _conv(i, o, padding)]
            blocks += [*up, nn.BatchNorm3d(o), nn.LeakyReLU(0.2), ResBlock(o, padding)]
        if upsample == "transposed":
            tail = [nn.ConvTranspose3d(c[3], c[4], 3, 1, 1), nn.BatchNorm3d(c[4]),
                    nn.LeakyReLU(0.2), nn.ConvTranspose3d(c[4], 1, 3, 1, 1)]
        else:
            tail = [_conv(c[3], c[4], padding), nn.BatchNorm3d(c[4]), nn.LeakyReLU(0.2),
                    _conv(c[4], 1, padding)]
        self.body = nn.Sequential(*blocks, *tail, nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.dense(z).view(-1, self.c0, 4, 4, 4))

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device=None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


def init_output_bias(generator: nn.Module, mean: float) -> None:
    """Set the bias of the generator's last layer (before the sigmoid) to logit(mean), so
    that its first outputs have the data's mean instead of sigmoid(0) = 0.5."""
    last = [m for m in generator.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))][-1]
    mean = min(max(float(mean), 1e-4), 1 - 1e-4)
    with torch.no_grad():
        last.bias.fill_(math.log(mean / (1 - mean)))



# ------------------------------------------------------------------ the whole-box generator


def _vconv(i: int, o: int, k: int = 3, stride: int = 1) -> nn.Conv3d:
    """A valid (unpadded) convolution: no cell of the output sees an edge."""
    return nn.Conv3d(i, o, k, stride, padding=0)


def _crop(x: torch.Tensor, n: int) -> torch.Tensor:
    """The central n^3 cells of (b, c, m, m, m), m - n even."""
    c = (x.shape[-1] - n) // 2
    return x[..., c:c + n, c:c + n, c:c + n]


class BoxGenerator(nn.Module):
    """A generator of periodic boxes of any size: translation equivariant, no dense layer,
    no normalisation, nothing that depends on a cell's position or on the rest of the batch.

    A three-level U-Net of valid (unpadded) 3^3 convolutions with LeakyReLU(0.2): two stride-2
    2^3 convolutions down, nearest-neighbour x2 + 3^3 convolution up, the skips cropped to the
    centre, a 1^3 convolution plus a linear 1^3 skip from the inputs and a sigmoid at the end.
    An input of (n + 2 halo)^3 cells gives n^3 output cells (n a multiple of `stride` = 4);
    each output cell sees the input within `halo` cells of it. So a periodic box of N^3 cells
    is the network on its inputs padded periodically by `halo` (`box`), and a tile of it is
    the network on the tile's inputs with the same halo: tiles at multiples of `stride` equal
    the whole box (`tiled_box`).

    Inputs, (b, in_channels, ., ., .): channel 0 carries the large scales, the others are
    white noise. The large-scale channel (`source`) is drawn from white noise on the whole
    periodic box: 'data' and 'linear', a Gaussian field with a power spectrum (the training
    boxes' own, or the linear one; `set_input_power`); 'lpt', log(rho/rhobar + 0.01) of the
    2LPT density that the linear spectrum's field gives at z = 0 (`sim.simulate.lpt_density`),
    which already has the web's filaments, walls and voids. Channel 0 also reaches the output
    through a linear 1^3 skip; the noise does not (a linear path from white noise to the
    output adds white power at the cell scale). Channel widths 32, 64, 128 at `width` = 1."""

    stride = 4
    pool_boxes = 4   # training: crops' inputs are windows of this many input boxes (`sample_latent`)
    filter_cap = 10.0   # `calibrate_input`: T(k) at most this many times its smallest value

    def __init__(self, width: float = 1.0, in_channels: int = 3, crop: int = 32,
                 source: str = "data"):
        super().__init__()
        if crop < self.stride or crop % self.stride:
            raise ValueError(f"the training crop must be a multiple of {self.stride}, got {crop}")
        if source not in BOX_INPUTS:
            raise ValueError(f"the large-scale input must be one of {BOX_INPUTS}, got {source!r}")
        self.crop, self.source = crop, source
        c0, c1, c2 = (_ch(x, width) for x in (32, 64, 128))
        self.in_channels = in_channels
        act = nn.LeakyReLU(0.2)
        self.enter = nn.Sequential(_vconv(in_channels, c0), act)
        self.down1 = nn.Sequential(_vconv(c0, c1, 2, 2), act, _vconv(c1, c1), act, _vconv(c1, c1), act)
        self.down2 = nn.Sequential(_vconv(c1, c2, 2, 2), act, _vconv(c2, c2), act, _vconv(c2, c2), act)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _vconv(c2, c1), act)
        self.level1 = nn.Sequential(_vconv(2 * c1, c1), act, _vconv(c1, c1), act)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _vconv(c1, c0), act)
        self.level0 = nn.Sequential(_vconv(2 * c0, c0), act, _vconv(c0, c0), act, _vconv(c0, c0), act)
        self.out = nn.Sequential(nn.Conv3d(c0, 1, 1), nn.Sigmoid())
        # the large-scale input, linearly, straight to the output (before the sigmoid): the
        # large scales reach the box from the first step on, and the network learns what to
        # add to them
        self.skip = nn.Conv3d(1, 1, 1)
        self.halo = self._find_halo()
        self._initialise()
        # the large-scale input: a Gaussian field with this power spectrum (log-log table, k in
        # h/Mpc, P in (Mpc/h)^3) on cells of `cell_size` Mpc/h, divided by `input_std`; set by
        # `set_input_power` from the data, kept in the state dict (so in every checkpoint),
        # with the channel's mean and standard deviation per cell and the seed of the input
        # boxes that training crops take their windows from
        self.register_buffer("power_k", torch.tensor([1e-4, 1e2], dtype=torch.float64))
        self.register_buffer("power_p", torch.ones(2, dtype=torch.float64))
        self.register_buffer("cell_size", torch.ones((), dtype=torch.float64))
        self.register_buffer("input_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("input_std", torch.ones((), dtype=torch.float64))
        self.register_buffer("pool_seed", torch.zeros((), dtype=torch.int64))
        # a filter T(k) on the channel (log-log table; flat 1 until `calibrate_input`)
        self.register_buffer("filter_k", torch.tensor([1e-4, 1e2], dtype=torch.float64))
        self.register_buffer("filter_t", torch.ones(2, dtype=torch.float64))
        self._pool, self._pool_key = None, None

    def set_input_power(self, k, power, cell_size: float, seed: int = 0) -> None:
        """The spectrum of the large-scale input channel: P(k) at increasing k > 0 (h/Mpc),
        interpolated log-log and held constant in log P beyond the table's ends (for 'lpt',
        the linear spectrum). Fixes `input_mean` and `input_std`, the channel's mean and
        standard deviation per cell, from a 128^3 box; `seed` fixes the training inputs'
        boxes (`sample_latent`)."""
        k = torch.as_tensor(k, dtype=torch.float64).flatten()
        power = torch.as_tensor(power, dtype=torch.float64).flatten()
        if k.numel() < 2 or k.shape != power.shape or not bool((k > 0).all()) \
                or not bool((power > 0).all()) or not bool((k[1:] > k[:-1]).all()):
            raise ValueError("the input spectrum needs >= 2 increasing k > 0 with P > 0")
        self.power_k, self.power_p = k.to(self.power_k.device), power.to(self.power_p.device)
        self.cell_size.fill_(float(cell_size))
        self.pool_seed.fill_(int(seed))
        self.filter_k = torch.tensor([1e-4, 1e2], dtype=torch.float64, device=self.power_k.device)
        self.filter_t = torch.ones(2, dtype=torch.float64, device=self.power_k.device)
        self._standardise()

    def _calibration_field(self) -> torch.Tensor:
        """The channel on a 128^3 box from a fixed seed, before standardisation."""
        self.input_mean.fill_(0.0)
        self.input_std.fill_(1.0)
        white = torch.randn(1, 128, 128, 128, generator=torch.Generator().manual_seed(0),
                            dtype=torch.float64)   # on the CPU: the same on any device
        with torch.no_grad():
            return self.large_scale_field(white.to(self.power_k.device))

    def _standardise(self) -> None:
        field = self._calibration_field()
        self.input_mean.fill_(float(field.mean()))
        self.input_std.fill_(float(field.std()))

    def calibrate_input(self, k, power) -> None:
        """Filter the channel by T(k) = sqrt(power / P_channel(k)) so that its spectrum takes
        the shape of `power` (k in h/Mpc, increasing): the phases, and so the web of an 'lpt'
        input, stay, and the two-point function becomes the target's. Training sets the
        target to the spectrum of logit(transformed training boxes): with `match_output` the
        box then starts with the data's P(k) in the generator's output space (a linear map of
        the 2LPT log density has too much power on large scales and too little on small ones:
        the nonlinear collapse it lacks). T is measured on a 128^3 calibration box, capped at
        `filter_cap` (10) times its smallest value, held constant beyond the measured k."""
        k = torch.as_tensor(k, dtype=torch.float64).flatten()
        power = torch.as_tensor(power, dtype=torch.float64).flatten()
        if k.numel() < 2 or k.shape != power.shape or not bool((k > 0).all()) \
                or not bool((power > 0).all()) or not bool((k[1:] > k[:-1]).all()):
            raise ValueError("the target spectrum needs >= 2 increasing k > 0 with P > 0")
        self.filter_k = torch.tensor([1e-4, 1e2], dtype=torch.float64, device=self.power_k.device)
        self.filter_t = torch.ones(2, dtype=torch.float64, device=self.power_k.device)
        field = self._calibration_field()[0]
        kc, pc, modes = power_spectrum(field - field.mean(), 128 * float(self.cell_size))
        keep = (modes > 0) & (pc > 0) & (kc >= k[0]) & (kc <= k[-1])
        if int(keep.sum()) < 2:
            raise ValueError("the target spectrum does not overlap the calibration box's k")
        kc, pc = kc[keep].double(), pc[keep].double()
        t = (_table_at(kc, k, power) / pc).sqrt()
        t = t.clamp(max=self.filter_cap * float(t.min()))
        self.filter_k, self.filter_t = kc.to(self.power_k.device), t.to(self.power_k.device)
        self._standardise()

    def match_output(self, values: torch.Tensor, network_scale: float = 0.1) -> dict:
        """Start the box at the data's one-point distribution: the linear skip from the
        (standardised) large-scale channel becomes logit(s) = sigma z + mu, with mu and sigma
        the mean and spread of logit(values) (transformed training values in (0, 1)), and the
        U-Net's last layer is scaled by `network_scale`, so that it starts as a small
        correction to that map. A few minutes of CPU move each weight by at most steps x lr
        (about 0.03 for the demo), so where the output starts is where it stays: from the
        default start (skip 0.5, bias at logit of the mean) the demo's boxes kept twice the
        data's mean density after 58 steps. The mean the U-Net adds is measured on a 32^3 box
        and taken off the skip's bias. Returns {'mu', 'sigma'}."""
        v = values.detach().double().flatten().clamp(1e-6, 1 - 1e-6)
        logit = torch.log(v / (1 - v))
        mu, sigma = float(logit.mean()), float(logit.std())
        with torch.no_grad():
            self.skip.weight.fill_(sigma)
            self.skip.bias.fill_(mu)
            self.out[0].weight.mul_(network_scale)
            self.out[0].bias.zero_()
            # the U-Net's LeakyReLU features have a mean, so even a tenth of its last layer
            # moves the output's (by up to 0.5 in logit): measure it on a box and take it off
            box = self.box(self.draw_inputs(1, 32, torch.Generator(self.skip.weight.device)
                                            .manual_seed(0), self.skip.weight.device))
            out = box.double().clamp(1e-6, 1 - 1e-6)
            self.skip.bias.add_(mu - float(torch.log(out / (1 - out)).mean()))
        return {"mu": mu, "sigma": sigma}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the tables have the length the data gave them: take the stored ones' shapes
        for name in ("power_k", "power_p", "filter_k", "filter_t"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _power_at(self, k: torch.Tensor) -> torch.Tensor:
        return _table_at(k, self.power_k, self.power_p)

    def large_scale_field(self, white: torch.Tensor) -> torch.Tensor:
        """White noise (b, n, n, n) -> the large-scale channel on that periodic box of n
        cells (float64), less `input_mean` and divided by `input_std`: the Gaussian field with
        the input spectrum, or ('lpt') the log density of its 2LPT displacement."""
        n = white.shape[-1]
        box = n * float(self.cell_size)
        g = kgrid(n, device=white.device)
        k = (2 * math.pi / box) * g.n2.double().sqrt()
        amp = (self._power_at(k) * n**3 / box**3).sqrt()
        amp[0, 0, 0] = 0.0
        field = torch.fft.irfftn(torch.fft.rfftn(white.double(), dim=(-3, -2, -1)) * amp,
                                 s=(n, n, n), dim=(-3, -2, -1))
        if self.source == "lpt":
            from ..sim.simulate import lpt_density  # noqa: PLC0415

            field = torch.stack([torch.log(lpt_density(f, box) + 0.01).double() for f in field])
        if not bool((self.filter_t == 1).all()):
            t = _table_at(k, self.filter_k, self.filter_t)
            field = torch.fft.irfftn(torch.fft.rfftn(field, dim=(-3, -2, -1)) * t, s=(n, n, n),
                                     dim=(-3, -2, -1))
        return (field - self.input_mean) / self.input_std

    def _input_pool(self, size: int, device) -> torch.Tensor:
        """`pool_boxes` input boxes of size^3 cells (the large-scale channel only), drawn
        from `pool_seed`: the same on resume, so training crops need no input box of their
        own (an LPT box costs a dozen FFTs and a paint)."""
        key = (size, str(device), int(self.pool_seed), self.source, float(self.cell_size),
               float(self.power_p.sum()), float(self.filter_t.sum()), float(self.input_std))
        if self._pool_key != key:
            rng = torch.Generator().manual_seed(int(self.pool_seed))
            with torch.no_grad():
                white = torch.randn(self.pool_boxes, size, size, size, generator=rng,
                                    dtype=torch.float64)
                white = white.to(self.power_k.device)   # drawn on the CPU: any device
                self._pool = self.large_scale_field(white).float().to(device)
            self._pool_key = key
        return self._pool

    def sample_latent(self, batch: int, generator: torch.Generator | None = None,
                      device=None) -> torch.Tensor:
        """The inputs of `batch` training crops, (batch, in_channels, crop + 2 halo, ...):
        the large-scale channel a window of one of the periodic input boxes of `_input_pool`
        (each about twice the window's size, so that a window sees the modes longer than
        itself, as a window of a large box does), at a random position, under a random one of
        the 48 symmetries of the cube; the noise channels fresh."""
        size = self.crop + 2 * self.halo
        pool = self._input_pool(-(-2 * size // 16) * 16, device)
        which = torch.randint(0, pool.shape[0], (batch,), generator=generator, device=device)
        origins = torch.randint(0, pool.shape[-1], (batch, 3), generator=generator, device=device)
        perms = torch.randint(0, 6, (batch,), generator=generator, device=device)
        flips = torch.randint(0, 2, (batch, 3), generator=generator, device=device)
        noise = torch.randn(batch, self.in_channels - 1, size, size, size, generator=generator,
                            device=device)
        large = []
        for b in range(batch):
            w = periodic_window(pool[int(which[b])], origins[b].tolist(), size)
            w = w.permute(*_PERMUTATIONS[int(perms[b])])
            large.append(w.flip([a for a in range(3) if flips[b, a]]))
        return torch.cat([torch.stack(large).unsqueeze(1), noise], 1)

    def draw_inputs(self, batch: int, n: int, generator: torch.Generator | None = None,
                    device=None) -> torch.Tensor:
        """The inputs of `batch` periodic boxes of n^3 cells, (batch, in_channels, n, n, n)
        float32: the large-scale field, then white noise; drawn in that order from
        `generator`, so one seed gives one box."""
        white = torch.randn(batch, self.in_channels, n, n, n, generator=generator, device=device)
        large = self.large_scale_field(white[:, 0])
        return torch.cat([large.float().unsqueeze(1), white[:, 1:]], 1)

    def _initialise(self) -> None:
        """He initialisation for LeakyReLU(0.2), zero biases: with PyTorch's default the
        signal shrinks about threefold per layer, and after the 13 layers of the U-Net the
        output is a constant (pre-sigmoid std 0.008 against 0.8 here, at width 1/4). The skip
        starts at half the large-scale input."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.skip.weight.fill_(0.5)

    def _out_size(self, s: int) -> int:
        s0 = s - 2                       # enter
        s1 = (s0 - 2) // 2 + 1 - 4       # down1
        s2 = (s1 - 2) // 2 + 1 - 4       # down2
        u1 = 2 * s2 - 2 - 4              # up2, level1
        return 2 * u1 - 2 - 6            # up1, level0

    def _find_halo(self) -> int:
        for halo in range(1, 256):
            s = 4 * self.stride + 2 * halo
            if (s - 2) % self.stride == 0 and self._out_size(s) == 4 * self.stride:
                return halo
        raise AssertionError("no halo fits the layout")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, in_channels, n + 2 halo, ...) -> (b, 1, n, n, n), n a multiple of `stride`."""
        n = x.shape[-1] - 2 * self.halo
        if x.dim() != 5 or x.shape[1] != self.in_channels or x.shape[-3:] != (x.shape[-1],) * 3 \
                or n < self.stride or n % self.stride:
            raise ValueError(f"the box generator takes (b, {self.in_channels}, n + {2 * self.halo}, "
                             f"...) cubes with n a positive multiple of {self.stride}, got "
                             f"{tuple(x.shape)}")
        h0 = self.enter(x)
        h1 = self.down1(h0)
        h2 = self.down2(h1)
        u1 = self.up2(h2)
        u1 = self.level1(torch.cat([u1, _crop(h1, u1.shape[-1])], 1))
        u0 = self.up1(u1)
        u0 = self.level0(torch.cat([u0, _crop(h0, u0.shape[-1])], 1))
        return torch.sigmoid(self.out[0](_crop(u0, n)) + self.skip(_crop(x[:, :1], n)))

    def box(self, inputs: torch.Tensor) -> torch.Tensor:
        """A whole periodic box: inputs (b, in_channels, N, N, N) -> (b, 1, N, N, N)."""
        return self(periodic_pad(inputs, self.halo))

    def tiled_box(self, inputs: torch.Tensor, tile: int, out=None) -> torch.Tensor:
        """The same box computed tile by tile (each tile^3 with its halo), for boxes whose
        activations do not fit at once; `out` (b, 1, N, N, N) receives it (any tensor or
        array with slice assignment, e.g. an HDF5 dataset). tile: a multiple of `stride`
        that divides N."""
        n = inputs.shape[-1]
        if tile % self.stride or n % tile:
            raise ValueError(f"the tile ({tile}) must be a multiple of {self.stride} dividing "
                             f"the box ({n})")
        if out is None:
            out = inputs.new_empty((inputs.shape[0], 1, n, n, n))
        for i, j, k in itertools.product(range(0, n, tile), repeat=3):
            out[:, :, i:i + tile, j:j + tile, k:k + tile] = self(
                periodic_window(inputs, (i, j, k), tile + 2 * self.halo, self.halo))
        return out


_PERMUTATIONS = list(itertools.permutations(range(3)))


def _table_at(k: torch.Tensor, tk: torch.Tensor, tv: torch.Tensor) -> torch.Tensor:
    """The table (tk increasing, tv > 0) at k, interpolated log-log, constant beyond its
    ends."""
    lk, lv = tk.log(), tv.log()
    x = k.clamp(min=float(tk[0]), max=float(tk[-1])).log()
    i = torch.searchsorted(lk, x).clamp(1, lk.numel() - 1)
    t = (x - lk[i - 1]) / (lk[i] - lk[i - 1])
    return torch.exp(lv[i - 1] + t * (lv[i] - lv[i - 1]))


def periodic_pad(x: torch.Tensor, halo: int) -> torch.Tensor:
    """(..., N, N, N) padded by `halo` cells on every side with the periodic images (any
    halo, also more than N)."""
    return periodic_window(x, (0, 0, 0), x.shape[-1] + 2 * halo, halo)


def periodic_window(x: torch.Tensor, origin, size: int, halo: int = 0) -> torch.Tensor:
    """The size^3 window of the periodic field x (..., N, N, N) that starts at origin - halo
    along each of the last three axes."""
    n = x.shape[-1]
    for axis, o in zip((-3, -2, -1), origin):
        index = torch.arange(o - halo, o - halo + size, device=x.device) % n
        x = x.index_select(axis, index)
    return x


def input_spectrum(source: str, cell_size: float, boxes: torch.Tensor | None = None,
                   cosmology=None) -> tuple[np.ndarray, np.ndarray]:
    """(k, P) tables for `BoxGenerator.set_input_power`, k in h/Mpc from far below a box's
    fundamental to past the cell's Nyquist frequency.

    source 'data': the mean P(k) of the overdensity of `boxes` (b, n, n, n) = rho/rhobar, on
    cells of `cell_size` Mpc/h; below their fundamental, the linear spectrum's shape scaled to
    the first bins (the large scales of a box are close to linear). 'linear': the linear
    spectrum of `cosmology` (the simulations' default, WMAP7) at z = 0, also the spectrum of
    the 'lpt' source's initial field."""
    from ..sim.cosmology import Cosmology   # noqa: PLC0415

    cosmology = cosmology or Cosmology()
    k_nyq = math.pi / cell_size
    low = np.geomspace(1e-4, 2 * k_nyq * math.sqrt(3), 200)
    linear = cosmology.linear_power(low)
    if source in ("linear", "lpt"):
        return low, linear
    if source != "data":
        raise ValueError(f"the box input's source must be one of {BOX_INPUTS}, got {source!r}")
    if boxes is None or boxes.dim() != 4 or boxes.shape[0] < 1:
        raise ValueError("source 'data' needs the training boxes, (b, n, n, n)")
    n = boxes.shape[-1]
    k, pk, modes = power_spectrum(boxes.double() - 1.0, n * cell_size, bins="corner")
    k, pk = k.numpy(), pk.mean(0).numpy()
    keep = (modes.numpy() > 0) & (pk > 0)
    k, pk = k[keep], pk[keep]
    scale = float(np.mean(pk[:2] / np.interp(k[:2], low, linear)))
    below = low < k[0]
    return (np.concatenate([low[below], k]),
            np.concatenate([scale * linear[below], pk]))
