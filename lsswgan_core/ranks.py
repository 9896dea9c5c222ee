"""The ranks of `torchrun` for the commands that split work without training (`preprocess`,
`sample`): who am I, and a few small collectives that never leave a rank waiting alone.

Under torchrun (WORLD_SIZE > 1) a gloo process group carries Python objects (listings,
maxima, error messages) on the CPU, whatever device the work runs on; otherwise every
method is the identity, so a command is written once and plain `lsscore` runs exactly as
before. Every collective here is entered by every rank in the same order: a rank that fails
records its error (`Ranks.step`), enters the next collective anyway, and then all ranks raise
the same `RankError`, naming the first rank that failed. A failure therefore stops every
rank with one message instead of leaving the others waiting for a collective.

The group's timeout is long (a rank may paint for hours before the next collective); a rank
that dies is noticed by torchrun, which stops the others.

A leaf: imports nothing of the package.
"""
from __future__ import annotations

import datetime
import os
import socket

GROUP_TIMEOUT = datetime.timedelta(hours=24)


class RankError(ValueError):
    """What one rank failed at, raised on every rank. `reporter` is true on the one rank
    that should print it (rank 0), so the message appears once."""

    def __init__(self, message: str, reporter: bool = True):
        super().__init__(message)
        self.reporter = reporter


class Ranks:
    """This process's rank and the world's size from torchrun's environment; the process group
    (gloo) when there is more than one rank."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.active = self.world > 1
        self._owned = False
        if self.active:
            import torch.distributed as dist  # noqa: PLC0415

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=GROUP_TIMEOUT)
                self._owned = True
            self._group = dist.new_group(backend="gloo") \
                if dist.get_backend() != "gloo" else None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, count: int) -> list[int]:
        """The indices among range(count) this rank does: round robin (i % world == rank)."""
        return list(range(self.rank, count, self.world))

    def gather(self, value) -> list:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        if not self.active:
            return [value]
        import torch.distributed as dist  # noqa: PLC0415

        values = [None] * self.world
        dist.all_gather_object(values, value, group=self._group)
        return values

    def gather_to_main(self, value) -> list | None:
        """Every rank's `value` (picklable) in rank order on rank 0; None on the others."""
        if not self.active:
            return [value]
        import torch.distributed as dist  # noqa: PLC0415

        values = [None] * self.world if self.main else None
        dist.gather_object(value, values, dst=0, group=self._group)
        return values

    def agree(self, error: str | None) -> None:
        """Raises RankError on every rank when any rank passes an error (the lowest rank's,
        with its rank and host); returns on every rank otherwise."""
        errors = self.gather(error)
        for rank, message in enumerate(errors):
            if message is not None:
                raise RankError(message, reporter=self.main)

    def step(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) on this rank, then one agreement: every rank returns its own
        result, or every rank raises the first failing rank's error. A single process calls
        fn and lets its exceptions through unchanged."""
        if not self.active:
            return fn(*args, **kwargs)
        result, error = None, None
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:   # noqa: BLE001 - every failure must reach the other ranks
            error = f"rank {self.rank} of {self.world} ({socket.gethostname()}): {exc}"
        self.agree(error)
        return result

    def maximum(self, value: float | None) -> float | None:
        """The largest of the ranks' values (None: this rank has none); None when no rank has
        one. Exact: the floats travel as Python objects."""
        values = [v for v in self.gather(value) if v is not None]
        return max(values) if values else None

    def close(self) -> None:
        if self._owned:
            import torch.distributed as dist  # noqa: PLC0415

            if dist.is_initialized():
                dist.destroy_process_group()
            self._owned = False
