"""Power-spectrum benchmark on a 256^3 field and a batch of 16 x 32^3, 2 threads, medians:
ours against torch's bare rfftn (the floor), NumPy (np.fft.rfftn + np.bincount), pure torch
(torch.fft.rfftn + scatter_add) and, when installed, Pylians' Pk_library.Pk (benchmark only;
it counts each independent mode once, so its mode counts are about half ours and its P
equal: compared on P). Forward and forward+backward. A roofline column: the field's bytes
(read once) over our time, as a fraction of the machine's measured copy bandwidth. Thread
scaling: ours and the bare rfftn at 1, 2 and all cores on the large field.

    python bench/bm_power_spectrum.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (median_time, print_table, roofline, set_threads, thread_counts,  # noqa: E402
                     write_json)

from lsswgan_core import ops  # noqa: E402
from lsswgan_core.ops.power_spectrum import _mode_table  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).with_name("results_power_spectrum.json"))
    args = parser.parse_args(argv)
    set_threads(args.threads)
    try:
        import Pk_library
    except ImportError:
        Pk_library = None
        print("Pylians not installed (pip install pylians): its row is skipped")
    rng = np.random.default_rng(0)
    side = 128 if args.quick else 256
    box = 1000.0
    cases = [(f"{side}^3", rng.normal(size=(side,) * 3).astype(np.float32)),
             ("16 x 32^3", rng.normal(size=(16, 32, 32, 32)).astype(np.float32))]
    rows = []
    for name, field in cases:
        n = field.shape[-1]
        f = torch.from_numpy(field)
        index, weight, _, n_modes, _ = _mode_table(n, box, None, None)
        nbins = len(n_modes)
        keep = index >= 0
        idx_np, w_np = index[keep], weight[keep]
        idx_t = torch.from_numpy(index.clip(min=0))
        w_t = torch.from_numpy(np.where(keep, weight, 0.0)).float()
        scale = box**3 / n**6

        def numpy_pk():
            power = np.abs(np.fft.rfftn(field, axes=(-3, -2, -1))) ** 2
            power = power.reshape(*field.shape[:-3], -1)[..., keep]
            if power.ndim == 1:
                return scale * np.bincount(idx_np, power * w_np, nbins) / n_modes
            return np.stack([scale * np.bincount(idx_np, p * w_np, nbins) / n_modes for p in power])

        def torch_pk(x):
            power = torch.view_as_real(torch.fft.rfftn(x, dim=(-3, -2, -1))).square().sum(-1)
            power = power.reshape(*x.shape[:-3], -1) * w_t
            out = power.new_zeros((*x.shape[:-3], nbins + 1))
            out = out.scatter_add(-1, (idx_t + 1).expand_as(power) * torch.from_numpy(keep)
                                  .expand_as(power), power)
            return scale * out[..., 1:] / torch.from_numpy(n_modes).float()

        def fwd_bwd(fn):
            x = f.clone().requires_grad_()
            fn(x).sum().backward()

        ours = lambda x: ops.power_spectrum(x, box)[1]  # noqa: E731
        agree = bool(np.allclose(numpy_pk(), ours(f).numpy(), rtol=1e-3))
        t_fft = median_time(lambda: torch.fft.rfftn(f, dim=(-3, -2, -1)), 7)
        t_ours = median_time(lambda: ours(f), 7)
        timings = {"torch rfftn alone": t_fft, "ours": t_ours,
                   "numpy rfftn+bincount": median_time(numpy_pk, 3),
                   "torch rfftn+scatter_add": median_time(lambda: torch_pk(f), 5)}
        if Pk_library is not None and field.ndim == 3:
            def pylians():
                return Pk_library.Pk(field, box, axis=0, MAS="None", threads=args.threads,
                                     verbose=False)
            pk_py = pylians()
            ours_k, ours_p, _ = ops.power_spectrum(field, box)
            # Pylians bins [i, i+1) k_F starting at k_F as ours; compare where both are defined
            m = min(len(ours_p), len(pk_py.Pk[:, 0]))
            rel = np.abs(pk_py.Pk[:m, 0] / ours_p[:m] - 1)
            print(f"Pylians vs ours on {name}: max |P ratio - 1| over {m} bins = {rel.max():.2e}")
            timings["pylians Pk"] = median_time(pylians, 3)
        for impl, t in timings.items():
            rows.append({"case": name, "pass": "forward", "impl": impl, "ms": 1e3 * t,
                         "ratio to ours": t / t_ours, "agree": agree if impl == "ours" else None,
                         **({"of_copy": roofline(field.nbytes, t)["of_copy"]}
                            if impl == "ours" else {})})
        t_ours_b = median_time(lambda: fwd_bwd(ours), 5)
        t_torch_b = median_time(lambda: fwd_bwd(torch_pk), 5)
        rows.append({"case": name, "pass": "fwd+bwd", "impl": "ours", "ms": 1e3 * t_ours_b,
                     "ratio to ours": 1.0})
        rows.append({"case": name, "pass": "fwd+bwd", "impl": "torch rfftn+scatter_add",
                     "ms": 1e3 * t_torch_b, "ratio to ours": t_torch_b / t_ours_b})
    print_table(rows, ["case", "pass", "impl", "ms", "ratio to ours", "agree", "of_copy"])
    scaling = thread_scaling(torch.from_numpy(cases[0][1]), box, args.threads)
    print()
    print_table(scaling, ["case", "threads", "impl", "ms", "speedup vs 1 thread"])
    write_json(args.out, {"benchmark": "power_spectrum", "rows": rows, "threads": scaling})
    return rows + scaling


def thread_scaling(f: torch.Tensor, box: float, restore: int) -> list[dict]:
    """Ours and the bare rfftn at 1, 2 and all cores; speedups against 1 thread."""
    rows, base = [], {}
    for threads in thread_counts():
        torch.set_num_threads(threads)
        for impl, fn in (("ours", lambda: ops.power_spectrum(f, box)),
                         ("torch rfftn alone", lambda: torch.fft.rfftn(f, dim=(-3, -2, -1)))):
            t = median_time(fn, 5)
            base.setdefault(impl, t)
            rows.append({"case": f"{f.shape[-1]}^3", "threads": threads, "impl": impl,
                         "ms": 1e3 * t, "speedup vs 1 thread": base[impl] / t})
    torch.set_num_threads(restore)
    return rows


if __name__ == "__main__":
    main()
