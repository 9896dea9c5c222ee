"""The evaluation report (`lsscore evaluate`): summaries of a real split and of as many generated
cubes, compared bin by bin, and the paper's figures.

All summaries are in physical units: x = rho/rhobar through the dataset's exact inverse
transform, k in h/Mpc with the stored cube size as the box.
    power spectrum   P(k) of delta = x - 1 (rhobar the simulation's mean, not the cube's: a
                     brightness bias shows), (Mpc/h)^3, bins [i k_F, (i+1) k_F) up to the
                     cube's corner sqrt(3) k_Nyq (every mode, the period-2 ones included)
    mass histogram   fraction of voxels per bin of log10 x (empty voxels, x = 0, fall out)
    peak histogram   peaks (strict maxima over 5^3, open boundary) per cube per bin of log10 x
    bispectrum       B(k1, k2, theta) of delta for a few (k1, k2) pairs, (Mpc/h)^6
For each: mean and standard deviation over the cubes, the ratio of the means, the diversity
sigma_gen / sigma_real per bin (a collapsed generator shows as << 1), the compatibility per bin
|mu_f - mu_r| / sqrt(sigma_f^2 + sigma_r^2) (the paper's metric: below ~1 the generated
cubes are statistically compatible with the real ones in that bin) and the Frechet distance
between the per-cube summary vectors (log10 P for the spectrum). `compatibility_mean` is the
mean over the bins where the compatibility is finite (a bin where both sets have no spread
but different means has an infinite one and is left out of the mean, not of the plot data).

For P(k) also (`power_spectrum_checks`): k_Nyq, the range of P_gen / P_real below it, and the
checkerboard indicator (generated over real power in the shells |n| >= n/2).

Figures (PNG): fig4_losses, fig5_duality_gap (from the run's metrics.jsonl), fig6_slices,
fig7_summaries, fig8_compatibility. What cannot be made (no checkpoint, no such split, no
metrics) is reported in `problems` and the rest is still made.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..config import EvaluateConfig
from ..data.dataset import Dataset, DatasetError
from ..files import write_text
from ..ops import find_peaks, power_spectrum
from ..gan.run import RunDir, RunError, config_of_checkpoint, load_checkpoint, read_metrics
from ..gan.sample import generate
from ..stats import bispectrum, compatibility, frechet_distance


def _hard_histogram(values: torch.Tensor, edges: np.ndarray) -> np.ndarray:
    """Per-cube counts (b, nbins) of values (b, m) in the bins `edges` (NaN/-inf dropped)."""
    out = np.zeros((values.shape[0], len(edges) - 1))
    for i, v in enumerate(values.numpy()):
        v = v[np.isfinite(v)]
        out[i] = np.histogram(v, bins=edges)[0]
    return out


def summaries(x: np.ndarray, cube_size: float, edges: np.ndarray, pairs, peak_radius: int = 2,
              n_theta: int = 9) -> dict:
    """Per-cube summaries of physical cubes x (b, n, n, n) = rho/rhobar, rhobar the mean of
    the simulation the cube was cut from (so delta = x - 1 keeps a cube's brightness)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
    n = t.shape[-1]
    delta = t - 1.0
    k, pk, n_modes = power_spectrum(delta, cube_size, bins="corner")
    log_x = torch.log10(t.clamp(min=0)).flatten(1)                       # x = 0 -> -inf, dropped
    mass = _hard_histogram(log_x, edges) / n**3
    peaks = find_peaks(t, radius=peak_radius, boundary="open").flatten(1)
    peak_values = torch.where(peaks, log_x, torch.full_like(log_x, -math.inf))
    peak = _hard_histogram(peak_values, edges)
    theta = np.linspace(0.05, 0.95, n_theta) * math.pi
    bis = np.stack([bispectrum(delta, cube_size, k1, k2, theta).numpy() for k1, k2 in pairs], 1)
    return {"k": k.numpy(), "n_modes": n_modes.numpy(), "power_spectrum": pk.numpy(),
            "mass_histogram": mass, "peak_histogram": peak, "bispectrum": bis, "theta": theta}


def _stats_block(real: np.ndarray, fake: np.ndarray, log: bool = False) -> dict:
    """Mean and spread of both sets per bin, the compatibility, the ratio of the means, the
    diversity sigma_fake / sigma_real (collapse shows as << 1) and the Frechet distance."""
    finite = np.isfinite(real).all(0) & np.isfinite(fake).all(0)
    r, f = real[:, finite], fake[:, finite]
    comp = np.full(real.shape[1:], np.nan)
    comp[finite] = compatibility(r, f)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu_r, mu_f = real.mean(0), fake.mean(0)
        sd_r, sd_f = real.std(0, ddof=1), fake.std(0, ddof=1)
        ratio = np.where(mu_r != 0, mu_f / mu_r, np.nan)
        diversity = np.where(sd_r > 0, sd_f / sd_r, np.nan)
    if log:
        r, f = np.log10(np.clip(r, 1e-30, None)), np.log10(np.clip(f, 1e-30, None))
    fd = float(frechet_distance(r.reshape(len(r), -1), f.reshape(len(f), -1))) if r.size else math.nan
    ok_div = diversity[np.isfinite(diversity)]
    return {"real_mean": mu_r, "real_std": sd_r, "fake_mean": mu_f, "fake_std": sd_f,
            "compatibility": comp,
            "compatibility_mean": float(np.nanmean(comp[np.isfinite(comp)]))
            if np.isfinite(comp).any() else math.nan,
            "ratio": ratio, "diversity": diversity,
            "diversity_median": float(np.median(ok_div)) if ok_div.size else math.nan,
            "frechet_distance": fd}


def spectrum_checks(k: np.ndarray, n_modes: np.ndarray, block: dict, n: int,
                    cube_size: float) -> dict:
    """The P(k) figures of merit: the largest |P_gen / P_real - 1| over the bins below k_Nyq,
    and the checkerboard indicator, the generated over the real power summed over the modes
    with |n| >= n/2 (the shells past the Nyquist frequency, where a period-2 lattice lives)."""
    k_f = 2 * math.pi / cube_size
    k_nyq = k_f * n / 2
    ratio = np.asarray(block["ratio"], float)
    below = (k < k_nyq) & np.isfinite(ratio)
    beyond = np.arange(len(k)) + 1 >= n / 2            # bin i covers |n| in [i, i + 1)
    power = lambda key: float((np.asarray(block[key], float)[beyond] * n_modes[beyond]).sum())  # noqa: E731
    real = power("real_mean")
    return {"k_nyquist": k_nyq,
            "ratio_min_below_nyquist": float(ratio[below].min()) if below.any() else math.nan,
            "ratio_max_below_nyquist": float(ratio[below].max()) if below.any() else math.nan,
            "ratio_max_deviation_below_nyquist":
                float(np.abs(ratio[below] - 1).max()) if below.any() else math.nan,
            "checkerboard": power("fake_mean") / real if real > 0 else math.nan}


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
    dataset = Dataset(data)
    with dataset.split(split, check_finite=False) as part:
        if len(part) < 2:
            raise DatasetError(f"{data}: the {split!r} split has {len(part)} cubes; "
                               "at least 2 are needed for means and spreads")
        real = part.physical()
    if not np.isfinite(real).all():
        raise DatasetError(f"{data}: the {split!r} split contains NaN or infinite values")
    return real, dataset.attrs, dataset.transform


def evaluate(checkpoint, data, out, *, split: str | None = None, n: int | None = None,
             seed: int | None = None, device: str | None = None, run_dir=None,
             show_progress: bool = False, config: EvaluateConfig | None = None,
             bn: str | None = None, boxes: bool | None = None) -> dict:
    """Write metrics.json and the figures into `out`; returns the metrics dictionary
    (with `problems`: what could not be done). The settings are the [evaluate] section of
    the checkpoint's config (or `config`), with split, n and seed overriding it; bn
    ('standing' or 'batch') overrides the run's BatchNorm mode for sampling; device: cpu or
    cuda for the generator (None: cuda when a GPU is visible). boxes: also the whole-box
    report (`evaluation.boxes`, metrics key `boxes`); None: when the run's generator is the
    box generator."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(checkpoint)
    run = RunDir(run_dir) if run_dir is not None else RunDir.of_checkpoint(checkpoint)
    problems, figures = [], []
    try:   # loaded once, for its [evaluate] settings and its generator
        ckpt = load_checkpoint(checkpoint)
    except RunError as exc:
        ckpt = exc     # reported where the generated cubes would have been made
    ecfg = _settings(ckpt, config, split, n, seed)
    metrics = {"checkpoint": str(checkpoint), "data": str(data), "split": ecfg.split}
    records = read_metrics(run.metrics) if run.metrics.is_file() else []
    if not records:
        problems.append(f"{run.metrics} not found: no loss or duality-gap figures")
    real, attrs, fake = None, None, None
    try:
        real, attrs, _ = load_split(data, ecfg.split)
    except DatasetError as exc:
        problems.append(f"dataset: {exc}")
    if real is not None:
        fake = _generated(ckpt, ecfg.n_cubes or len(real), ecfg.seed, device, bn,
                          show_progress, metrics, problems)
    if fake is not None:
        figures += _compare(real, fake, attrs, ecfg, metrics, problems, out)
    if records:
        figures += _training_figures(records, metrics, problems, out)
    if boxes or (boxes is None and isinstance(ckpt, dict) and _is_box_run(ckpt)):
        try:
            from .boxes import evaluate_boxes  # noqa: PLC0415

            metrics["boxes"] = evaluate_boxes(ckpt, data, out, split=ecfg.split, seed=ecfg.seed,
                                              sizes=ecfg.box_sizes)
            figures += [Path(p) for p in metrics["boxes"]["figures"]]
        except (DatasetError, RunError, ValueError, KeyError) as exc:
            problems.append(f"whole boxes: {exc}")
    metrics["figures"] = [str(p) for p in figures if p is not None]
    metrics["problems"] = problems
    write_text(out / "metrics.json", json.dumps(_jsonable(metrics), indent=1))
    return metrics


def _is_box_run(ckpt: dict) -> bool:
    try:
        return config_of_checkpoint(ckpt).model.generator == "box"
    except RunError:
        return False


def _settings(ckpt, config, split, n, seed) -> EvaluateConfig:
    """The [evaluate] settings: `config`, else the checkpoint's, else the defaults."""
    ecfg = config
    if ecfg is None:
        try:
            ecfg = config_of_checkpoint(ckpt).evaluate if isinstance(ckpt, dict) else None
        except RunError:
            pass              # the checkpoint's problem is reported by _generated
        ecfg = ecfg or EvaluateConfig()
    ecfg = dataclasses.replace(ecfg)
    for key, value in (("split", split), ("n_cubes", n), ("seed", seed)):
        if value is not None:
            setattr(ecfg, key, value)
    return ecfg


def _generated(ckpt, n, seed, device, bn, show_progress, metrics, problems):
    """Physical generated cubes (n, c, c, c) float64, or None with the reason in problems.
    ckpt: the loaded checkpoint, or the RunError that loading it raised."""
    if isinstance(ckpt, RunError):
        problems.append(f"checkpoint: {ckpt}")
        return None
    try:
        fake, meta, rate = generate(ckpt, n, physical=True, seed=seed, device=device,
                                    show_progress=show_progress, bn=bn)
    except (OSError, ValueError, RuntimeError) as exc:
        problems.append(f"checkpoint: {exc}")
        return None
    metrics["cubes_per_second"] = rate
    metrics["sampling"] = {"batchnorm": meta["batchnorm"], "ema": meta["ema"]}
    return fake.astype(np.float64)


def _compare(real, fake, attrs, ecfg: EvaluateConfig, metrics, problems, out) -> list:
    """The summaries of both sets, their comparison in `metrics`, Figs. 6-8."""
    cube_size = float(attrs["cube_size"])
    k_f = 2 * math.pi / cube_size
    pairs = [(a * k_f, b * k_f) for a, b in ecfg.bispectrum_pairs] if real.shape[-1] >= 16 \
        else [(k_f, k_f)]
    positive = real[real > 0]
    lo = math.floor(10 * math.log10(positive.min())) / 10 if positive.size else -1.0
    hi = math.ceil(10 * math.log10(max(float(real.max()), float(fake.max()), 1.0))) / 10
    edges = np.linspace(lo, hi, ecfg.hist_bins + 1)
    try:
        s_real = summaries(real, cube_size, edges, pairs, ecfg.peak_radius, ecfg.n_theta)
        s_fake = summaries(fake, cube_size, edges, pairs, ecfg.peak_radius, ecfg.n_theta)
    except ValueError as exc:   # e.g. an empty generated cube has no overdensity
        problems.append(f"summaries: {exc}")
        return []
    metrics.update({"n_real": len(real), "n_fake": len(fake), "cube_size": cube_size,
                    "k": s_real["k"], "n_modes": s_real["n_modes"], "log10_x_edges": edges,
                    "bispectrum_pairs": pairs, "theta": s_real["theta"]})
    metrics["summaries"] = {
        name: _stats_block(s_real[name], s_fake[name], log=(name == "power_spectrum"))
        for name in ("power_spectrum", "mass_histogram", "peak_histogram", "bispectrum")}
    metrics["power_spectrum_checks"] = spectrum_checks(
        s_real["k"], s_real["n_modes"], metrics["summaries"]["power_spectrum"], real.shape[-1],
        cube_size)
    from . import figures as fig  # noqa: PLC0415

    return [fig.slices(real, fake, out / "fig6_slices.png", count=6),
            fig.summaries(metrics, out / "fig7_summaries.png"),
            fig.compatibility(metrics, out / "fig8_compatibility.png")]


def _training_figures(records, metrics, problems, out) -> list:
    """Figs. 4 and 5 from the run's metrics, and the training facts."""
    from . import figures as fig  # noqa: PLC0415

    paths = [fig.losses(records, out / "fig4_losses.png")]
    path = fig.duality_gap(records, out / "fig5_duality_gap.png")
    if path is None:
        problems.append("the run's metrics hold no duality gap: no Fig. 5")
    paths.append(path)
    metrics["duality_gap"] = [(r["epoch"], r["duality_gap"]) for r in records if "duality_gap" in r]
    metrics["training"] = {"epochs": max((r.get("epoch", 0) for r in records), default=0),
                           "generator_steps": max((r.get("step", 0) for r in records), default=0),
                           "seconds": max((r.get("elapsed", 0) for r in records), default=0)}
    return paths
