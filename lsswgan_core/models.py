"""The paper's critic (Table 1) and generator (Tables 2 and 3) for 32^3 cubes.

Channel widths scale with `width` (1 = the paper; the CPU demo uses 1/4). Shapes are
(batch, channels, n, n, n), PyTorch's order; the paper's tables list channels last.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

LATENT_DIM = 256


def _ch(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Critic(nn.Module):
    """Five spectrally normalised Conv3d + LeakyReLU(0.2), then a dense layer to one value
    (Table 1). Input (b, 1, 32, 32, 32) -> (b, 1)."""

    def __init__(self, width: float = 1.0, cube: int = 32):
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
        self.dense = nn.Linear(4**3 * c[4], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x).flatten(1))


class ResBlock(nn.Module):
    """Conv3d-BN-LReLU-Conv3d-BN-LReLU plus the input (Table 3)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, 1, 1), nn.BatchNorm3d(channels), nn.LeakyReLU(0.2),
            nn.Conv3d(channels, channels, 3, 1, 1), nn.BatchNorm3d(channels), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """Dense to 4^3 x 256, three stride-2 transposed convolutions each followed by BatchNorm,
    LeakyReLU and a ResBlock, two stride-1 transposed convolutions, sigmoid (Table 2).
    z (b, 256) -> (b, 1, 32, 32, 32) in [0, 1]."""

    def __init__(self, width: float = 1.0, latent_dim: int = LATENT_DIM, cube: int = 32):
        super().__init__()
        if cube != 32:
            raise ValueError(f"the paper's generator makes 32^3 cubes, got {cube}^3")
        c = [_ch(x, width) for x in (256, 128, 64, 32, 16)]
        self.latent_dim, self.c0 = latent_dim, c[0]
        self.dense = nn.Linear(latent_dim, 4**3 * c[0])
        blocks = []
        for i, o in zip(c[:3], c[1:4]):
            blocks += [nn.ConvTranspose3d(i, o, 4, 2, 1), nn.BatchNorm3d(o), nn.LeakyReLU(0.2),
                       ResBlock(o)]
        blocks += [nn.ConvTranspose3d(c[3], c[4], 3, 1, 1), nn.BatchNorm3d(c[4]), nn.LeakyReLU(0.2),
                   nn.ConvTranspose3d(c[4], 1, 3, 1, 1), nn.Sigmoid()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.dense(z).view(-1, self.c0, 4, 4, 4))

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device=None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


def init_output_bias(generator: Generator, mean: float) -> None:
    """Set the bias of the generator's last layer (before the sigmoid) to logit(mean), so
    that its first outputs have the data's mean instead of sigmoid(0) = 0.5."""
    last = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose3d)][-1]
    mean = min(max(float(mean), 1e-4), 1 - 1e-4)
    with torch.no_grad():
        last.bias.fill_(math.log(mean / (1 - mean)))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
