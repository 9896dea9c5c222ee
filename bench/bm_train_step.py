"""Training-step benchmark: seconds per critic step (generator forward, critic loss with the
gradient penalty, backward, Adam) and per generator step, with and without the summary
loss, at width 1 (the paper) and 1/4 (the demo), batch 16, medians. The ratio
`summary_overhead` = (generator step with S) / (generator step without) - 1 is the cost
of the summary loss (target: at most 0.15); `summary_share` = (the summary loss alone,
forward and backward) / (a generator step without it), the same cost measured directly
and less exposed to the step's timing noise.

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
from lsswgan_core.losses import critic_loss, summary_loss  # noqa: E402
from lsswgan_core.models import Critic, Generator  # noqa: E402


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
    write_json(args.out, {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
