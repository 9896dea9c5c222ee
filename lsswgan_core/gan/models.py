"""The paper's critic (Table 1) and generator (Tables 2 and 3) for 32^3 cubes.

Channel widths scale with `width` (1 = the paper; the CPU demo uses 1/4). Shapes are
(batch, channels, n, n, n), PyTorch's order; the paper's tables list channels last.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..config import PADDING, UPSAMPLING

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


def init_output_bias(generator: Generator, mean: float) -> None:
    """Set the bias of the generator's last layer (before the sigmoid) to logit(mean), so
    that its first outputs have the data's mean instead of sigmoid(0) = 0.5."""
    last = [m for m in generator.body if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))][-1]
    mean = min(max(float(mean), 1e-4), 1 - 1e-4)
    with torch.no_grad():
        last.bias.fill_(math.log(mean / (1 - mean)))

