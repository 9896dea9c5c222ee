"""Run under `torchrun --nproc-per-node 2`: the critic loss with its gradient penalty, its
gradients averaged over the ranks as the training loop does (`Distributed.average_gradients`,
not DistributedDataParallel), must give every rank the gradient that one process computes on
the union of the ranks' batches (the mean of the per-rank gradients). Exits non-zero and
says why when it does not."""
import copy
import sys

import torch
import torch.distributed as dist

from lsswgan_core.gan.distributed import Distributed
from lsswgan_core.gan.losses import critic_loss
from lsswgan_core.gan.models import Critic


def batches(rank):
    g = torch.Generator().manual_seed(100 + rank)
    return torch.rand(3, 1, 32, 32, 32, generator=g), torch.rand(3, 1, 32, 32, 32, generator=g)


def main():
    group = Distributed("cpu")        # gloo, from torchrun's environment
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)           # different replicas: broadcast_module must align them
    critic = Critic(width=0.125, minibatch_std=True)
    group.broadcast_module(critic)
    reference = copy.deepcopy(critic)
    real, fake = batches(rank)
    loss, _, gp = critic_loss(critic, real, fake, 10.0, torch.Generator().manual_seed(7 + rank))
    loss.backward()
    group.average_gradients(critic)
    assert gp > 0
    # one process, every rank's batch with the same interpolation draws, averaged
    total = 0
    for r in range(world):
        ref = copy.deepcopy(reference)
        real_r, fake_r = batches(r)
        loss_r, _, _ = critic_loss(ref, real_r, fake_r, 10.0, torch.Generator().manual_seed(7 + r))
        loss_r.backward()
        grads = [p.grad for p in ref.parameters()]
        total = grads if total == 0 else [a + b for a, b in zip(total, grads)]
    worst = max(float((p.grad - t / world).abs().max() / (t / world).abs().max().clamp_min(1e-12))
                for p, t in zip(critic.parameters(), total))
    print(f"rank {rank}: largest relative gradient difference {worst:.2e}")
    dist.destroy_process_group()
    sys.exit(0 if worst < 1e-4 else 1)


if __name__ == "__main__":
    main()
