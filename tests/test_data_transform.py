"""The paper's transform and the cube augmentation."""
import math

import numpy as np
import pytest
import torch

from lsswgan_core.data import SYMMETRIES, Transform, apply_symmetry, periodic_crop


def symmetry_matrix(index: int) -> np.ndarray:
    """The 3x3 signed permutation matrix of symmetry `index` (acting on coordinates)."""
    perm, flips = SYMMETRIES[index]
    m = np.zeros((3, 3), dtype=int)
    for row, col in enumerate(perm):
        m[row, col] = -1 if flips[row] else 1
    return m


def test_round_trip_float32_and_float64(rng):
    t = Transform(x_max=500.0)
    x = np.concatenate([rng.lognormal(0, 1.5, 10_000), [0.0, 10.998, 11.0, 11.002, 500.0]])
    np.testing.assert_allclose(t.inverse(t.forward(x)), x, rtol=1e-12, atol=1e-12)
    x32 = x.astype(np.float32)
    back = t.inverse(t.forward(x32))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x32, rtol=1e-5, atol=1e-5)
    xt = torch.tensor(x)
    torch.testing.assert_close(t.inverse(t.forward(xt)), xt)


def test_range_monotone_and_continuous_at_c():
    t = Transform(x_max=800.0)
    x = np.linspace(0, 800, 200_001)
    y = t.forward(x)
    assert y[0] == pytest.approx(0.0, abs=1e-15) and y[-1] == pytest.approx(1.0)
    assert np.all(np.diff(y) > 0)
    c, s = t.c, t.s
    below, above = t.forward(np.array([c - s - 1e-9])), t.forward(np.array([c - s + 1e-9]))
    assert abs(above[0] - below[0]) < 1e-9  # continuous where x + s crosses c
    # the two branches of f'
    assert t._f_prime(np.array(c), np) == pytest.approx(3 * math.log(c + 1))


def test_bad_parameters_and_attrs():
    with pytest.raises(ValueError, match="x_max"):
        Transform(x_max=0.0)
    with pytest.raises(ValueError, match="c"):
        Transform(x_max=1.0, c=float("nan"))
    t = Transform(x_max=42.0, c=9.0, s=0.01)
    assert Transform.from_attrs(t.attrs()) == t
    with pytest.raises(ValueError, match="transform"):
        Transform.from_attrs({"transform_x_max": 1.0})


def test_48_distinct_cube_symmetries(rng):
    cube = rng.normal(size=(6, 6, 6))
    images = [apply_symmetry(cube, i) for i in range(48)]
    assert len({im.tobytes() for im in images}) == 48
    mats = [symmetry_matrix(i) for i in range(48)]
    assert len({m.tobytes() for m in mats}) == 48
    for m in mats:  # orthogonal, integer: rotations (det 1) and reflections (det -1)
        assert np.array_equal(m @ m.T, np.eye(3, dtype=int))
    dets = [round(np.linalg.det(m)) for m in mats]
    assert dets.count(1) == 24 and dets.count(-1) == 24
    # the voxel at index v moves as the matrix says (about the cube centre)
    for i in (5, 17, 40):
        img = apply_symmetry(cube, i)
        m = symmetry_matrix(i)
        for v in [(0, 1, 2), (5, 0, 3)]:
            centred = np.array(v) - 2.5
            w = tuple(int(round(x + 2.5)) for x in m @ centred)
            assert img[w] == cube[v]
    with pytest.raises(ValueError):
        apply_symmetry(cube, 48)
    assert len(SYMMETRIES) == 48


def test_periodic_crop_wraps(rng):
    grid = rng.normal(size=(8, 8, 8))
    crop = periodic_crop(grid, 4, (6, 7, 0))
    assert crop.shape == (4, 4, 4)
    assert crop[0, 0, 0] == grid[6, 7, 0] and crop[2, 1, 3] == grid[0, 0, 3]
    with pytest.raises(ValueError, match="exceeds"):
        periodic_crop(grid, 9, (0, 0, 0))
