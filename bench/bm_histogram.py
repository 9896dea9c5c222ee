"""Soft-histogram benchmark: ours against a plain-torch two-scatter_add version (forward and
forward+backward; also the reference) and np.histogram (a hard histogram, for scale), on a
256^3 field's values and a batch of 16 x 32^3, 64 bins. Ours has a roofline column:
compulsory bytes (values read once, the histogram and, backward, the values' gradient
written once) over its time, as a fraction of the measured copy bandwidth.

    python bench/bm_histogram.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register, with_backward  # noqa: E402

from lsswgan_core import ops  # noqa: E402

NBINS = 64


def torch_soft_histogram(values, lo, hi, nbins):
    """The same triangle kernel in plain torch: two scatter_adds."""
    width = (hi - lo) / nbins
    inside = (values >= lo) & (values <= hi)
    s = ((values - lo) / width - 0.5).clamp(0, nbins - 1)
    j0 = s.floor().clamp(max=nbins - 2).long()
    f = s - j0
    w = inside.to(values.dtype)
    out = values.new_zeros((*values.shape[:-1], nbins))
    out = out.scatter_add(-1, j0, w * (1 - f))
    return out.scatter_add(-1, j0 + 1, w * f)


@register("soft_histogram")
def entries(opts):
    rng = np.random.default_rng(0)
    side, batch = (64, 4) if opts.quick else (256, 16)
    cases = [(f"{side}^3", rng.uniform(0, 1, (1, side**3)).astype(np.float32)),
             (f"{batch} x 32^3", rng.uniform(0, 1, (batch, 32**3)).astype(np.float32))]
    for name, values in cases:
        hist_bytes = values.shape[0] * NBINS * values.itemsize

        def setup(device, values=values):
            return {"values": values, "t": torch.from_numpy(values).to(device)}

        yield Entry(
            case={"case": name, "pass": "forward"}, setup=setup,
            ours=lambda x: ops.soft_histogram(x["t"], 0.0, 1.0, NBINS),
            baselines=[Impl("torch 2x scatter_add",
                            lambda x: torch_soft_histogram(x["t"], 0.0, 1.0, NBINS)),
                       Impl("np.histogram (hard)", lambda x: [
                           np.histogram(r, bins=NBINS, range=(0, 1)) for r in x["values"]],
                           host=True, slow=True)],
            reference=lambda x: torch_soft_histogram(x["t"], 0.0, 1.0, NBINS),
            bytes=lambda x, h=hist_bytes: x["values"].nbytes + h)
        yield Entry(
            case={"case": name, "pass": "fwd+bwd"}, setup=setup,
            ours=lambda x: with_backward(ops.soft_histogram)(x["t"], 0.0, 1.0, NBINS),
            baselines=[Impl("torch 2x scatter_add", lambda x: with_backward(
                torch_soft_histogram)(x["t"], 0.0, 1.0, NBINS))],
            bytes=lambda x, h=hist_bytes: 2 * x["values"].nbytes + h)


if __name__ == "__main__":
    main("soft_histogram", doc=__doc__)
