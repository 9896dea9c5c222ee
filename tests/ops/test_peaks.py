"""find_peaks: against the brute-force reference, ties, plateaus, NaN, batching, bad input
(opcheck: tests/ops/test_opcheck.py; torch.compile: tests/test_compile.py)."""
import numpy as np
import pytest
import torch

from lsswgan_core import ops
from lsswgan_core.ops.reference import find_peaks_reference

from ..conftest import requires_cuda


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("boundary", ["periodic", "open"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_brute_force_random(rng, device, radius, boundary, dtype):
    field = torch.tensor(rng.normal(size=(2, 11, 11, 11)), dtype=dtype)
    ours = ops.find_peaks(field.to(device), radius=radius, boundary=boundary).cpu()
    ref = find_peaks_reference(field, radius, boundary)
    assert ours.dtype == torch.bool
    assert torch.equal(ours, ref)
    assert ours.any()


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_ties_and_plateaus(rng, device, radius, boundary):
    # few distinct levels: many ties; a plateau of equal maxima is never a peak
    field = torch.tensor(rng.integers(0, 4, size=(9, 9, 9)), dtype=torch.float64)
    field[2:5, 2:5, 2:5] = 10.0  # a plateau
    ours = ops.find_peaks(field.to(device), radius=radius, boundary=boundary).cpu()
    assert torch.equal(ours, find_peaks_reference(field, radius, boundary))
    assert not ours[2:5, 2:5, 2:5].any()


def test_planted_peaks(device):
    n = 24
    field = torch.zeros(n, n, n, dtype=torch.float64)
    planted = [(0, 0, 0), (5, 12, 20), (20, 20, 6), (12, 12, 12)]
    for i, p in enumerate(planted):
        field[p] = 1.0 + i
    mask = ops.find_peaks(field.to(device), radius=2).cpu()
    assert sorted(map(tuple, mask.nonzero().tolist())) == sorted(planted)
    # two planted peaks 2 cells apart: only the higher survives at r=2, both at r=1
    field = torch.zeros(n, n, n)
    field[10, 10, 10], field[10, 10, 12] = 2.0, 1.0
    assert ops.find_peaks(field.to(device), radius=2).sum() == 1
    assert ops.find_peaks(field.to(device), radius=1).sum() == 2


def test_open_boundary_ignores_outside(device):
    field = torch.zeros(8, 8, 8)
    field[0, 0, 0] = 1.0
    field[7, 7, 7] = 0.5  # periodic neighbour of (0,0,0), ignored when open
    assert ops.find_peaks(field.to(device), boundary="open").sum() == 2
    assert ops.find_peaks(field.to(device), boundary="periodic").sum() == 1


def test_nan_is_never_a_peak_and_blocks_its_neighbours(device):
    field = torch.zeros(9, 9, 9, dtype=torch.float64)
    field[4, 4, 4] = 5.0
    assert ops.find_peaks(field.to(device)).sum() == 1
    field[4, 4, 6] = float("nan")  # in the neighbourhood of the peak
    field[0, 0, 0] = float("nan")
    mask = ops.find_peaks(field.to(device)).cpu()
    assert not mask.any()
    assert torch.equal(mask, find_peaks_reference(field, 2, "periodic"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("boundary", ["periodic", "open"])
def test_an_all_nan_field_has_no_peaks(device, dtype, boundary):
    field = torch.full((2, 7, 7, 7), float("nan"), dtype=dtype, device=device)
    field[1, 3, 3, 3] = 1.0  # a lone finite voxel among NaN: its comparisons fail too
    mask = ops.find_peaks(field, boundary=boundary)
    assert mask.shape == field.shape and mask.dtype == torch.bool and not mask.any()


def test_batched_equals_per_sample(rng, device):
    field = torch.tensor(rng.normal(size=(3, 2, 10, 10, 10)), device=device)
    batched = ops.find_peaks(field, boundary="open")
    for i in range(3):
        for j in range(2):
            assert torch.equal(batched[i, j], ops.find_peaks(field[i, j], boundary="open"))


def test_numpy_in_numpy_out(rng):
    field = rng.normal(size=(12, 12, 12)).astype(np.float32)
    mask = ops.find_peaks(field)
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert (field[mask] > 0).all()


def test_small_open_cubes_and_empty_batch(device):
    one = torch.tensor([[[3.0]]], device=device)
    assert ops.find_peaks(one, boundary="open").item()  # no neighbours: vacuously a peak
    empty = torch.zeros(0, 5, 5, 5, device=device)
    assert ops.find_peaks(empty).shape == (0, 5, 5, 5)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.find_peaks(torch.zeros(8, 8, 9)), ValueError, "shape"),
    (lambda: ops.find_peaks(torch.zeros(8, 8)), ValueError, "shape"),
    (lambda: ops.find_peaks(torch.zeros(4, 4, 4)), ValueError, "smaller than the neighbourhood"),
    (lambda: ops.find_peaks(torch.zeros(8, 8, 8), radius=0), ValueError, "radius"),
    (lambda: ops.find_peaks(torch.zeros(8, 8, 8), radius=9), ValueError, "radius"),
    (lambda: ops.find_peaks(torch.zeros(8, 8, 8), boundary="reflect"), ValueError, "boundary"),
    (lambda: ops.find_peaks(torch.zeros(8, 8, 8, dtype=torch.int32)), TypeError, "field"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_raw_op_validates():
    with pytest.raises(RuntimeError, match="smaller than the neighbourhood"):
        torch.ops.lsscore.find_peaks(torch.zeros(3, 3, 3), 2, True)
    with pytest.raises(RuntimeError, match="cubic"):
        torch.ops.lsscore.find_peaks(torch.zeros(3, 3, 4), 1, False)


@requires_cuda
def test_cpu_and_cuda_agree(rng):
    field = torch.tensor(rng.normal(size=(4, 32, 32, 32)), dtype=torch.float32)
    for boundary in ("periodic", "open"):
        assert torch.equal(ops.find_peaks(field, boundary=boundary),
                           ops.find_peaks(field.cuda(), boundary=boundary).cpu())


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("radius", [1, 2, 3])
def test_small_cubes_match_brute_force(rng, device, n, radius):
    """Cubes smaller than the neighbourhood (open) and just large enough (periodic)."""
    field = torch.tensor(rng.integers(0, 5, size=(3, n, n, n)), dtype=torch.float32)
    field[0] += torch.tensor(rng.normal(size=(n, n, n)), dtype=torch.float32)
    ours = ops.find_peaks(field.to(device), radius=radius, boundary="open").cpu()
    assert torch.equal(ours, find_peaks_reference(field, radius, "open"))
    if n >= 2 * radius + 1:
        ours = ops.find_peaks(field.to(device), radius=radius, boundary="periodic").cpu()
        assert torch.equal(ours, find_peaks_reference(field, radius, "periodic"))
