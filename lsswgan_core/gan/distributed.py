"""Device choice and DistributedDataParallel for `lsscore train`.

Under `torchrun` (WORLD_SIZE > 1) the process group is gloo on the CPU and nccl on GPUs;
otherwise every method is a no-op, so the loop is written once for both.
"""
from __future__ import annotations

import datetime
import os

import torch


class DeviceError(RuntimeError):
    pass


def default_device() -> str:
    """The one default of every command and function that takes a device: cuda when torch
    sees a GPU, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def choose_device(device: str | None = None, local_rank: int = 0) -> str:
    """'cpu' or 'cuda:<local rank>'; None: the default device."""
    if device is None:
        device = default_device()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("--device cuda was asked for but torch sees no GPU")
        if device == "cuda":
            device = f"cuda:{local_rank}"
    elif device != "cpu":
        raise DeviceError(f"device must be cpu or cuda, got {device!r}")
    return device


def configure_cuda(device: str, tf32: bool) -> None:
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


class Distributed:
    """The process group under torchrun (WORLD_SIZE > 1), a no-op otherwise."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1
        # nccl reduces CUDA tensors only: the small collectives below run on this device
        self.device = torch.device("cuda", self.local_rank) if device.startswith("cuda") \
            else torch.device("cpu")
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            backend = "nccl" if device.startswith("cuda") else "gloo"
            if not dist.is_initialized():
                dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model, device):
        """The model under DistributedDataParallel (the generator; the critic is not wrapped,
        see `average_gradients`)."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

        ids = [torch.device(device).index] if device.startswith("cuda") else None
        return DistributedDataParallel(model, device_ids=ids)

    def broadcast_module(self, model) -> None:
        """Rank 0's parameters and buffers onto every rank (the replicas start equal)."""
        if not self.active:
            return
        import torch.distributed as dist  # noqa: PLC0415

        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, src=0)

    def average_gradients(self, model) -> None:
        """Every parameter gradient replaced by its mean over the ranks, in one flat
        all-reduce: what DistributedDataParallel does, for a model that it cannot wrap (the
        critic, whose loss calls it twice before one backward). Parameters without a
        gradient are skipped; every rank has the same set."""
        if not self.active:
            return
        import torch.distributed as dist  # noqa: PLC0415

        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def all_finite(self, *values: torch.Tensor) -> bool:
        ok = torch.tensor([float(all(bool(torch.isfinite(v).all()) for v in values))])
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            ok = ok.to(self.device)
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        return bool(ok.item() == 1.0)

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (one decision for all ranks)."""
        value = torch.tensor([float(flag)])
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            value = value.to(self.device)
            dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() == 1.0)

    def divergence(self, model) -> float:
        """Largest |difference| between this rank's parameters and rank 0's, over all ranks
        (0 when DDP keeps the replicas in step)."""
        if not self.active:
            return 0.0
        import torch.distributed as dist  # noqa: PLC0415

        flat = torch.cat([p.detach().flatten().float() for p in model.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max().reshape(1).to(self.device)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def barrier(self):
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            dist.barrier()

    def close(self):
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            if dist.is_initialized():
                dist.destroy_process_group()
