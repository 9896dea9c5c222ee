"""The paper's figures (Figs. 4-8) as PNG, with matplotlib's Agg backend (no display needed).
Each function takes plain data and a path and returns the path (None when there is nothing
to draw)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..files import atomic_file

REAL, FAKE = "#1f4e79", "#c0504d"


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _save(fig, path) -> Path:
    """The PNG, written atomically (lsswgan_core.files): a failed write leaves the previous
    figure and raises WriteError."""
    path = Path(path)
    try:
        with atomic_file(path) as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    finally:
        _plt().close(fig)
    return path


def losses(records: list[dict], path) -> Path | None:
    """Fig. 4: critic and generator losses, the Wasserstein estimate and the gradient
    penalty against generator steps; the summary-loss terms while they were on."""
    steps = [r for r in records if "critic_loss" in r]
    if not steps:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = [r["step"] for r in steps]
    ax = axes[0]
    for key, label in (("critic_loss", "critic loss"), ("generator_loss", "generator loss"),
                       ("wasserstein", "Wasserstein estimate"), ("gp", "gradient penalty")):
        ax.plot(x, [r.get(key, math.nan) for r in steps], label=label, lw=1.2)
    ax.set_xlabel("generator step")
    ax.set_ylabel("loss")
    ax.set_title("adversarial losses")
    ax.legend(fontsize=8)
    ax = axes[1]
    drawn = False
    for key, label in (("summary_pk", "$D_{P(k)}$"), ("summary_mass", "$D_m$ (mass histogram)"),
                       ("summary_peak", "$D_p$ (peak histogram)")):
        pts = [(r["step"], r[key]) for r in steps if key in r]
        if pts:
            ax.plot(*zip(*pts), label=label, lw=1.2)
            drawn = True
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "summary loss off", ha="center", transform=ax.transAxes)
    ax.set_xlabel("generator step")
    ax.set_ylabel("summary distance")
    ax.set_title("summary loss terms")
    return _save(fig, path)


def duality_gap(records: list[dict], path) -> Path | None:
    """Fig. 5: the duality gap against the epoch (log scale)."""
    pts = [(r["epoch"], r["duality_gap"]) for r in records if "duality_gap" in r]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    epochs, gap = zip(*pts)
    ax.plot(epochs, gap, "o-", color=REAL)
    if min(gap) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("duality gap  $L_{max} - L_{min}$")
    ax.set_title("duality gap")
    return _save(fig, path)


def slices(real: np.ndarray, fake: np.ndarray, path, count: int = 4) -> Path:
    """Fig. 6: the middle slice of `count` real and `count` generated cubes (different cubes
    side by side show the diversity), log10(1 + rho/rhobar), on one colour scale."""
    plt = _plt()
    count = min(count, len(real), len(fake))
    mid = real.shape[-1] // 2
    r = np.log10(1 + real[:count, mid])
    f = np.log10(1 + fake[:count, mid])
    vmax = max(r.max(), f.max())
    fig, axes = plt.subplots(2, count, figsize=(2.4 * count + 1, 5), squeeze=False)
    for j in range(count):
        for i, (img, name) in enumerate(((r[j], "real"), (f[j], "generated"))):
            im = axes[i, j].imshow(img, vmin=0, vmax=vmax, cmap="inferno", origin="lower")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(name)
    fig.colorbar(im, ax=axes, shrink=0.8, label=r"$\log_{10}(1 + \rho/\bar\rho)$")
    return _save(fig, path)


def _log_x(ax):
    from matplotlib.ticker import NullFormatter  # noqa: PLC0415

    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())


def _band(ax, x, block, scale=1.0, log=False):
    for key, color, label in (("real", REAL, "real"), ("fake", FAKE, "generated")):
        mu, sd = np.asarray(block[f"{key}_mean"], float), np.asarray(block[f"{key}_std"], float)
        mu, sd = mu * scale, sd * scale
        ax.plot(x, mu, color=color, label=label, lw=1.4)
        lo = np.clip(mu - sd, 1e-30, None) if log else mu - sd
        ax.fill_between(x, lo, mu + sd, color=color, alpha=0.25, lw=0)


def _ratio(ax, x, block):
    r, f = np.asarray(block["real_mean"], float), np.asarray(block["fake_mean"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(r != 0, f / r, np.nan)
        band = np.where(r != 0, np.asarray(block["real_std"], float) / np.abs(r), np.nan)
    ax.fill_between(x, 1 - band, 1 + band, color=REAL, alpha=0.2, lw=0)
    ax.plot(x, ratio, color=FAKE, lw=1.2)
    ax.axhline(1, color="k", lw=0.6)
    ax.set_ylim(0, 2)
    ax.set_ylabel("gen / real")


def _mark_nyquist(axes, metrics: dict) -> None:
    k_nyq = metrics.get("power_spectrum_checks", {}).get("k_nyquist")
    if k_nyq:
        for ax in axes:
            ax.axvline(k_nyq, color="0.4", lw=0.8, ls=":")
        axes[0].text(k_nyq, 0.97, r" $k_{\rm Nyq}$", transform=axes[0].get_xaxis_transform(),
                     va="top", fontsize=8, color="0.3")


def summaries(metrics: dict, path) -> Path:
    """Fig. 7: the summaries with 1-sigma bands (real and generated) and a ratio panel."""
    plt = _plt()
    s = metrics["summaries"]
    pairs = metrics["bispectrum_pairs"]
    ncol = 3 + len(pairs)
    fig, axes = plt.subplots(2, ncol, figsize=(4 * ncol, 5.8), sharex="col",
                             gridspec_kw={"height_ratios": [3, 1]})
    k = np.asarray(metrics["k"], float)
    edges = np.asarray(metrics["log10_x_edges"], float)
    centres = (edges[1:] + edges[:-1]) / 2
    theta = np.asarray(metrics["theta"], float) / math.pi
    panels = [("power_spectrum", k, r"$k$ [$h$/Mpc]", r"$P(k)$ [(Mpc/$h$)$^3$]", True),
              ("mass_histogram", centres, r"$\log_{10}\,\rho/\bar\rho$", "voxel fraction", True),
              ("peak_histogram", centres, r"$\log_{10}\,\rho/\bar\rho$ at peaks", "peaks per cube",
               False)]
    for j, (name, x, xlabel, ylabel, log) in enumerate(panels):
        ax = axes[0, j]
        _band(ax, x, s[name], log=log)
        if name == "power_spectrum":
            _log_x(ax)
            _mark_nyquist((ax, axes[1, j]), metrics)
        if log:
            ax.set_yscale("log")
            means = np.concatenate([np.asarray(s[name][f"{w}_mean"], float) for w in ("real", "fake")])
            positive = means[means > 0]
            if positive.size:
                ax.set_ylim(positive.min() / 5, positive.max() * 3)
        ax.set_ylabel(ylabel)
        ax.set_title(name.replace("_", " "))
        ax.legend(fontsize=8)
        _ratio(axes[1, j], x, s[name])
        axes[1, j].set_xlabel(xlabel)
    bis = s["bispectrum"]
    for p, (k1, k2) in enumerate(pairs):
        j = 3 + p
        block = {key: np.asarray(bis[key], float)[p] for key in
                 ("real_mean", "real_std", "fake_mean", "fake_std")}
        _band(axes[0, j], theta, block)
        axes[0, j].set_title(f"bispectrum, $k_1$={k1:.2f}, $k_2$={k2:.2f} $h$/Mpc", fontsize=9)
        axes[0, j].set_ylabel(r"$B$ [(Mpc/$h$)$^6$]")
        axes[0, j].legend(fontsize=8)
        _ratio(axes[1, j], theta, block)
        axes[1, j].set_xlabel(r"$\theta/\pi$")
    fig.tight_layout()
    return _save(fig, path)


def compatibility(metrics: dict, path) -> Path:
    """Fig. 8: per bin of every summary, the compatibility (top; below 1: compatible) and the
    diversity sigma_gen / sigma_real (bottom; a collapsed generator is << 1)."""
    plt = _plt()
    s = metrics["summaries"]
    pairs = metrics["bispectrum_pairs"]
    edges = np.asarray(metrics["log10_x_edges"], float)
    centres = (edges[1:] + edges[:-1]) / 2
    theta = np.asarray(metrics["theta"], float) / math.pi
    fig, axes = plt.subplots(2, 4, figsize=(16, 6.4), sharex="col")
    rows = [("power_spectrum", np.asarray(metrics["k"], float), r"$k$ [$h$/Mpc]"),
            ("mass_histogram", centres, r"$\log_{10}\,\rho/\bar\rho$"),
            ("peak_histogram", centres, r"$\log_{10}\,\rho/\bar\rho$ at peaks")]
    for j, (name, x, xlabel) in enumerate(rows):
        for i, (key, label) in enumerate((("compatibility", "compatibility"),
                                          ("diversity", r"$\sigma_{\rm gen}/\sigma_{\rm real}$"))):
            ax = axes[i, j]
            ax.plot(x, np.asarray(s[name].get(key, []), float), "o-", ms=3, color=FAKE)
            ax.set_ylabel(label)
        axes[0, j].set_title(f"{name.replace('_', ' ')}: mean {s[name]['compatibility_mean']:.2f}")
        axes[1, j].set_xlabel(xlabel)
        if name == "power_spectrum":
            _log_x(axes[0, j])
            _mark_nyquist((axes[0, j], axes[1, j]), metrics)
    for i, key in enumerate(("compatibility", "diversity")):
        values = np.asarray(s["bispectrum"].get(key, []), float)
        for p, (k1, k2) in enumerate(pairs):
            if values.size:
                axes[i, 3].plot(theta, values[p], "o-", ms=3, label=f"$k_1$={k1:.2f}, $k_2$={k2:.2f}")
    axes[0, 3].set_title(f"bispectrum: mean {s['bispectrum']['compatibility_mean']:.2f}")
    axes[0, 3].legend(fontsize=8)
    axes[1, 3].set_xlabel(r"$\theta/\pi$")
    for ax in axes[0]:
        ax.axhline(1, color="k", lw=0.6, ls="--")
        ax.set_ylim(bottom=0)
    for ax in axes[1]:
        ax.axhline(1, color="k", lw=0.6)
        ax.set_yscale("log")
    fig.tight_layout()
    return _save(fig, path)


BASE = "#7f7f7f"


def box_slices(real: np.ndarray, fake: np.ndarray, baseline: np.ndarray, box_size: float,
               path) -> Path:
    """Full-width slices (4 cells thick, projected) of a real box, a generated box and the
    remapped-Gaussian baseline, log10(1 + rho/rhobar) on one colour scale; the generated box
    is also shown rolled by half a box, so that its wrap faces cross the middle."""
    plt = _plt()
    mid, thick = real.shape[-1] // 2, 4
    images = [(real, "real (held out)"), (fake, "generated"),
              (np.roll(fake, (fake.shape[0] // 2, fake.shape[1] // 2), (0, 1)),
               "generated, rolled by half a box\n(its wrap faces cross the middle)"),
              (baseline, "remapped Gaussian (the baseline)")]
    images = [(np.log10(1 + x[mid:mid + thick].mean(0)), t) for x, t in images]
    vmax = max(img.max() for img, _ in images)
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.4))
    for ax, (img, title) in zip(axes, images):
        im = ax.imshow(img.T, vmin=0, vmax=vmax, cmap="inferno", origin="lower",
                       extent=(0, box_size, 0, box_size))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("Mpc/h")
    fig.colorbar(im, ax=axes, shrink=0.8, label=r"$\log_{10}(1 + \rho/\bar\rho)$")
    return _save(fig, path)


def large_box_slice(x: np.ndarray, cell: float, real_box: float, tile: int | None,
                    path) -> Path:
    """A full-width slice (4 cells thick, projected) of one large generated box, with dotted
    lines at multiples of the real boxes' side: a box is not a mosaic of them, and no
    pattern repeats there (nor at the tiles it was computed in, when it was tiled)."""
    plt = _plt()
    n = x.shape[-1]
    side = n * cell
    img = np.log10(1 + x[n // 2:n // 2 + 4].mean(0))
    fig, ax = plt.subplots(figsize=(9.5, 8.5))
    im = ax.imshow(img.T, vmin=0, vmax=float(img.max()), cmap="inferno", origin="lower",
                   extent=(0, side, 0, side))
    for v in np.arange(real_box, side, real_box):
        ax.axvline(v, color="w", lw=0.5, ls=":", alpha=0.5)
        ax.axhline(v, color="w", lw=0.5, ls=":", alpha=0.5)
    ax.set_title(f"one generated box of {n}$^3$ cells ({side:g} Mpc/$h$), from the weights that "
                 f"make the {real_box:g} Mpc/$h$ boxes" + (f"; computed in {tile}$^3$ tiles"
                                                           if tile else "")
                 + f"\ndotted: multiples of {real_box:g} Mpc/$h$, the side of the training boxes",
                 fontsize=9)
    ax.set_xlabel("Mpc/h")
    fig.colorbar(im, ax=ax, shrink=0.8, label=r"$\log_{10}(1 + \rho/\bar\rho)$")
    return _save(fig, path)


def box_power(report: dict, path) -> Path:
    """P(k) of whole boxes from the fundamental to the corner: real (1-sigma and the Gaussian
    sqrt(2/N_modes) band), generated, the baseline and boxes of other sizes; ratio panel."""
    plt = _plt()
    k = np.asarray(report["k"], float)
    pr, pg = report["power_real"], report["power_generated"]
    mu, sd = np.asarray(pr["mean"], float), np.asarray(pr["std"], float)
    band = np.asarray(report["gaussian_band"], float)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.3]})
    top.fill_between(k, mu * (1 - band), mu * (1 + band), color=REAL, alpha=0.15, lw=0,
                     label=r"Gaussian band $\sqrt{2/N_{\rm modes}}$")
    top.fill_between(k, np.clip(mu - sd, 1e-30, None), mu + sd, color=REAL, alpha=0.3, lw=0)
    top.plot(k, mu, color=REAL, label=f"real ({report['count']} boxes)")
    top.plot(k, np.asarray(pg["mean"], float), color=FAKE, label="generated")
    top.plot(k, np.asarray(report["power_baseline"]["mean"], float), color=BASE, ls="--",
             label="remapped Gaussian")
    for cells, block in report.get("size_independence", {}).items():
        top.plot(np.asarray(block["k"]), np.asarray(block["power"]).ravel(), lw=0.8, alpha=0.8,
                 label=f"generated {cells}$^3$ (bins of the real)")
    crop_k = 2 * math.pi / (report["cell_size"] * report["crop"])
    for ax in (top, bottom):
        ax.axvline(crop_k, color="0.4", lw=0.8, ls=":")
    top.text(crop_k, 0.03, " crop", transform=top.get_xaxis_transform(), fontsize=8)
    top.set_yscale("log")
    # the corner's last bins hold a handful of modes and can be ~0: leave them off the scale
    good = (np.asarray(report["n_modes"], float) >= 8) & (mu > 0)
    if good.any():
        top.set_ylim(0.3 * float(mu[good].min()), 3 * float(mu[good].max()))
    _log_x(top)
    top.set_ylabel(r"$P(k)$ [(Mpc/$h$)$^3$]")
    top.legend(fontsize=8)
    with np.errstate(divide="ignore", invalid="ignore"):
        bottom.fill_between(k, 1 - sd / mu, 1 + sd / mu, color=REAL, alpha=0.25, lw=0)
    bottom.plot(k, np.asarray(report["ratio"], float), color=FAKE)
    bottom.plot(k, np.asarray(report["ratio_baseline"], float), color=BASE, ls="--")
    bottom.axhline(1, color="k", lw=0.6)
    bottom.set_ylim(0, 2)
    bottom.set_ylabel("/ real")
    bottom.set_xlabel(r"$k$ [$h$/Mpc]")
    return _save(fig, path)


def box_seams(report: dict, path) -> Path:
    """The seam statistics of generated boxes, the baseline and real boxes, each beside the
    99th percentile of its seam-free null (real boxes rolled at random)."""
    plt = _plt()
    seams = report["seams"]
    names = list(seams)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 4))
    for dx, key, color in ((-0.25, "real", REAL), (0.0, "generated", FAKE),
                           (0.25, "baseline", BASE)):
        ax.bar(x + dx, [seams[n][key] for n in names], width=0.25, color=color, label=key)
    ax.scatter(x, [seams[n]["null_p99"] for n in names], marker="_", s=600, color="k",
               label="null, 99th percentile", zorder=3)
    ax.set_xticks(x, [n.replace("_", " ") for n in names], fontsize=8)
    ax.axhline(1, color="0.5", lw=0.6)
    ax.set_ylabel("statistic (1: no seam)")
    ax.set_title(f"tiled vs whole: max |difference| = {report['tiled_vs_whole']:.2g}", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)
