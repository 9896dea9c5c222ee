"""The evaluation report (SPEC section 7): summaries of a real split and of as many generated
cubes, compared bin by bin, and the paper's figures.

All summaries are in physical units: x = rho/rhobar through the dataset's exact inverse
transform, k in h/Mpc with the stored cube size as the box.
    power spectrum   P(k) of delta = x / mean(x) - 1 per cube, (Mpc/h)^3, the default bins
    mass histogram   fraction of voxels per bin of log10 x (empty voxels, x = 0, fall out)
    peak histogram   peaks (strict maxima over 5^3, open boundary) per cube per bin of log10 x
    bispectrum       B(k1, k2, theta) of delta for a few (k1, k2) pairs, (Mpc/h)^6
For each: mean and standard deviation over the cubes, the compatibility per bin
|mu_f - mu_r| / sqrt(sigma_f^2 + sigma_r^2) (the paper's metric: below ~1 the generated
cubes are statistically compatible with the real ones in that bin) and the Frechet distance
between the per-cube summary vectors (log10 P for the spectrum). `compatibility_mean` is the
mean over the bins where the compatibility is finite (a bin where both sets have no spread
but different means has an infinite one and is left out of the mean, not of the plot data).

Figures (PNG): fig4_losses, fig5_duality_gap (from the run's metrics.jsonl), fig6_slices,
fig7_summaries, fig8_compatibility. What cannot be made (no checkpoint, no such split, no
metrics) is reported in `problems` and the rest is still made.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .data.transform import Transform
from .ops import find_peaks, power_spectrum
from .stats import bispectrum, compatibility, frechet_distance, overdensity

N_THETA = 9


def _hard_histogram(values: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Per-cube counts (b, nbins) of values (b, m) in the bins `edges` (NaN/-inf dropped)."""
    out = np.zeros((values.shape[0], len(edges) - 1))
    for i, v in enumerate(values.numpy()):
        v = v[np.isfinite(v)]
        out[i] = np.histogram(v, bins=edges)[0]
    return out


def summaries(x: np.ndarray, cube_size: float, edges: np.ndarray, pairs) -> dict:
    """Per-cube summaries of physical cubes x (b, n, n, n) = rho/rhobar."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    n = t.shape[-1]
    delta = overdensity(t)
    k, pk, n_modes = power_spectrum(delta, cube_size)
    log_x = torch.log10(t.clamp(min=0)).flatten(1)                       # x = 0 -> -inf, dropped
    mass = _hard_histogram(log_x, edges) / n**3
    peaks = find_peaks(t, radius=2, boundary="open").flatten(1)
    peak_values = torch.where(peaks, log_x, torch.full_like(log_x, -math.inf))
    peak = _hard_histogram(peak_values, edges)
    theta = np.linspace(0.05, 0.95, N_THETA) * math.pi
    bis = np.stack([bispectrum(delta, cube_size, k1, k2, theta).numpy() for k1, k2 in pairs], 1)
    return {"k": k.numpy(), "n_modes": n_modes.numpy(), "power_spectrum": pk.numpy(),
            "mass_histogram": mass, "peak_histogram": peak, "bispectrum": bis, "theta": theta}


def _stats_block(real: np.ndarray, fake: np.ndarray, log: bool = False) -> dict:
    finite = np.isfinite(real).all(0) & np.isfinite(fake).all(0)
    r, f = real[:, finite], fake[:, finite]
    comp = np.full(real.shape[1:], np.nan)
    comp[finite] = compatibility(r, f)
    if log:
        r, f = np.log10(np.clip(r, 1e-30, None)), np.log10(np.clip(f, 1e-30, None))
    fd = float(frechet_distance(r.reshape(len(r), -1), f.reshape(len(f), -1))) if r.size else math.nan
    with np.errstate(invalid="ignore"):
        return {"real_mean": real.mean(0), "real_std": real.std(0, ddof=1),
                "fake_mean": fake.mean(0), "fake_std": fake.std(0, ddof=1),
                "compatibility": comp,
                "compatibility_mean": float(np.nanmean(comp[np.isfinite(comp)]))
                if np.isfinite(comp).any() else math.nan,
                "frechet_distance": fd}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def load_split(data, split: str):
    """(physical cubes (M, n, n, n) float64, attributes, transform) of a dataset split."""
    import h5py  # noqa: PLC0415

    with h5py.File(data, "r") as f:
        if split not in f:
            raise KeyError(f"{data} has no split {split!r} (it has {', '.join(sorted(f.keys()))})")
        if f[split].shape[0] < 2:
            raise KeyError(f"{data}: the {split!r} split has {f[split].shape[0]} cubes; "
                           "at least 2 are needed for means and spreads")
        y = f[split][...].astype(np.float64)
        attrs = dict(f.attrs)
    transform = Transform.from_attrs(attrs)
    return transform.inverse(y), attrs, transform


def evaluate(checkpoint, data, out, *, split: str = "val", n: int | None = None,
             seed: int = 0, device: str = "cpu", run_dir=None, show_progress: bool = False) -> dict:
    """Write metrics.json and the figures into `out`; returns the metrics dictionary
    (with `problems`: what could not be done)."""
    from .sample import generate  # noqa: PLC0415
    from .train import read_metrics  # noqa: PLC0415

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint)
    run_dir = Path(run_dir) if run_dir is not None else checkpoint.parent.parent
    problems, metrics, figures = [], {"checkpoint": str(checkpoint), "data": str(data),
                                      "split": split}, []

    records = []
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.is_file():
        records = read_metrics(metrics_path)
    else:
        problems.append(f"{metrics_path} not found: no loss or duality-gap figures")

    real = attrs = None
    try:
        real, attrs, _ = load_split(data, split)
    except (OSError, KeyError, ValueError) as exc:
        problems.append(f"dataset: {exc.args[0] if exc.args else exc}")
    fake = None
    if real is not None:
        try:
            want = n or len(real)
            fake, _, rate = generate(checkpoint, want, physical=True, seed=seed, device=device,
                                     show_progress=show_progress)
            fake = fake.astype(np.float64)
            metrics["cubes_per_second"] = rate
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"checkpoint: {exc}")

    if real is not None and fake is not None:
        cube_size = float(attrs["cube_size"])
        k_f = 2 * math.pi / cube_size
        n_side = real.shape[-1]
        pairs = [(3 * k_f, 3 * k_f), (3 * k_f, 6 * k_f)] if n_side >= 16 else [(k_f, k_f)]
        positive = real[real > 0]
        lo = math.floor(10 * math.log10(positive.min())) / 10 if positive.size else -1.0
        hi = math.ceil(10 * math.log10(max(float(real.max()), float(fake.max()), 1.0))) / 10
        edges = np.linspace(lo, hi, 31)
        try:
            s_real = summaries(real, cube_size, edges, pairs)
            s_fake = summaries(fake, cube_size, edges, pairs)
        except ValueError as exc:   # e.g. an empty generated cube has no overdensity
            problems.append(f"summaries: {exc}")
            fake = None
    if real is not None and fake is not None:
        metrics.update({"n_real": len(real), "n_fake": len(fake), "cube_size": cube_size,
                        "k": s_real["k"], "n_modes": s_real["n_modes"], "log10_x_edges": edges,
                        "bispectrum_pairs": pairs, "theta": s_real["theta"]})
        metrics["summaries"] = {
            name: _stats_block(s_real[name], s_fake[name], log=(name == "power_spectrum"))
            for name in ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum")}
        from . import figures as fig  # noqa: PLC0415

        figures.append(fig.slices(real, fake, out / "fig6_slices.png"))
        figures.append(fig.summaries(metrics, out / "fig7_summaries.png"))
        figures.append(fig.compatibility(metrics, out / "fig8_compatibility.png"))

    if records:
        from . import figures as fig  # noqa: PLC0415

        figures.append(fig.losses(records, out / "fig4_losses.png"))
        path = fig.duality_gap(records, out / "fig5_duality_gap.png")
        if path is None:
            problems.append("the run's metrics hold no duality gap: no Fig. 5")
        else:
            figures.append(path)
        dg = [(r["epoch"], r["duality_gap"]) for r in records if "duality_gap" in r]
        metrics["duality_gap"] = dg
        metrics["training"] = {"epochs": max((r.get("epoch", 0) for r in records), default=0),
                               "generator_steps": max((r.get("step", 0) for r in records), default=0),
                               "seconds": max((r.get("elapsed", 0) for r in records), default=0)}
    metrics["figures"] = [str(p) for p in figures if p is not None]
    metrics["problems"] = problems
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1))
    return metrics
