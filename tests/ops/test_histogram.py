"""soft_histogram: against the float64 reference, np.histogram on bin centres, conservation
of the in-range weight, gradients, batching, bad input; a hypothesis fuzz over the statistics
ops."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsswgan_core import ops
from lsswgan_core.ops.reference import soft_histogram_reference

from ..conftest import requires_cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(rng, device, dtype, weighted):
    values = torch.tensor(rng.uniform(-1.5, 2.5, (3, 70_000)), dtype=dtype)
    weights = torch.tensor(rng.uniform(0, 2, (3, 70_000)), dtype=dtype) if weighted else None
    ours = ops.soft_histogram(values.to(device), -1.0, 2.0, 17,
                              weights=None if weights is None else weights.to(device)).cpu()
    ref = soft_histogram_reference(values, -1.0, 2.0, 17, weights)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol)


def test_sums_to_in_range_weight(rng, device):
    values = torch.tensor(rng.normal(0, 2, (4, 5000)), device=device)
    weights = torch.tensor(rng.uniform(0, 1, (4, 5000)), device=device)
    hist = ops.soft_histogram(values, -1.0, 3.0, 9, weights=weights)
    inside = (values >= -1) & (values <= 3)
    torch.testing.assert_close(hist.sum(-1), (weights * inside).sum(-1), rtol=1e-12, atol=0)
    values[0, :10] = float("inf")
    values[0, 10:20] = -float("inf")
    hist = ops.soft_histogram(values, -1.0, 3.0, 9)
    assert torch.isfinite(hist).all()


def test_equals_numpy_histogram_on_bin_centres(rng):
    lo, hi, nbins = 2.0, 5.0, 12
    centres = lo + (np.arange(nbins) + 0.5) * (hi - lo) / nbins
    values = rng.choice(centres, size=3000)
    ours = ops.soft_histogram(values, lo, hi, nbins)
    ref, _ = np.histogram(values, bins=nbins, range=(lo, hi))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


def test_batched_equals_per_row(rng, device):
    values = torch.tensor(rng.uniform(0, 1, (2, 3, 400)), device=device)
    hist = ops.soft_histogram(values, 0.0, 1.0, 5)
    assert hist.shape == (2, 3, 5)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(hist[i, j], ops.soft_histogram(values[i, j], 0.0, 1.0, 5))


def test_gradcheck_and_opcheck(rng, device):
    values = torch.tensor(rng.uniform(-0.2, 1.2, (2, 30)), device=device, requires_grad=True)
    weights = torch.tensor(rng.uniform(0.5, 1.5, (2, 30)), device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, w: ops.soft_histogram(v, 0.0, 1.0, 7, weights=w), (values, weights))
    assert torch.autograd.gradcheck(lambda v: ops.soft_histogram(v, 0.0, 1.0, 7), (values,))
    hist_op = torch.ops.lsscore.soft_histogram.default
    torch.library.opcheck(hist_op, (values, weights, 0.0, 1.0, 7))
    torch.library.opcheck(hist_op, (values.detach().float(), None, -1.0, 1.0, 3))
    torch.library.opcheck(torch.ops.lsscore.soft_histogram_backward.default,
                          (torch.randn(2, 7, dtype=torch.float64, device=device),
                           values.detach(), weights.detach(), 0.0, 1.0, 7))


def test_gradient_matches_reference_autograd(rng):
    values = torch.tensor(rng.uniform(0, 1, 500), requires_grad=True)
    probe = torch.tensor(rng.normal(size=8))
    (ops.soft_histogram(values, 0.0, 1.0, 8) * probe).sum().backward()
    ref = values.detach().clone().requires_grad_()
    (soft_histogram_reference(ref, 0.0, 1.0, 8) * probe).sum().backward()
    torch.testing.assert_close(values.grad, ref.grad)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.soft_histogram(torch.rand(10), 1.0, 1.0, 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 2.0, 1.0, 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, float("nan"), 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, 1.0, 0), ValueError, "nbins"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, 1.0, 2.5), ValueError, "nbins"),
    (lambda: ops.soft_histogram(torch.tensor(1.0), 0.0, 1.0, 2), ValueError, "scalar"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, 1.0, 2, weights=torch.rand(9)), ValueError,
     "weights"),
    (lambda: ops.soft_histogram(torch.rand(10).int(), 0.0, 1.0, 2), TypeError, "values"),
    (lambda: ops.soft_histogram(torch.tensor([0.5, float("nan")]), 0.0, 1.0, 2), RuntimeError,
     "1 NaN"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


clean = (RuntimeError, ValueError, TypeError)
anyfloat = st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0.0, 1e300]))


@pytest.mark.filterwarnings("ignore:overflow encountered")
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
       lo=anyfloat, hi=anyfloat, nbins=st.integers(-2, 20), radius=st.integers(-1, 4),
       boundary=st.sampled_from(["periodic", "open", "x"]), box=anyfloat,
       dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_fuzz_statistics_ops(shape, lo, hi, nbins, radius, boundary, box, dtype, data):
    """Random shapes and values into soft_histogram, find_peaks and power_spectrum: each call
    returns a well-formed result or raises a clean Python exception."""
    size = int(np.prod(shape)) if shape else 1
    values = np.array(data.draw(st.lists(anyfloat, min_size=size, max_size=size)),
                      dtype=np.float64).astype(dtype).reshape(shape)
    try:
        hist = ops.soft_histogram(values, lo, hi, nbins)
        assert hist.shape == (*values.shape[:-1], nbins)
        assert np.all(np.isfinite(hist)) and np.all(hist >= 0)
        assert np.all(hist.sum(-1) <= values.shape[-1] + 1e-3)
    except clean:
        pass
    try:
        mask = ops.find_peaks(values, radius=radius, boundary=boundary)
        assert mask.shape == values.shape and mask.dtype == bool
        assert not np.any(mask & np.isnan(values))
    except clean:
        pass
    try:
        k, pk, modes = ops.power_spectrum(values, box)
        assert pk.shape == (*values.shape[:-3], len(k)) and np.all(pk >= 0)
        assert np.all(np.isfinite(k)) and np.all(modes >= 0)
    except clean:
        pass


@requires_cuda
def test_cpu_and_cuda_agree(rng):
    values = torch.tensor(rng.normal(size=(16, 32**3)), dtype=torch.float32)
    cpu = ops.soft_histogram(values, -2.0, 2.0, 40)
    gpu = ops.soft_histogram(values.cuda(), -2.0, 2.0, 40).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-3)
