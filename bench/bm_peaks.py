"""Peak-finding benchmark: find_peaks (radius 2) against scipy.ndimage.maximum_filter and a
plain-torch max_pool3d, on 256^3 fields (lognormal white noise, where every voxel is its own
structure, and a smooth Gaussian-filtered field; periodic) and a batch of 16 x 32^3 cubes
(open boundary). SciPy is benchmark-only. Ours has a roofline column: the field read once and
the mask written once, over its time, as a fraction of the measured copy bandwidth.

  scipy strict:     maximum_filter with the 5^3 footprint minus its centre, then
                    `field > max` (the same answer as ours: the reference)
  scipy size=5:     maximum_filter(size=5), then `field == max` (plateaus count: a lower
                    bound on what SciPy can do)
  torch max_pool3d: circular (or -inf) padding, max_pool3d(5, stride 1), `field == max`
                    (non-strict as well), on the device

    python bench/bm_peaks.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register  # noqa: E402

from lsswgan_core import ops  # noqa: E402

RADIUS = 2


def maxpool_peaks(x: torch.Tensor, boundary: str) -> torch.Tensor:
    """Local maxima over 5^3 in plain torch (non-strict); x: (n, n, n) or (b, n, n, n)."""
    v = x.reshape(-1, 1, *x.shape[-3:])
    if boundary == "periodic":
        v = torch.nn.functional.pad(v, (RADIUS,) * 6, mode="circular")
    else:
        v = torch.nn.functional.pad(v, (RADIUS,) * 6, value=-float("inf"))
    return torch.nn.functional.max_pool3d(v, 2 * RADIUS + 1, stride=1).view(x.shape) == x


def scipy_peaks(ndimage, field: np.ndarray, boundary: str, strict: bool) -> np.ndarray:
    mode = "wrap" if boundary == "periodic" else "constant"
    footprint = np.ones((2 * RADIUS + 1,) * 3, dtype=bool)
    footprint[RADIUS, RADIUS, RADIUS] = not strict   # strict: the centre left out

    def filt(f):
        m = ndimage.maximum_filter(f, footprint=footprint, mode=mode, cval=-np.inf)
        return f > m if strict else f == m

    return filt(field) if field.ndim == 3 else np.stack([filt(f) for f in field])


def fields(side: int, batch: int, ndimage) -> list[tuple[str, np.ndarray, str]]:
    rng = np.random.default_rng(0)
    white = np.exp(rng.normal(size=(side,) * 3)).astype(np.float32)
    smooth = rng.normal(size=(side,) * 3)
    if ndimage is not None:
        smooth = ndimage.gaussian_filter(smooth, 4.0, mode="wrap")
    else:  # the same idea without SciPy: a 9^3 box average by rolled sums
        for axis in range(3):
            smooth = sum(np.roll(smooth, s, axis=axis) for s in range(-4, 5)) / 9
    return [(f"{side}^3 periodic, white noise", white, "periodic"),
            (f"{side}^3 periodic, smooth", smooth.astype(np.float32), "periodic"),
            (f"{batch} x 32^3 open", rng.normal(size=(batch, 32, 32, 32)).astype(np.float32),
             "open")]


@register("find_peaks")
def entries(opts):
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None
        print("SciPy not installed: no SciPy baseline and no reference")
    side, batch = (64, 4) if opts.quick else (256, 16)
    for name, field, boundary in fields(side, batch, ndimage):
        scipy = [] if ndimage is None else [
            Impl("scipy strict footprint",
                 lambda x: scipy_peaks(ndimage, x["field"], x["boundary"], True), host=True),
            Impl("scipy size=5 (non-strict)",
                 lambda x: scipy_peaks(ndimage, x["field"], x["boundary"], False), host=True)]
        yield Entry(
            case={"case": name},
            setup=lambda device, f=field, b=boundary: {
                "field": f, "t": torch.from_numpy(f).to(device), "boundary": b},
            ours=lambda x: ops.find_peaks(x["t"], radius=RADIUS, boundary=x["boundary"]),
            baselines=[*scipy, Impl("torch max_pool3d (non-strict)",
                                    lambda x: maxpool_peaks(x["t"], x["boundary"]))],
            reference=None if ndimage is None else (
                lambda x: scipy_peaks(ndimage, x["field"], x["boundary"], True)),
            bytes=lambda x: x["field"].nbytes + x["field"].size,
            extra=lambda x: {"peaks": int(ops.find_peaks(x["t"], RADIUS, x["boundary"]).sum())})


if __name__ == "__main__":
    main("find_peaks", doc=__doc__)
