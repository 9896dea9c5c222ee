"""The seam statistics of whole boxes: each is about 1 (or its known value) on a seam-free
field and far from it on a field with the defect it is meant to see."""
import numpy as np
import pytest

from lsswgan_core.evaluation import seams


@pytest.fixture(scope="module")
def noise():
    """Smooth Gaussian fields (b, 32, 32, 32): isotropic, homogeneous, periodic."""
    rng = np.random.default_rng(0)
    k = np.fft.fftfreq(32)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2
    f = np.fft.ifftn(np.fft.fftn(rng.standard_normal((6, 32, 32, 32)), axes=(1, 2, 3))
                     * np.exp(-k2 * 30), axes=(1, 2, 3)).real
    return f / f.std()


def test_lattice_spikes(noise):
    clean = seams.lattice_spikes(noise, 8)
    pattern = np.tile(np.random.default_rng(1).standard_normal((8, 8, 8)), (4, 4, 4))
    spiky = seams.lattice_spikes(noise + 0.5 * pattern, 8)
    assert np.all(np.abs(np.log(clean)) < 1.0) and np.all(spiky > 10 * clean)


def test_axis_excess(noise):
    k, clean = seams.axis_excess(noise, 128.0)
    # sheets perpendicular to x (block edges, the streaks of a slice): power on the x axis
    streaks = noise + np.random.default_rng(2).standard_normal((6, 32, 1, 1))
    _, streaky = seams.axis_excess(streaks, 128.0)
    assert len(k) >= 3 and np.all(np.diff(k) > 0)
    assert np.all(np.abs(clean.mean(0) - 1) < 0.3) and np.all(streaky.mean(0) > 2)


def test_face_increments(noise):
    clean = seams.face_increments(noise, 8)
    assert np.all(np.abs(clean["wrap"] - 1) < 0.3) and np.all(np.abs(clean["tile"] - 1) < 0.3)
    step = np.repeat(np.random.default_rng(3).standard_normal(4), 8)    # a jump at each face
    seamed = seams.face_increments(noise + step[None, :, None, None], 8)
    ramp = noise + np.linspace(0, 6, 32)[None, :, None, None]            # not periodic
    assert np.all(seamed["tile"] > 2) and np.all(seams.face_increments(ramp, 8)["wrap"] > 5)
    assert np.all(np.abs(seams.face_increments(seams.rolled(noise), 8)["wrap"] - 1) < 0.3)


def test_phase_profile(noise):
    rng = np.random.default_rng(4)
    white = rng.standard_normal((6, 32, 32, 32))
    assert np.all(seams.phase_profile(white, 8) < 2.5)
    stripes = white + 0.5 * np.tile(np.linspace(-1, 1, 8), 4)[None, :, None, None]
    assert np.all(seams.phase_profile(stripes, 8) > 5)


def test_crop_variance_and_the_null():
    white = np.random.default_rng(5).standard_normal((4, 32, 32, 32))
    v = seams.crop_variance(white, 8)
    np.testing.assert_allclose(v, 1 / 8**3, rtol=0.4)
    assert np.isnan(seams.crop_variance(white, 32)).all()
    moved = seams.rolled(white, seed=1)
    np.testing.assert_allclose(np.sort(moved.ravel()), np.sort(white.ravel()))
    assert not np.array_equal(moved, white)


def test_remapped_gaussian_baseline_has_the_train_spectrum_and_values():
    """The baseline that learns nothing: the train boxes' one-point distribution exactly (a
    remap by rank) and their P(k) within 10 % on the larger scales (the spectrum corrected
    for what the remap does to it)."""
    import torch

    from lsswgan_core import ops
    from lsswgan_core.evaluation.boxes import remapped_gaussian

    from ._helpers import lognormal_cubes

    train = lognormal_cubes(4, 32, 0, sigma=1.2)

    def power(x):
        d = torch.from_numpy(x / x.mean(axis=(1, 2, 3), keepdims=True) - 1)
        return ops.power_spectrum(d, 128.0)[1].numpy().mean(0)

    base = remapped_gaussian(train, 32, 4, 4.0, seed=1)
    ratio = power(base) / power(train)
    assert np.all(np.abs(ratio[:8] - 1) < 0.1), ratio
    assert set(np.unique(base)) <= set(np.unique(train))
    np.testing.assert_allclose(np.quantile(base, [0.1, 0.5, 0.9]),
                               np.quantile(train, [0.1, 0.5, 0.9]), rtol=0.02)
