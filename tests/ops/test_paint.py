"""paint / readout: against numpy.histogramdd and the float64 reference, gradients, the
adjoint identity, physics (shot noise) and bad input (opcheck: tests/ops/test_opcheck.py; torch.compile: tests/test_compile.py)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsswgan_core import ops
from lsswgan_core.ops.reference import paint_reference, readout_reference

from ..conftest import requires_cuda

SCHEMES = ["ngp", "cic", "tsc"]
DTYPES = [torch.float32, torch.float64]


def away_from_edges(rng, num, n, box_size, margin=0.02):
    """Positions whose cell coordinate is at least `margin` cells from any cell edge."""
    cells = rng.integers(0, n, size=(num, 3))
    frac = rng.uniform(margin, 1 - margin, size=(num, 3))
    return (cells + frac) * (box_size / n)


def clustered(rng, num, box_size):
    centres = rng.uniform(0, box_size, (8, 3))
    pts = centres[rng.integers(0, 8, num)] + rng.normal(0, box_size / 30, (num, 3))
    return pts  # deliberately not wrapped: paint wraps


# ---- forward -------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num", [1000, 100_000])  # below and above the sorted-painting path
def test_ngp_equals_histogramdd(rng, dtype, num):
    n, box_size = 24, 75.0
    pos = away_from_edges(rng, num, n, box_size).astype(dtype)
    ours = ops.paint(pos, n, box_size, scheme="ngp")
    ref, _ = np.histogramdd(pos.astype(np.float64), bins=n, range=[(0, box_size)] * 3)
    assert isinstance(ours, np.ndarray) and ours.dtype == dtype
    np.testing.assert_array_equal(ours, ref)


def test_ngp_equals_histogramdd_clustered_wrapped(rng):
    n, box_size = 32, 100.0
    pos = clustered(rng, 200_000, box_size)
    wrapped = np.mod(pos, box_size)
    u = wrapped / (box_size / n)
    near = np.abs(u - np.round(u)) < 1e-9  # within rounding of an edge: excluded
    keep = ~near.any(axis=1)
    ours = ops.paint(pos[keep], n, box_size, scheme="ngp")
    ref, _ = np.histogramdd(wrapped[keep], bins=n, range=[(0, box_size)] * 3)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num", [500, 40_000])
def test_paint_matches_reference(rng, device, scheme, dtype, num):
    n, box_size = 16, 50.0
    pos = torch.tensor(rng.uniform(-2 * box_size, 3 * box_size, (num, 3)), dtype=dtype)
    w = torch.tensor(rng.uniform(0.5, 2.0, num), dtype=dtype)
    ours = ops.paint(pos.to(device), n, box_size, weights=w.to(device), scheme=scheme).cpu()
    ref = paint_reference(pos.double(), n, box_size, weights=w.double(), scheme=scheme)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    assert ours.dtype == dtype
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol * num / n**3 * 10)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_readout_matches_reference(rng, device, scheme, dtype):
    n, box_size = 12, 30.0
    field = torch.tensor(rng.normal(size=(n, n, n)), dtype=dtype)
    pos = torch.tensor(rng.uniform(-box_size, 2 * box_size, (3000, 3)), dtype=dtype)
    ours = ops.readout(field.to(device), pos.to(device), box_size, scheme=scheme).cpu()
    ref = readout_reference(field.double(), pos.double(), box_size, scheme)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mass_conserved(rng, device, scheme):
    n, box_size = 20, 10.0
    pos = torch.tensor(np.concatenate([
        rng.uniform(0, box_size, (50_000, 3)),
        clustered(rng, 50_000, box_size),
        rng.uniform(-1e6, 1e6, (1000, 3)),          # far outside: wrapped
        np.full((10, 3), box_size * (1 - 1e-17)),   # rounds to L
        np.full((10, 3), -1e-300)]))                # rounds up to L when wrapped
    w = torch.tensor(rng.exponential(size=pos.shape[0]))
    grid = ops.paint(pos.to(device), n, box_size, weights=w.to(device), scheme=scheme)
    assert torch.isclose(grid.sum().cpu(), w.sum(), rtol=1e-12)
    assert (grid >= 0).all()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_huge_coordinates_are_wrapped(device, scheme):
    pos = torch.tensor([[1e30, -1e30, 3e17], [-7.5, 1e15 + 0.25, 2.0**60],
                        [np.finfo(np.float64).max, -np.finfo(np.float64).max, 0.0]],
                       dtype=torch.float64, device=device)
    grid = ops.paint(pos, 8, 10.0, scheme=scheme)
    assert torch.isclose(grid.sum(), torch.tensor(3.0, dtype=torch.float64, device=device))
    ref = paint_reference(pos.cpu(), 8, 10.0, scheme=scheme)
    torch.testing.assert_close(grid.cpu(), ref)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_chunked_out_equals_at_once(rng, device, scheme):
    n, box_size = 32, 64.0
    pos = torch.tensor(clustered(rng, 150_000, box_size), device=device)
    once = ops.paint(pos, n, box_size, scheme=scheme)
    grid = torch.zeros((n, n, n), dtype=torch.float64, device=device)
    for chunk in torch.split(pos, 40_000):
        ret = ops.paint(chunk, n, box_size, scheme=scheme, out=grid)
        assert ret is grid
    torch.testing.assert_close(grid, once, rtol=1e-12, atol=1e-9)


def test_out_numpy_and_cast(rng):
    pos = rng.uniform(0, 5, (10_000, 3)).astype(np.float32)
    grid = np.zeros((8, 8, 8))  # float64 grid for float32 positions: positions are cast
    ret = ops.paint(pos, 8, 5.0, scheme="cic", out=grid)
    assert ret is grid
    ops.paint(pos, 8, 5.0, scheme="cic", out=grid)
    np.testing.assert_allclose(grid.sum(), 20_000, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: np.zeros((8, 8, 16))[:, :, ::2],                 # non-contiguous
    lambda: np.zeros((8, 8, 8), order="F"),                  # Fortran order
    lambda: np.zeros((8, 8, 8), dtype=np.dtype(np.float64).newbyteorder("S")),  # swapped
], ids=["strided", "fortran", "byteswapped"])
def test_out_numpy_that_cannot_be_written_in_place_is_refused(rng, make):
    # painting into a hidden copy would return ``out`` untouched
    pos = rng.uniform(0, 5, (100, 3))
    out = make()
    with pytest.raises(ValueError, match="out"):
        ops.paint(pos, 8, 5.0, out=out)
    assert not out.any()


def test_out_numpy_read_only_is_refused(rng):
    pos = rng.uniform(0, 5, (100, 3))
    out = np.zeros((8, 8, 8))
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        ops.paint(pos, 8, 5.0, out=out)


def test_result_independent_of_thread_count(rng):
    pos = torch.tensor(clustered(rng, 300_000, 100.0), dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ops.paint(pos, 64, 100.0, scheme="tsc"))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def edge_and_slab_catalogue(rng, num, n, box_size, dtype):
    """Uniform particles plus the hard cases of the owner-computes split: exactly on cell edges,
    at x = 0 and just below x = L (and a tiny negative x that wraps to L), and a quarter of
    them clustered into one x-slab (one thread owns all of those)."""
    h = box_size / n
    pos = rng.uniform(0, box_size, (num, 3))
    k = num // 8
    pos[:k] = rng.integers(0, n, (k, 3)) * h                                # on cell edges
    pos[k:2 * k, 0] = np.where(rng.random(k) < 0.5, 0.0, np.nextafter(box_size, 0.0))
    pos[2 * k:2 * k + 10, 0] = -1e-300
    pos[3 * k:5 * k, 0] = (n // 3 + rng.uniform(0.2, 0.8, 2 * k)) * h       # one slab
    if dtype == torch.float32:  # just below L in float32 too
        pos[k:2 * k, 0] = np.where(pos[k:2 * k, 0] > 0, np.nextafter(np.float32(box_size),
                                                                     np.float32(0)), 0.0)
    return torch.tensor(pos, dtype=dtype)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [24, 100, 128])  # in cache; slab groups of unequal widths; more
@pytest.mark.parametrize("strategy", ["auto", "direct", "buckets"])
@pytest.mark.parametrize("order", ["random", "lattice"])
def test_bitwise_independent_of_thread_count(rng, monkeypatch, scheme, dtype, n, strategy, order):
    """paint is the serial loop bit for bit at 1, 2 and 3 threads, whichever strategy paints
    (the probe's choice, or each one forced) and whatever the particles' order: with weights,
    with out= (accumulating onto a grid that is not zero), and against painting the same
    particles in chunks small enough for the one-thread path."""
    box_size, num = 30.0, 60_000
    pos = edge_and_slab_catalogue(rng, num, n, box_size, dtype)
    if order == "lattice":  # consecutive particles near each other, as in a snapshot's file
        pos = pos[torch.from_numpy(np.lexsort(np.floor(pos.double().numpy().T[::-1] * n / 30.0)))]
    monkeypatch.setenv("LSSCORE_PAINT_STRATEGY", strategy)
    w = torch.tensor(rng.uniform(0.5, 2.0, num), dtype=dtype)
    start = torch.tensor(rng.uniform(0, 1, (n, n, n)), dtype=dtype)
    before = torch.get_num_threads()
    try:
        plain, weighted, into = [], [], []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            plain.append(ops.paint(pos, n, box_size, scheme=scheme))
            weighted.append(ops.paint(pos, n, box_size, weights=w, scheme=scheme))
            out = start.clone()
            ops.paint(pos, n, box_size, weights=w, scheme=scheme, out=out)
            into.append(out)
        torch.set_num_threads(1)
        serial = start.clone()
        for b in range(0, num, 1000):
            ops.paint(pos[b:b + 1000], n, box_size, weights=w[b:b + 1000], scheme=scheme,
                      out=serial)
    finally:
        torch.set_num_threads(before)
    for results in (plain, weighted, into):
        assert all(torch.equal(results[0], r) for r in results[1:])
    assert torch.equal(into[0], serial)
    assert torch.isclose(weighted[0].sum(), w.sum().to(dtype), rtol=1e-5)


@pytest.mark.parametrize("strategy", ["direct", "buckets"])
def test_strategies_agree_on_a_large_grid(rng, monkeypatch, strategy):
    """On a grid of many slab groups (256^3, float32: 32 groups of 8 slabs) with several chunks
    of records, each forced strategy equals painting in chunks of the one-thread path, also
    for particles far outside the box."""
    n, box_size, num = 256, 100.0, 1_500_000
    pos = torch.tensor(np.concatenate([clustered(rng, num // 2, box_size),
                                       rng.uniform(-1e4, 1e4, (num // 2, 3))]),
                       dtype=torch.float32)
    pos = pos[torch.randperm(num, generator=torch.Generator().manual_seed(0))]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = torch.zeros((n, n, n))
        for chunk in torch.split(pos, 10_000):
            ops.paint(chunk, n, box_size, scheme="cic", out=serial)
        monkeypatch.setenv("LSSCORE_PAINT_STRATEGY", strategy)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert torch.equal(ops.paint(pos, n, box_size, scheme="cic"), serial)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("strategy", ["direct", "buckets"])
def test_more_owners_than_mask_bits(rng, monkeypatch, scheme, strategy):
    """With more threads than the 64 bits of a block's owner mask (owner t is bit t mod 64, so
    a bit stands for several owners) and in file-like order (blocks mostly one owner's), paint
    is still the serial loop bit for bit."""
    n, box_size, num = 96, 30.0, 40_000
    pos = edge_and_slab_catalogue(rng, num, n, box_size, torch.float32)
    pos = pos[torch.from_numpy(np.lexsort(np.floor(pos.double().numpy().T[::-1] * n / 30.0)))]
    monkeypatch.setenv("LSSCORE_PAINT_STRATEGY", strategy)
    w = torch.tensor(rng.uniform(0.5, 2.0, num), dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = torch.zeros((n, n, n))
        for chunk, wc in zip(torch.split(pos, 10_000), torch.split(w, 10_000)):
            ops.paint(chunk, n, box_size, scheme=scheme, weights=wc, out=serial)
        torch.set_num_threads(80)
        many = ops.paint(pos, n, box_size, scheme=scheme, weights=w)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(many, serial)


def test_bad_strategy_is_a_clean_error(monkeypatch):
    monkeypatch.setenv("LSSCORE_PAINT_STRATEGY", "fastest")
    with pytest.raises(RuntimeError, match="LSSCORE_PAINT_STRATEGY must be auto, direct or "
                                           "buckets, got 'fastest'"):
        ops.paint(torch.rand(100, 3), 8, 1.0, scheme="cic")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_all_particles_in_one_slab_any_thread_count(rng, scheme):
    """A catalogue in one x-slab (all the work for one owner, stencils across its edges)."""
    n, box_size, num = 16, 16.0, 50_000
    pos = rng.uniform(0, box_size, (num, 3))
    pos[:, 0] = 7.0 + rng.uniform(0.0, 1.0, num)
    pos[:100, 0] = 7.0                                   # the slab's lower edge
    pos = torch.tensor(pos)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(ops.paint(pos, n, box_size, scheme=scheme))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])
    ref = paint_reference(pos, n, box_size, scheme=scheme)
    torch.testing.assert_close(results[0], ref, rtol=1e-10, atol=1e-9)


def test_grid_too_large_names_n():
    """An n whose grid cannot fit in memory is refused by name, not by the allocator."""
    with pytest.raises((RuntimeError, ValueError), match=r"n = 100000 cells per side needs .* GiB"):
        ops.paint(torch.rand(10, 3), 100000, 1.0)
    with pytest.raises(RuntimeError, match=r"n = 100000 cells per side needs .* GiB"):
        torch.ops.lsscore.paint(torch.rand(10, 3), None, 100000, 1.0, 1)


@pytest.mark.parametrize("box_size", [1e-300, 1e-200, 1e-20])
def test_absurd_box_size_is_refused(box_size):
    """A box so small that cell coordinates overflow is refused by paint, out= and readout."""
    pos = torch.rand(10, 3, dtype=torch.float64)
    with pytest.raises((RuntimeError, ValueError), match="box_size .* too small"):
        ops.paint(pos, 8, box_size)
    with pytest.raises((RuntimeError, ValueError), match="box_size .* too small"):
        ops.paint(pos, 8, box_size, out=torch.zeros(8, 8, 8, dtype=torch.float64))
    with pytest.raises((RuntimeError, ValueError), match="box_size .* too small"):
        ops.readout(torch.zeros(8, 8, 8, dtype=torch.float64), pos, box_size)
    ops.paint(pos, 8, 1e-12)  # small but sane (units of the positions): accepted


def test_zero_particles(device):
    pos = torch.zeros((0, 3), device=device)
    for scheme in SCHEMES:
        grid = ops.paint(pos, 4, 1.0, scheme=scheme)
        assert grid.shape == (4, 4, 4) and not grid.any()
        assert ops.readout(grid, pos, 1.0, scheme=scheme).shape == (0,)


# ---- gradients -----------------------------------------------------------------------------

def _gradcheck_positions(rng, n, box_size, num):
    return torch.tensor(rng.uniform(0, box_size, (num, 3)), dtype=torch.float64)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_paint_gradcheck(rng, device, scheme):
    n, box_size = 6, 3.0
    pos = _gradcheck_positions(rng, n, box_size, 7).to(device)
    w = torch.tensor(rng.uniform(0.5, 1.5, 7), dtype=torch.float64, device=device)
    pos.requires_grad_(scheme != "ngp")
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda p, q: ops.paint(p, n, box_size, weights=q, scheme=scheme), (pos, w))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_readout_gradcheck(rng, device, scheme):
    n, box_size = 5, 2.0
    field = torch.tensor(rng.normal(size=(n, n, n)), device=device, requires_grad=True)
    pos = _gradcheck_positions(rng, n, box_size, 6).to(device).requires_grad_(scheme != "ngp")
    assert torch.autograd.gradcheck(
        lambda f, p: ops.readout(f, p, box_size, scheme=scheme), (field, pos))


@pytest.mark.parametrize("scheme", ["cic", "tsc"])
def test_gradients_match_reference_autograd(rng, scheme):
    n, box_size = 10, 7.0
    pos = torch.tensor(rng.uniform(0, box_size, (200, 3)), requires_grad=True)
    w = torch.tensor(rng.uniform(0.5, 1.5, 200), requires_grad=True)
    probe = torch.tensor(rng.normal(size=(n, n, n)))
    (ops.paint(pos, n, box_size, weights=w, scheme=scheme) * probe).sum().backward()
    pos_ref, w_ref = pos.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (paint_reference(pos_ref, n, box_size, weights=w_ref, scheme=scheme) * probe).sum().backward()
    torch.testing.assert_close(pos.grad, pos_ref.grad)
    torch.testing.assert_close(w.grad, w_ref.grad)


def test_ngp_position_gradient_is_zero(rng):
    pos = torch.tensor(rng.uniform(0, 1, (50, 3)), requires_grad=True)
    (ops.paint(pos, 4, 1.0, scheme="ngp") ** 2).sum().backward()
    assert torch.equal(pos.grad, torch.zeros_like(pos))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_readout_is_adjoint_of_paint(rng, device, scheme):
    n, box_size = 16, 40.0
    pos = torch.tensor(rng.uniform(-10, 50, (5000, 3)), device=device)
    w = torch.tensor(rng.normal(size=5000), device=device)
    f = torch.tensor(rng.normal(size=(n, n, n)), device=device)
    lhs = (ops.paint(pos, n, box_size, weights=w, scheme=scheme) * f).sum()
    rhs = (w * ops.readout(f, pos, box_size, scheme=scheme)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-11, atol=1e-9)


# ---- physics -------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme,factor", [("ngp", 1.0), ("cic", (2 / 3) ** 3),
                                           ("tsc", (11 / 20) ** 3)])
def test_uniform_catalogue_shot_noise_variance(scheme, factor):
    """Cell counts of a uniform random catalogue: Var = nbar * sum(W^2) averaged over the
    particle's offset in its cell = nbar (2/3)^3 for CIC, nbar (11/20)^3 for TSC (minus the
    1/ncells multinomial term)."""
    rng = np.random.default_rng(7)
    n, box_size, num = 48, 1.0, 48**3 * 8
    pos = rng.uniform(0, box_size, (num, 3))
    grid = ops.paint(pos, n, box_size, scheme=scheme)
    cells = n**3
    nbar = num / cells
    expected = nbar * factor - nbar / cells
    measured = grid.var()
    # the sample variance over ~1e5 (weakly correlated) cells has a ~0.5% scatter
    assert abs(measured / expected - 1) < 0.03, (measured, expected)
    # and the other schemes' factors are excluded
    for other in {1.0, (2 / 3) ** 3, (11 / 20) ** 3} - {factor}:
        assert abs(measured / (nbar * other) - 1) > 0.1


# ---- bad input -----------------------------------------------------------------------------

def test_nonfinite_positions_are_counted(device):
    pos = torch.rand(100, 3, device=device, dtype=torch.float64)
    pos[3, 1] = float("nan")
    pos[7, 0] = float("inf")
    pos[9, 2] = float("-inf")
    with pytest.raises(RuntimeError, match="positions contain 3 non-finite"):
        ops.paint(pos, 8, 1.0, scheme="cic")
    with pytest.raises(RuntimeError, match="positions contain 3 non-finite"):
        ops.readout(torch.zeros(8, 8, 8, dtype=torch.float64, device=device), pos, 1.0)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.paint(torch.rand(10, 2), 8, 1.0), ValueError, "positions must have shape"),
    (lambda: ops.paint(torch.rand(10, 3, dtype=torch.float16), 8, 1.0), TypeError, "positions"),
    (lambda: ops.paint(torch.rand(10, 3).int(), 8, 1.0), TypeError, "positions"),
    (lambda: ops.paint(torch.rand(10, 3), 0, 1.0), ValueError, "n .cells per side"),
    (lambda: ops.paint(torch.rand(10, 3), -3, 1.0), ValueError, "n .cells per side"),
    (lambda: ops.paint(torch.rand(10, 3), 8.5, 1.0), TypeError, "n .cells per side"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 0.0), ValueError, "box_size"),
    (lambda: ops.paint(torch.rand(10, 3), 8, float("nan")), ValueError, "box_size"),
    (lambda: ops.paint(torch.rand(10, 3), 8, -1.0), ValueError, "box_size"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 1.0, scheme="pcs"), ValueError, "scheme"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 1.0, weights=torch.rand(9)), ValueError, "weights"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 1.0, weights=torch.rand(10).double()), TypeError,
     "weights"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 1.0, out=torch.zeros(8, 8, 7)), ValueError, "out"),
    (lambda: ops.paint(torch.rand(10, 3), 8, 1.0, out=torch.zeros(8, 8, 16)[:, :, ::2]),
     ValueError, "contiguous"),
    (lambda: ops.paint([[0.0, 0.0, 0.0]], 8, 1.0), TypeError, "positions"),
    (lambda: ops.readout(torch.rand(4, 4, 5), torch.rand(3, 3), 1.0), ValueError, "cubic"),
    (lambda: ops.readout(torch.rand(4, 4, 4).double(), torch.rand(3, 3), 1.0), TypeError,
     "dtype"),
])
def test_bad_input_is_a_clean_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_raw_ops_validate_too():
    """The registered ops check their arguments themselves (callers may bypass Python)."""
    lss = torch.ops.lsscore
    with pytest.raises(RuntimeError, match="n .cells per side"):
        lss.paint(torch.rand(4, 3), None, 0, 1.0, 2)
    with pytest.raises(RuntimeError, match="box_size"):
        lss.paint(torch.rand(4, 3), None, 4, -1.0, 2)
    with pytest.raises(RuntimeError, match="order"):
        lss.paint(torch.rand(4, 3), None, 4, 1.0, 7)
    with pytest.raises(RuntimeError, match="shape"):
        lss.readout(torch.rand(4, 4, 4), torch.rand(4, 2), 1.0, 2)
    with pytest.raises(RuntimeError, match="weights"):
        lss.readout_gradient(torch.rand(4, 4, 4), torch.rand(4, 3), torch.rand(5), 1.0, 2)
    with pytest.raises(RuntimeError, match="contiguous"):
        lss.paint_into(torch.zeros(4, 4, 8)[:, :, ::2], torch.rand(4, 3), None, 1.0, 2)
    # n / box_size overflowing would turn positions into NaN and cell indices into garbage
    with pytest.raises(RuntimeError, match="too small for 6 cells"):
        lss.paint(torch.zeros(20_000, 3, dtype=torch.float64), None, 6, 1e-310, 2)
    with pytest.raises(RuntimeError, match="too small for 5 cells"):
        lss.readout(torch.zeros(5, 5, 5), torch.zeros(2, 3), 1e-310, 2)
    with pytest.raises(RuntimeError, match="too small for 4 cells"):
        lss.paint_into(torch.zeros(4, 4, 4), torch.zeros(2, 3), None, 5e-324, 3)


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
anyfloat = st.one_of(finite, st.sampled_from([float("nan"), float("inf"), -float("inf"),
                                              0.0, -0.0, 1e308, -1e308, 5e-324]))


@pytest.mark.filterwarnings("ignore:overflow encountered")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    num=st.integers(0, 40),
    ncols=st.sampled_from([3, 3, 3, 2, 4]),
    n=st.one_of(st.integers(-2, 12), st.sampled_from([1, 2, 3])),
    box_size=st.one_of(st.floats(1e-3, 1e3), st.sampled_from([0.0, -1.0, float("nan"),
                                                              float("inf"), 5e-324, 1e-310])),
    scheme=st.sampled_from(["ngp", "cic", "tsc", "bogus"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    with_weights=st.booleans(),
    finite_only=st.booleans(),
    data=st.data(),
)
def test_fuzz_paint_and_readout(num, ncols, n, box_size, scheme, dtype, with_weights, finite_only,
                                data):
    """Random shapes and values: a valid call returns the reference's result, any other
    raises one of the exceptions paint documents (never a crash or an out-of-bounds write)."""
    elements = finite if finite_only else anyfloat
    values = data.draw(st.lists(elements, min_size=num * ncols, max_size=num * ncols))
    pos = np.array(values, dtype=np.float64).reshape(num, ncols).astype(dtype)
    weights = None
    if with_weights:
        weights = np.array(data.draw(st.lists(elements, min_size=num, max_size=num)),
                           dtype=np.float64).astype(dtype)
    documented = (RuntimeError, ValueError, TypeError)
    try:
        grid = ops.paint(pos, n, box_size, weights=weights, scheme=scheme)
    except documented:
        grid = None
    valid = (ncols == 3 and n >= 1 and np.isfinite(box_size) and box_size > 0
             and math.isfinite(n / box_size) and scheme != "bogus" and np.isfinite(pos).all()
             and (weights is None or np.isfinite(weights).all()))
    assert (grid is not None) == valid
    if grid is not None:
        expected = float(num if weights is None else weights.astype(np.float64).sum())
        ref = paint_reference(torch.from_numpy(pos.astype(np.float64)), n, box_size,
                              weights=None if weights is None else torch.from_numpy(
                                  weights.astype(np.float64)), scheme=scheme).numpy()
        if np.isfinite(ref).all() and np.abs(ref).max(initial=0) < 1e30:
            tol = 1e-9 if dtype == np.float64 else 1e-3
            scale = 1 + np.abs(weights).sum() if weights is not None else 1 + num
            np.testing.assert_allclose(grid, ref, rtol=tol, atol=tol * scale)
            np.testing.assert_allclose(grid.sum(dtype=np.float64), expected, rtol=tol,
                                       atol=tol * scale)
        # the same particles on the grid they made: always a valid readout
        values = ops.readout(grid, pos, box_size, scheme=scheme)
        assert values.shape == (num,) and values.dtype == pos.dtype
        if np.isfinite(grid).all() and np.abs(grid).max(initial=0) < 1e30:
            ref = readout_reference(torch.from_numpy(grid.astype(np.float64)),
                                    torch.from_numpy(pos.astype(np.float64)), box_size,
                                    scheme).numpy()
            tol = 1e-9 if dtype == np.float64 else 1e-4
            np.testing.assert_allclose(values, ref, rtol=tol,
                                       atol=tol * (1 + np.abs(grid).max(initial=0)))


# ---- CUDA ----------------------------------------------------------------------------------

@requires_cuda
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpu_and_cuda_agree(rng, scheme, dtype):
    n, box_size = 64, 200.0
    pos = torch.tensor(clustered(rng, 500_000, box_size), dtype=dtype)
    w = torch.tensor(rng.uniform(0.5, 1.5, 500_000), dtype=dtype)
    cpu = ops.paint(pos, n, box_size, weights=w, scheme=scheme)
    gpu = ops.paint(pos.cuda(), n, box_size, weights=w.cuda(), scheme=scheme).cpu()
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(gpu, cpu, rtol=tol, atol=tol * 100)
    f = torch.randn(n, n, n, dtype=dtype)
    torch.testing.assert_close(ops.readout(f.cuda(), pos.cuda(), box_size, scheme).cpu(),
                               ops.readout(f, pos, box_size, scheme), rtol=tol, atol=tol)
