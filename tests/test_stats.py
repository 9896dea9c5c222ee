"""lsswgan_core.stats: overdensity, histograms, the bispectrum, compatibility, Frechet distance."""
import math

import numpy as np
import pytest
import torch

from lsswgan_core import ops, stats
from lsswgan_core.ops.reference import (bispectrum_reference, find_peaks_reference,
                                        soft_histogram_reference)


def test_overdensity(rng):
    field = rng.uniform(0.5, 2.0, (3, 8, 8, 8))
    delta = stats.overdensity(field)
    assert isinstance(delta, np.ndarray)
    np.testing.assert_allclose(delta.mean(axis=(-3, -2, -1)), 0, atol=1e-12)
    np.testing.assert_allclose(delta[1], field[1] / field[1].mean() - 1)
    with pytest.raises(ValueError, match="zero mean"):
        stats.overdensity(np.zeros((4, 4, 4)))


def test_mass_histogram_matches_reference(rng):
    field = torch.tensor(rng.lognormal(0, 1, (2, 8, 8, 8)))
    hist = stats.mass_histogram(field, -1.0, 1.5, 10, log10=True)
    ref = soft_histogram_reference(torch.log10(field.flatten(-3)), -1.0, 1.5, 10)
    torch.testing.assert_close(hist, ref)


def test_peak_histogram_counts_peaks_and_passes_gradients(rng):
    field = torch.tensor(rng.uniform(0, 1, (2, 10, 10, 10)), requires_grad=True)
    hist = stats.peak_histogram(field, 0.0, 1.5, 5)  # peaks sit inside, not in the edge bins
    mask = find_peaks_reference(field.detach(), 2, "open")
    torch.testing.assert_close(hist.sum(-1), mask.sum(dim=(-3, -2, -1)).double())
    (hist * torch.arange(5.0, dtype=torch.float64)).sum().backward()
    nonzero = field.grad != 0
    assert nonzero.any()
    assert not (nonzero & ~mask).any()  # only peak voxels receive gradient


def test_bispectrum_matches_brute_force(rng):
    n, box = 8, 2 * math.pi * 4  # k_F = 0.25
    field = torch.tensor(rng.normal(size=(2, n, n, n))) ** 2  # non-Gaussian
    k1, k2 = 0.5, 0.75
    thetas = [0.3, 1.2, 2.0, 2.9]
    ours = stats.bispectrum(field, box, k1, k2, thetas)
    ref = bispectrum_reference(field, box, k1, k2, thetas)
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-9 * ref.abs().max().item())


def _gaussian_field(seed, n=32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, n, generator=gen, dtype=torch.float64)


def test_bispectrum_of_gaussian_fields_is_consistent_with_zero():
    box, n = 200.0, 32
    k_f = 2 * math.pi / box
    k1, k2, theta = 4 * k_f, 6 * k_f, [0.5, 1.5, 2.5]
    values = torch.stack([stats.bispectrum(_gaussian_field(s, n), box, k1, k2, theta)
                          for s in range(12)])
    # for unit white noise P = L^3 / n^3; the scatter of B scales as P^(3/2)
    mean, err = values.mean(0), values.std(0) / math.sqrt(len(values))
    assert torch.all(mean.abs() < 4 * err), (mean, err)


def test_bispectrum_of_quadratic_non_gaussianity_is_positive_and_linear():
    box, n = 200.0, 32
    k_f = 2 * math.pi / box
    k1, k2, theta = 3 * k_f, 4 * k_f, [0.6, 1.6, 2.6]
    excess = []
    for a in (0.0, 0.02, 0.04):
        per_seed = []
        for seed in range(6):
            g = _gaussian_field(seed, n)
            f = g + a * (g**2 - (g**2).mean())
            per_seed.append(stats.bispectrum(f, box, k1, k2, theta))
        excess.append(torch.stack(per_seed))
    d1 = (excess[1] - excess[0]).mean(0)   # B(a) - B(0), same Gaussian seeds
    d2 = (excess[2] - excess[0]).mean(0)
    assert torch.all(d1 > 0) and torch.all(d2 > 0)
    torch.testing.assert_close(d2 / d1, torch.full_like(d1, 2.0), rtol=0.05, atol=0)


def test_bispectrum_no_triangle_is_nan():
    box = 2 * math.pi * 4
    b = stats.bispectrum(torch.randn(8, 8, 8, dtype=torch.float64), box, 0.25, 0.25, [0.0],
                         width=0.01)
    # k3 = 0.5 exactly, width tiny: the (1,0,0) + (1,0,0) triangle closes
    assert torch.isfinite(b).all()
    b = stats.bispectrum(torch.randn(8, 8, 8, dtype=torch.float64), box, 0.26, 0.26, [0.0],
                         width=0.001)
    assert torch.isnan(b).all()


def test_compatibility():
    real = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0], [2.0, 2.0, 4.0]])
    fake = np.array([[2.0, 2.0, 4.0], [4.0, 2.0, 6.0], [3.0, 2.0, 8.0]])
    c = stats.compatibility(real, fake)
    expected0 = abs(3.0 - 2.0) / math.sqrt(1.0 + 1.0)
    assert c[0] == pytest.approx(expected0)
    assert c[1] == 0.0  # identical constant bins
    assert c[2] == pytest.approx(2.0 / math.sqrt(1.0 + 4.0))
    assert stats.compatibility(np.ones((3, 1)), 2 * np.ones((3, 1)))[0] == np.inf
    with pytest.raises(ValueError, match="agree"):
        stats.compatibility(np.ones((3, 2)), np.ones((3, 3)))


def test_frechet_distance(rng):
    a = rng.normal(0, 1, (4000, 3))
    b = rng.normal(0, 1, (4000, 3)) + np.array([1.0, 0.0, 0.0])
    assert stats.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert stats.frechet_distance(a, b) == pytest.approx(1.0, abs=0.1)
    # covariance scaled by 4 (sd x2) in one dimension: (2 - 1)^2 = 1
    c = rng.normal(0, 1, (4000, 3)) * np.array([2.0, 1.0, 1.0])
    assert stats.frechet_distance(a, c) == pytest.approx(1.0, abs=0.15)
    t = stats.frechet_distance(torch.tensor(a), torch.tensor(b))
    assert isinstance(t, torch.Tensor)
