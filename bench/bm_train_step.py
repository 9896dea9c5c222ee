"""Training-step benchmark at width 1 (the paper) and 1/4 (the demo), batch 16, configs/
paper.toml otherwise; the loop's own functions (lsswgan_core.gan.train's critic_step and
generator_step) on models and optimisers built as train() builds them.

  critic loss      lsscore's critic loss (+ backward + Adam) against the plain three-call
                   WGAN-GP step on the same models and batches (the critic called on the
                   real, the generated and the interpolated batch separately, the penalty
                   differentiated through the interpolated call only) and `one_call`, the
                   formulation lsscore used before (the three batches concatenated in one
                   call, whose penalty double backward runs over all three thirds).
                   critic_vs_plain = ours / plain - 1 (target: at most 0.05)
  critic (loop)    train.critic_step: generator forward, critic loss, backward, Adam
  generator (loop) train.generator_step with the summary loss against the same without it:
                   summary_overhead = with / without - 1 (target: at most 0.15)
  summary loss     the summary loss alone, forward and backward: summary_share = it / the
                   generator step without it (the same cost, less exposed to step noise)
  sample           the generator in eval mode without gradients: cubes/s

    python bench/bm_train_step.py [--device cpu|cuda] [--quick] [--bf16]
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register  # noqa: E402

from lsswgan_core.config import load_config  # noqa: E402
from lsswgan_core.gan.distributed import Distributed, choose_device, configure_cuda  # noqa: E402
from lsswgan_core.gan.losses import _interpolate, _penalty, critic_loss, summary_loss  # noqa: E402
from lsswgan_core.gan.run import Reporter, RunDir, build_models  # noqa: E402
from lsswgan_core.gan.train import (TrainState, critic_step, generator_step,  # noqa: E402
                                    random_stream)

ROOT = Path(__file__).resolve().parents[1]


def paper_config(width: float, batch: int, bf16: bool = False):
    """configs/paper.toml at another channel width and batch size."""
    cfg = load_config(ROOT / "configs" / "paper.toml")
    cfg.model.width, cfg.train.batch_size, cfg.train.bf16 = width, batch, bf16
    return cfg


def real_cubes(batch: int, device, rng) -> torch.Tensor:
    """Stand-in real cubes in [0, 1] with a skewed, data-like distribution."""
    return torch.rand(batch, 1, 32, 32, 32, device=device, generator=rng) ** 4


def loop_state(cfg, device) -> tuple[TrainState, torch.Generator, torch.Tensor]:
    """(state, rng, real batch): fresh models and optimisers as train() builds them (TF32 and
    bf16 autocast as the config says), without a run directory on disk; state.last_real set,
    so that generator_step can take the summary loss."""
    device = torch.device(choose_device(str(device)))   # cuda -> cuda:0, as train() does
    configure_cuda(str(device), cfg.train.tf32)
    torch.manual_seed(0)
    critic, generator = (m.to(device) for m in build_models(cfg))
    oc = cfg.optim
    state = TrainState(
        config=cfg, device=str(device), dist=Distributed(str(device)), run=RunDir("unused"),
        critic=critic, generator=generator,
        opt_critic=torch.optim.Adam(critic.parameters(), oc.lr_critic or oc.lr, betas=oc.betas),
        opt_generator=torch.optim.Adam(generator.parameters(), oc.lr_generator or oc.lr,
                                       betas=oc.betas),
        reporter=Reporter(None), dataset_attrs="{}", generator_ddp=generator,
        autocast=torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=device.type == "cuda" and cfg.train.bf16))
    rng = random_stream(device, 0, 0, 0, 1)
    state.last_real = real_cubes(cfg.train.batch_size, device, rng)
    return state, rng, state.last_real


def _plain_critic_loss(critic, real, fake, gp_lambda=10.0):
    """The textbook step: three critic calls, the penalty through the interpolated one."""
    fake = fake.detach()
    x_hat = _interpolate(real, fake, None)
    d_real, d_fake = critic(real).squeeze(1), critic(fake).squeeze(1)
    gp = _penalty(critic(x_hat).squeeze(1), x_hat)
    return (d_fake - d_real + gp_lambda * gp).mean()


def _one_call_critic_loss(critic, real, fake, gp_lambda=10.0):
    """lsscore's step before: real, fake and interpolated cubes concatenated in one call."""
    b, fake = real.shape[0], fake.detach()
    x_hat = _interpolate(real, fake, None)
    out = critic(torch.cat([real, fake, x_hat])).squeeze(1)
    gp = _penalty(out[2 * b:], x_hat)
    return (out[b:2 * b] - out[:b] + gp_lambda * gp).mean()


def _ours_critic_loss(critic, real, fake):
    return critic_loss(critic, real, fake)[0]


def _loss_step(loss_fn):
    """A critic step on fixed batches with one formulation of the loss: loss, backward, Adam."""
    def step(x):
        loss = loss_fn(x["state"].critic, x["real"], x["fake"])
        x["state"].opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        x["state"].opt_critic.step()
    return step


@functools.lru_cache(maxsize=1)
def _inputs(width: float, batch: int, device: str, bf16: bool) -> dict:
    """One state per (width, batch) for all its entries; a fixed generated batch."""
    cfg = paper_config(width, batch, bf16)
    state, rng, real = loop_state(cfg, device)
    z = torch.randn(2, batch, cfg.model.latent_dim, device=state.device, generator=rng)
    with torch.no_grad():
        fake = state.generator(z[0]).float()
    return {"cfg": cfg, "state": state, "rng": rng, "real": real, "fake": fake, "z": z[1]}


def _summary_only(x):
    fake = x["fake"].detach().requires_grad_(True)
    summary_loss(x["real"], fake, x["cfg"].summary)[0].backward()


def _sample(x):
    generator = x["state"].generator
    generator.eval()
    with torch.no_grad(), x["state"].autocast:
        generator(x["z"])
    generator.train()


def derive(rows: list[dict]) -> list[dict]:
    """The ratios of the docstring, per width and batch."""
    out = []
    for key in dict.fromkeys((r["width"], r["batch"]) for r in rows):
        ms = {(r["step"], r["impl"]): r["ms"] for r in rows if (r["width"], r["batch"]) == key}
        plain = ms[("critic loss", "plain 3-call WGAN-GP")]
        without = ms[("generator (loop)", "without summary loss")]
        out.append({"width": key[0], "batch": key[1],
                    "critic_vs_plain": ms[("critic loss", "ours")] / plain - 1,
                    "one_call_vs_plain": ms[("critic loss", "one_call (before)")] / plain - 1,
                    "summary_overhead": ms[("generator (loop)", "ours")] / without - 1,
                    "summary_share": ms[("summary loss", "ours")] / without})
    return out


@register("train_step", derive=derive)
def entries(opts):
    widths, batch = ((0.125,), 4) if opts.quick else ((1.0, 0.25), 16)
    for width in widths:
        setup = functools.partial(lambda w, device: _inputs(w, batch, str(device), opts.bf16),
                                  width)
        case = {"width": width, "batch": batch, "bf16": opts.bf16}
        yield Entry(case={**case, "step": "critic loss"}, setup=setup,
                    ours=_loss_step(_ours_critic_loss),
                    baselines=[Impl("plain 3-call WGAN-GP", _loss_step(_plain_critic_loss)),
                               Impl("one_call (before)", _loss_step(_one_call_critic_loss))])
        yield Entry(case={**case, "step": "critic (loop)"}, setup=setup,
                    ours=lambda x: critic_step(x["state"], x["real"], x["rng"], 0, 0))
        yield Entry(case={**case, "step": "generator (loop)"}, setup=setup,
                    ours=lambda x: generator_step(x["state"], x["rng"], True, 0, 0),
                    baselines=[Impl("without summary loss", lambda x: generator_step(
                        x["state"], x["rng"], False, 0, 0))])
        yield Entry(case={**case, "step": "summary loss"}, setup=setup, ours=_summary_only)
        yield Entry(case={**case, "step": "sample"}, setup=setup, ours=_sample,
                    throughput=("cubes/s", batch))


if __name__ == "__main__":
    main("train_step", doc=__doc__)
