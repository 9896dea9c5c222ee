"""Runs every benchmark and writes bench/results.json (one entry per benchmark).

    python bench/run.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bm_histogram  # noqa: E402
import bm_paint  # noqa: E402
import bm_peaks  # noqa: E402
import bm_power_spectrum  # noqa: E402
import bm_train_step  # noqa: E402
from _common import machine  # noqa: E402

BENCHMARKS = {"paint": bm_paint, "find_peaks": bm_peaks, "power_spectrum": bm_power_spectrum,
              "soft_histogram": bm_histogram, "train_step": bm_train_step}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), nargs="*")
    args = parser.parse_args()
    results = {"machine": machine()}
    for name, module in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ===")
        argv = ["--quick"] if args.quick else []
        results[name] = module.main(argv + ["--out", str(HERE / f"results_{name}.json")])
    out = HERE / "results.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
