"""Power-spectrum benchmark on a 256^3 field and a batch of 16 x 32^3: ours against torch's bare
rfftn (the floor), NumPy (np.fft.rfftn + np.bincount), plain torch on the device
(torch.fft.rfftn + bincount, or scatter_add for a batch and for the backward) and, when
installed, Pylians' Pk_library.Pk (benchmark only; it counts each independent mode once, so
its mode counts are about half ours and its P equal: compared on P, the `pylians max |dP/P|`
column). Forward, and forward+backward against the differentiable torch version. Reference:
the plain-torch P(k) with the same bins. A roofline column: the field's bytes (read once) over
our time, as a fraction of the measured copy bandwidth. On the CPU, thread scaling: ours and
the bare rfftn at 1, 2 and all cores on the large field.

    python bench/bm_power_spectrum.py [--device cpu|cuda] [--quick]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Entry, Impl, main, register, with_backward  # noqa: E402

from lsswgan_core import ops  # noqa: E402
from lsswgan_core.ops.power_spectrum import _mode_table  # noqa: E402

BOX = 1000.0


class Bins:
    """ours' k bins for an n^3 grid, as the baselines use them: the mode table is built once
    outside the timing, as a user would."""

    def __init__(self, n: int, device):
        index, weight, _, n_modes, _ = _mode_table(n, BOX, None, None)
        self.keep = index >= 0
        self.index, self.weight, self.n_modes = index[self.keep], weight[self.keep], n_modes
        self.scale = BOX**3 / n**6
        self.nbins = len(n_modes)
        # torch: bin 0 collects the modes left out
        self.idx = torch.as_tensor(np.where(self.keep, index + 1, 0), device=device)
        self.w = torch.as_tensor(np.where(self.keep, weight, 0.0), dtype=torch.float32,
                                 device=device)
        self.inv = torch.as_tensor(self.scale / np.maximum(n_modes, 1), dtype=torch.float32,
                                   device=device)

    def numpy_pk(self, field: np.ndarray) -> np.ndarray:
        """np.fft.rfftn + np.bincount, one field or a batch."""
        power = np.abs(np.fft.rfftn(field, axes=(-3, -2, -1))) ** 2
        power = power.reshape(-1, power.shape[-3] * power.shape[-2] * power.shape[-1])
        binned = np.stack([np.bincount(self.index, p[self.keep] * self.weight, self.nbins)
                           for p in power])
        binned = self.scale * binned / self.n_modes
        return binned[0] if field.ndim == 3 else binned

    def torch_pk(self, x: torch.Tensor) -> torch.Tensor:
        """torch.fft.rfftn + torch.bincount (one field, no gradient) or scatter_add."""
        power = torch.view_as_real(torch.fft.rfftn(x, dim=(-3, -2, -1))).square().sum(-1)
        power = power.reshape(*x.shape[:-3], -1) * self.w
        if x.ndim == 3 and not x.requires_grad:
            return torch.bincount(self.idx, weights=power, minlength=self.nbins + 1)[1:] * self.inv
        out = power.new_zeros((*x.shape[:-3], self.nbins + 1))
        return out.scatter_add(-1, self.idx.expand_as(power), power)[..., 1:] * self.inv


def pylians_check(pk_library, threads):
    """Pylians' P against ours on the bins both define: the largest |P ratio - 1|."""
    def extra(x):
        pk = pk_library.Pk(x["field"], BOX, axis=0, MAS="None", threads=threads, verbose=False)
        ours = ops.power_spectrum(x["field"], BOX)[1]
        m = min(len(ours), len(pk.Pk[:, 0]))
        return {"pylians max |dP/P|": float(np.abs(pk.Pk[:m, 0] / ours[:m] - 1).max())}
    return extra


@register("power_spectrum")
def entries(opts):
    try:
        import Pk_library
    except ImportError:
        Pk_library = None
        print("Pylians not installed (pip install pylians): its row is skipped")
    rng = np.random.default_rng(0)
    side, batch = (64, 4) if opts.quick else (256, 16)
    cases = [(f"{side}^3", rng.normal(size=(side,) * 3).astype(np.float32)),
             (f"{batch} x 32^3", rng.normal(size=(batch, 32, 32, 32)).astype(np.float32))]
    ours = lambda x: ops.power_spectrum(x["t"], BOX)[1]  # noqa: E731
    for name, field in cases:
        one = field.ndim == 3

        def setup(device, field=field):
            return {"field": field, "t": torch.from_numpy(field).to(device),
                    "bins": Bins(field.shape[-1], device)}

        pylians = [Impl("pylians Pk", lambda x: Pk_library.Pk(
            x["field"], BOX, axis=0, MAS="None", threads=opts.threads, verbose=False),
            host=True, slow=True)] if Pk_library is not None and one else []
        yield Entry(
            case={"case": name, "pass": "forward"}, setup=setup, ours=ours,
            baselines=[Impl("torch rfftn alone",
                            lambda x: torch.fft.rfftn(x["t"], dim=(-3, -2, -1)), scale=True),
                       Impl("numpy rfftn+bincount", lambda x: x["bins"].numpy_pk(x["field"]),
                            host=True, slow=True),
                       Impl("torch rfftn+" + ("bincount" if one else "scatter_add"),
                            lambda x: x["bins"].torch_pk(x["t"])),
                       *pylians],
            reference=lambda x: x["bins"].torch_pk(x["t"]),
            bytes=lambda x: x["field"].nbytes, scale_threads=one,
            extra=pylians_check(Pk_library, opts.threads) if pylians else None)
        yield Entry(
            case={"case": name, "pass": "fwd+bwd"}, setup=setup,
            ours=lambda x: with_backward(lambda t: ops.power_spectrum(t, BOX)[1])(x["t"]),
            baselines=[Impl("torch rfftn+scatter_add",
                            lambda x: with_backward(x["bins"].torch_pk)(x["t"]))])


if __name__ == "__main__":
    main("power_spectrum", doc=__doc__)
