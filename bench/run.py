"""Runs the registry: every benchmark's entries on one device, with the one timer, and writes
bench/results.json (one payload per benchmark). bm_preprocess runs only when named in --only.

    python bench/run.py [--device cpu|cuda] [--quick] [--only paint find_peaks ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bm_histogram  # noqa: E402
import bm_paint  # noqa: E402
import bm_peaks  # noqa: E402
import bm_power_spectrum  # noqa: E402
import bm_preprocess  # noqa: E402
import bm_train_step  # noqa: E402
from _common import REGISTRY, add_arguments, options, run, write_json  # noqa: E402

# importing a bm module registers its entries; they run in this order
MODULES = (bm_paint, bm_peaks, bm_power_spectrum, bm_histogram, bm_train_step, bm_preprocess)
ORDER = ("paint", "find_peaks", "power_spectrum", "soft_histogram", "train_step", "preprocess")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--only", choices=sorted(REGISTRY), nargs="*")
    args = parser.parse_args(argv)
    opts = options(args, "bench/run.py")
    names = args.only or [name for name in ORDER if REGISTRY[name].in_all]
    results = {}
    for name in names:
        print(f"\n=== {name} ({opts.device}{', quick' if opts.quick else ''}) ===", flush=True)
        results[name] = run(REGISTRY[name], opts)
    write_json(args.out or HERE / "results.json", {"device": str(opts.device), **results})
    return results


if __name__ == "__main__":
    main()
