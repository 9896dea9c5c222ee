"""The whole-box generator's calibrated start, before any training step, for each large-scale
input: what `calibrate_input` and `match_output` alone give (the numbers the demo's training
does not move, docs/fidelity.md).

For each input and seed: `lsscore train` with configs/demo.toml and that input, stopped after
its first epoch, then `lsscore evaluate` of its epoch-0 checkpoint (written before the first
step) on the chosen split, cube level and box level (64^3 boxes only). Prints one line per run
and the largest/smallest ratio of the input's filter T(k).

    python bench/box_starts.py --data demo/dataset.h5 --split dg --seeds 0 1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bm_fidelity import box_columns  # noqa: E402

from lsswgan_core.config import load_config, override  # noqa: E402
from lsswgan_core.evaluation.evaluate import evaluate  # noqa: E402
from lsswgan_core.gan.run import load_checkpoint  # noqa: E402
from lsswgan_core.gan.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", default="dg", help="dg for choosing, val for the report")
    ap.add_argument("--inputs", nargs="+", default=["data", "lpt"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=Path("box_starts"))
    args = ap.parse_args()
    rows = []
    for source in args.inputs:
        for seed in args.seeds:
            cfg = override(load_config(ROOT / "configs" / "demo.toml"),
                           [f'model.box_input="{source}"', "train.time_limit=1",
                            "duality_gap.enabled=false", "evaluate.box_sizes=[1]",
                            f"train.seed={seed}"])
            run = args.out / f"{source}_{seed}"
            train(args.data, run, cfg, show_progress=False)
            start = run / "checkpoints" / "epoch_00000.pt"
            m = evaluate(start, args.data, run / f"report_{args.split}", split=args.split,
                         seed=seed)
            s, c = m["summaries"], m["power_spectrum_checks"]
            t = load_checkpoint(start)["generator"]["filter_t"]
            row = {"input": source, "seed": seed,
                   **{n: round(s[n]["compatibility_mean"], 3) for n in
                      ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum")},
                   "p_ratio": [round(c["ratio_min_below_nyquist"], 2),
                               round(c["ratio_max_below_nyquist"], 2)],
                   "diversity": round(s["power_spectrum"]["diversity_median"], 2),
                   **{k: round(v, 3) for k, v in box_columns(m).items()},
                   "spread_ratio": m["boxes"].get("spread_ratio"),
                   "filter_max_over_min": round(float(t.max() / t.min()), 2),
                   "slices": str(run / f"report_{args.split}" / "box_slices.png")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
