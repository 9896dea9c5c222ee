"""The WGAN-GP losses (the paper's Table 4) and the summary loss.

critic_loss    = mean over the batch of D(x_fake) - D(x_real) + lambda (||grad D(x_hat)||_2 - 1)^2
generator_loss = -mean D(G(z)) + lambda_summ * S(x_real, G(z))

Summary loss S: for each statistic s (power spectrum, mass histogram, peak histogram),
computed per sample on the real and the generated batch, with per-bin batch means mu and
standard deviations sigma (sample, ddof = 1):
    e_b = (sigma_f / (mu_f + delta) + sigma_r / (mu_r + delta) + eps)^-1   (detached: a weight)
    D_s = mean_b e_b |mu_f,b - mu_r,b|
    S   = lambda_pk D_pk + lambda_m D_m + lambda_p D_p
The fields are the transformed cubes in [0, 1]; peaks use boundary='open' (cropped cubes are
not periodic).

Units: the paper leaves them open, and D_s is not scale-free (|mu_f - mu_r| carries the units
of the statistic), so with raw counts the mass histogram of 32^3 voxels outweighs a power
spectrum in box units by ~10^7. With `normalise` (the default) each statistic, real and
generated alike, is divided by the real batch's mean over samples and bins (a constant),
which makes every D_s a dimensionless, e_b-weighted relative error and the lambdas meaningful
weights. `normalise = false` gives the literal formula on raw statistics. `units = 'train'`
fixes the units once, from the train split, when the run starts (they are stored in the
checkpoint): a real batch of 8-16 cubes re-estimates its own units noisily, the peak
histogram's above all, and every step would then weigh the terms differently.
`pk_bins = 'corner'` takes P(k) up to the cube's corner, so that the loss also sees the modes
past k_Nyq where a period-2 checkerboard lives.
"""
from __future__ import annotations

import torch
from torch.nn.utils import parametrize

from ..config import SummaryConfig
from ..ops import power_spectrum, soft_histogram
from ..stats import peak_histogram


def _interpolate(real, fake, rng):
    """x_hat = eps real + (1 - eps) fake, eps ~ U(0, 1) per sample, as a leaf that needs grad."""
    eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), generator=rng,
                     device=real.device, dtype=real.dtype)
    return (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)


def _penalty(d_hat: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Per-sample (||grad D(x_hat)||_2 - 1)^2, differentiable with respect to the critic."""
    (grad,) = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).float().norm(dim=1) - 1) ** 2


def critic_loss(critic, real, fake, gp_lambda: float = 10.0, rng=None):
    """(loss, wasserstein estimate E D(real) - E D(fake), mean gradient penalty).

    Two critic calls: the real and generated cubes together, then the interpolated ones,
    whose call alone carries the penalty's double backward (it costs what the plain
    three-call step costs). Both calls share one spectral-norm power iteration (the
    normalised weights are computed once, under `parametrize.cached`). The critic is the
    bare module: under torchrun the training loop averages its gradients itself
    (`Distributed.average_gradients`), since DistributedDataParallel expects one forward
    per backward."""
    b = real.shape[0]
    fake = fake.detach()
    x_hat = _interpolate(real, fake, rng)
    mbstd = _has_minibatch_std(critic)
    with parametrize.cached():
        # a minibatch-statistics critic keeps real and generated cubes apart and holds the
        # interpolates' statistic constant, so that the penalty stays per sample
        out = critic(torch.cat([real, fake]), groups=2) if mbstd else critic(torch.cat([real, fake]))
        d_hat = critic(x_hat, groups=1, detach=(0,)) if mbstd else critic(x_hat)
    out = out.squeeze(1).float()
    d_real, d_fake = out[:b], out[b:]
    gp = _penalty(d_hat.squeeze(1).float(), x_hat)
    loss = (d_fake - d_real + gp_lambda * gp).mean()
    return loss, (d_real - d_fake).mean().detach(), gp.mean().detach()


def _has_minibatch_std(critic) -> bool:
    return bool(getattr(getattr(critic, "module", critic), "minibatch_std", False))


def summary_statistics(cubes: torch.Tensor, cfg: SummaryConfig) -> dict[str, torch.Tensor]:
    """Per-sample statistics (b, nbins) of (b, 1, n, n, n) or (b, n, n, n) cubes."""
    x = cubes.squeeze(1) if cubes.dim() == 5 else cubes
    lo, hi = cfg.value_range
    _, pk, _ = power_spectrum(x, cfg.box_size, bins="corner" if cfg.pk_bins == "corner" else None)
    return {"pk": pk,
            "mass": soft_histogram(x.flatten(1), lo, hi, cfg.mass_bins),
            "peak": peak_histogram(x, lo, hi, cfg.peak_bins, radius=cfg.peak_radius,
                                   boundary="open")}


def summary_distance(real: torch.Tensor, fake: torch.Tensor, delta: float, eps: float):
    """D_s for (b, nbins) statistics of the real and the generated batch."""
    mu_r, mu_f = real.mean(0), fake.mean(0)
    sd_r, sd_f = real.std(0, correction=1), fake.std(0, correction=1)
    weight = 1.0 / (sd_f / (mu_f + delta) + sd_r / (mu_r + delta) + eps)
    return (weight.detach() * (mu_f - mu_r).abs()).mean()


def weighted_summary(terms: dict, cfg: SummaryConfig):
    """S = lambda_pk D_pk + lambda_m D_m + lambda_p D_p."""
    return cfg.lambda_pk * terms["pk"] + cfg.lambda_mass * terms["mass"] + cfg.lambda_peak * terms["peak"]


def summary_loss(real: torch.Tensor, fake: torch.Tensor, cfg: SummaryConfig | None = None,
                 units: dict | None = None):
    """(S, {'pk': D_pk, 'mass': D_m, 'peak': D_p}); differentiable with respect to `fake`.
    units: fixed units of the statistics (summary_units of the train split); None: the real
    batch's own."""
    cfg = cfg or SummaryConfig()
    with torch.no_grad():
        s_real = summary_statistics(real, cfg)
    s_fake = summary_statistics(fake, cfg)
    if cfg.normalise:   # dimensionless statistics: comparable terms whatever the units and sizes
        scales = units if units is not None else \
            {k: v.mean().clamp_min(torch.finfo(v.dtype).tiny) for k, v in s_real.items()}
        s_real = {k: v / scales[k] for k, v in s_real.items()}
        s_fake = {k: v / scales[k] for k, v in s_fake.items()}
    terms = {k: summary_distance(s_real[k], s_fake[k], cfg.delta, cfg.eps) for k in s_real}
    return weighted_summary(terms, cfg), {k: v.detach() for k, v in terms.items()}


def train_split_units(split, cfg: SummaryConfig, device: str) -> dict:
    """The units of the summary statistics (summary.units = 'train'): each statistic's mean
    over samples and bins on (up to 512 cubes of) the train split `split` (a data.Split), fixed
    for the whole run and stored in its checkpoint."""
    picked = torch.arange(len(split))[::max(1, len(split) // 512)][:512]
    n, sums = len(picked), None
    for lo in range(0, n, 64):
        cubes = split.batch(picked[lo:lo + 64]).to(device)
        with torch.no_grad():
            stats = summary_statistics(cubes, cfg)
        part = {k: v.double().sum(0) for k, v in stats.items()}
        sums = part if sums is None else {k: sums[k] + part[k] for k in sums}
    return {k: (v.mean() / n).float().clamp_min(torch.finfo(torch.float32).tiny)
            for k, v in sums.items()}


def generator_loss(critic, fake, real=None, lambda_summ: float = 0.0,
                   summary: SummaryConfig | None = None, units: dict | None = None):
    """(loss, adversarial part, summary terms or {}): -mean D(fake) + lambda_summ S.

    `critic` is any callable (the loop passes the bare critic under autocast)."""
    adversarial = -critic(fake).float().mean()
    if lambda_summ == 0.0 or real is None:
        return adversarial, adversarial.detach(), {}
    s, terms = summary_loss(real, fake, summary, units)
    return adversarial + lambda_summ * s, adversarial.detach(), terms
