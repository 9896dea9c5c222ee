"""The duality gap, a convergence monitor for GANs.

With M(G, D) = E_x D(x) - E_z D(G(z)) on the dg split:
    L_max = max over a trajectory of M(G, D') where D' is a copy of D trained against the
            fixed G (the critic loss with gradient penalty, a fresh Adam at lr_dg);
    L_min = min over a trajectory of M(G', D) where G' is a copy of G trained to lower M
            against the fixed D;
    DG    = L_max - L_min  (>= 0; near 0 when G and D are at an equilibrium).
Both trajectories include the starting point, and M is measured on the whole dg split
(with one fixed set of latents) after every pass over it.

The main models are only read: the procedure works on deep copies, with its own optimisers
and its own random generator, so a run with the gap on ends with exactly the weights,
optimiser states, BatchNorm and spectral-norm buffers of a run with it off.
"""
from __future__ import annotations

import copy

import torch

from .losses import critic_loss
from ..progress import Progress


def _m(critic, generator, source, latents, batch_size, device) -> float:
    """M(G, D) over the whole split, in batches (generator in train mode, as in training)."""
    n = len(source)
    total_real, total_fake = 0.0, 0.0
    was_training = critic.training
    critic.eval()   # spectral norm: use the current estimate, no power iteration
    with torch.no_grad():
        for lo in range(0, n - batch_size + 1, batch_size):
            idx = torch.arange(lo, lo + batch_size)
            total_real += float(critic(source.batch(idx).to(device)).sum())
            total_fake += float(critic(generator(latents[lo:lo + batch_size])).sum())
    critic.train(was_training)
    used = (n // batch_size) * batch_size
    return (total_real - total_fake) / used


def duality_gap(critic, generator, source, cfg, betas=(0.0, 0.9), gp_lambda: float = 10.0,
                seed: int = 0, device="cpu", show_progress: bool = False) -> dict:
    """{'duality_gap', 'max', 'min', 'max_curve', 'min_curve'} for the current models.

    critic, generator: the main run's modules (not modified). source: a dataset Split (or any
    object with len() and batch(indices) -> (b, 1, n, n, n)). cfg: DualityGapConfig
    (epochs, batch_size, lr)."""
    b = cfg.batch_size
    if len(source) < b:
        raise ValueError(f"the dg split has {len(source)} cubes, fewer than one batch of {b}")
    steps = len(source) // b
    rng = torch.Generator(device=device)
    rng.manual_seed(int(seed))
    shuffle = torch.Generator()
    shuffle.manual_seed(int(seed))
    latents = generator.sample_latent(steps * b, generator=rng, device=device)

    def batches():
        order = torch.randperm(len(source), generator=shuffle)
        for i in range(steps):
            yield source.batch(order[i * b:(i + 1) * b]).to(device)

    bar = Progress(2 * cfg.epochs * steps, "duality gap", enabled=show_progress)

    def trajectory(trained, fixed, step, measure):
        """Train `trained` (a copy) with `step(batch)` -> loss against the frozen `fixed`;
        M after every pass over the split, the start included."""
        for p in fixed.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(trained.parameters(), lr=cfg.lr, betas=betas)
        curve = [measure()]
        for _ in range(cfg.epochs):
            for real in batches():
                loss = step(real)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                bar.update(1)
            curve.append(measure())
        return curve

    # L_max: a copy of D trained against the fixed G (the critic loss with its penalty)
    d_copy, g_fixed = copy.deepcopy(critic).train(), copy.deepcopy(generator).train()

    def critic_step(real):
        with torch.no_grad():
            fake = g_fixed(generator.sample_latent(b, generator=rng, device=device))
        return critic_loss(d_copy, real, fake, gp_lambda, rng)[0]

    max_curve = trajectory(d_copy, g_fixed, critic_step,
                           lambda: _m(d_copy, g_fixed, source, latents, b, device))

    # L_min: a copy of G trained to lower M against the fixed D (E_x D(x) is constant in G)
    g_copy, d_fixed = copy.deepcopy(generator).train(), copy.deepcopy(critic).eval()

    def generator_step(_real):
        return -d_fixed(g_copy(generator.sample_latent(b, generator=rng, device=device))).mean()

    min_curve = trajectory(g_copy, d_fixed, generator_step,
                           lambda: _m(d_fixed, g_copy, source, latents, b, device))

    hi, lo = max(max_curve), min(min_curve)
    return {"duality_gap": hi - lo, "max": hi, "min": lo, "max_curve": max_curve,
            "min_curve": min_curve}
