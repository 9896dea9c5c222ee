"""Training-step benchmark: seconds per critic step (generator forward, critic loss with the
gradient penalty, backward, Adam) and per generator step, with and without the summary
loss, at width 1 (the paper) and 1/4 (the demo), batch 16, medians. The ratio
`summary_overhead` = (generator step with S) / (generator step without) - 1 is the cost
of the summary loss (target: at most 0.15); `summary_share` = (the summary loss alone,
forward and backward) / (a generator step without it), the same cost measured directly
and less exposed to the step's timing noise.

The critic step is also measured against the plain three-call WGAN-GP step on the same
models, interleaved (`critic_vs_plain` = lsscore's step / the plain step - 1; target at most
0.05): the plain step calls the critic on the real, the generated and the interpolated batch
separately and differentiates the penalty through the interpolated call only. `one_call`
is the formulation lsscore used before (the three batches concatenated in one call, whose
penalty double backward runs over all three thirds), kept here as the before.

    python bench/bm_train_step.py [--quick] [--device cuda] [--bf16]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time, print_table, set_threads, write_json  # noqa: E402

from lsswgan_core.config import SummaryConfig  # noqa: E402
from lsswgan_core.gan.losses import _interpolate, _penalty, critic_loss, summary_loss  # noqa: E402
from lsswgan_core.gan.models import Critic, Generator  # noqa: E402


def steps(width, batch, device, bf16, repeats):
    torch.manual_seed(0)
    critic, generator = Critic(width).to(device), Generator(width).to(device)
    opt_c = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(generator.parameters(), 1e-4, betas=(0.0, 0.9))
    real = torch.rand(batch, 1, 32, 32, 32, device=device) ** 4
    params = list(generator.parameters())
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def critic_step():
        z = torch.randn(batch, 256, device=device)
        with torch.no_grad(), autocast:
            fake = generator(z).float()
        with autocast:
            loss, _, _ = critic_loss(critic, real, fake)
        opt_c.zero_grad(set_to_none=True)
        loss.backward()
        opt_c.step()
        sync()

    def generator_step(with_summary):
        def run():
            z = torch.randn(batch, 256, device=device)
            with autocast:
                fake = generator(z).float()
                loss = -critic(fake).float().mean()
            if with_summary:
                loss = loss + 0.3 * summary_loss(real, fake, SummaryConfig())[0]
            opt_g.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            opt_g.step()
            sync()
        return run

    t_c = median_time(critic_step, repeats)
    # with and without the summary loss interleaved, so that drift on a shared machine
    # (caches, allocator, other load) falls on both alike
    plain, summary = generator_step(False), generator_step(True)
    plain()
    summary()
    times = {False: [], True: []}
    for _ in range(repeats):
        for with_summary, fn in ((False, plain), (True, summary)):
            t0 = time.perf_counter()
            fn()
            times[with_summary].append(time.perf_counter() - t0)
    t_g, t_gs = statistics.median(times[False]), statistics.median(times[True])
    fake = generator(torch.randn(batch, 256, device=device)).detach().requires_grad_(True)

    def summary_only():
        s, _ = summary_loss(real, fake, SummaryConfig())
        s.backward()
        sync()

    t_s = median_time(summary_only, repeats)
    return {"width": width, "batch": batch, "device": device, "bf16": bf16,
            "critic_step_s": t_c, "generator_step_s": t_g, "generator_step_summary_s": t_gs,
            "summary_loss_s": t_s, "summary_overhead": t_gs / t_g - 1,
            "summary_share": t_s / t_g}


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


def critic_steps(width, batch, device, repeats):
    """Seconds per critic step (loss, backward, Adam) of lsscore's critic loss, the plain
    three-call step and the one-call step, on the same models and batches, interleaved."""
    torch.manual_seed(0)
    critic = Critic(width).to(device)
    opt = torch.optim.Adam(critic.parameters(), 1e-4, betas=(0.0, 0.9))
    real = torch.rand(batch, 1, 32, 32, 32, device=device) ** 4
    fake = torch.rand(batch, 1, 32, 32, 32, device=device) ** 4
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    losses = {"lsscore": lambda: critic_loss(critic, real, fake)[0],
              "plain": lambda: _plain_critic_loss(critic, real, fake),
              "one_call": lambda: _one_call_critic_loss(critic, real, fake)}

    def step(loss_fn):
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    times = {k: [] for k in losses}
    for k in losses:
        step(losses[k])
    for _ in range(repeats):
        for k, fn in losses.items():
            t0 = time.perf_counter()
            step(fn)
            times[k].append(time.perf_counter() - t0)
    t = {k: statistics.median(v) for k, v in times.items()}
    return {"width": width, "batch": batch, "device": device, "lsscore_s": t["lsscore"],
            "plain_s": t["plain"], "one_call_s": t["one_call"],
            "critic_vs_plain": t["lsscore"] / t["plain"] - 1,
            "one_call_vs_plain": t["one_call"] / t["plain"] - 1}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results_train_step.json"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    widths = (0.25,) if args.quick else (1.0, 0.25)
    repeats = 3 if args.quick else (5 if args.device == "cpu" else 20)
    rows = [steps(w, 16, args.device, args.bf16, repeats) for w in widths]
    print_table(rows, ["width", "batch", "device", "bf16", "critic_step_s", "generator_step_s",
                       "generator_step_summary_s", "summary_loss_s", "summary_overhead",
                       "summary_share"])
    critic_rows = [critic_steps(w, 16, args.device, 2 * repeats + 1) for w in widths]
    print()
    print_table(critic_rows, ["width", "batch", "device", "lsscore_s", "plain_s", "one_call_s",
                              "critic_vs_plain", "one_call_vs_plain"])
    write_json(args.out, {"rows": rows, "critic_rows": critic_rows})
    return rows + critic_rows


if __name__ == "__main__":
    main()
