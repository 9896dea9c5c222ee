"""soft_histogram: against the float64 reference, np.histogram on bin centres, conservation
of the in-range weight, gradients, batching, bad input; a hypothesis fuzz over
the statistics ops (opcheck: tests/ops/test_opcheck.py; torch.compile: tests/test_compile.py)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

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


def test_gradcheck(rng, device):
    values = torch.tensor(rng.uniform(-0.2, 1.2, (2, 30)), device=device, requires_grad=True)
    weights = torch.tensor(rng.uniform(0.5, 1.5, (2, 30)), device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, w: ops.soft_histogram(v, 0.0, 1.0, 7, weights=w), (values, weights))
    assert torch.autograd.gradcheck(lambda v: ops.soft_histogram(v, 0.0, 1.0, 7), (values,))


def test_gradient_matches_reference_autograd(rng):
    values = torch.tensor(rng.uniform(0, 1, 500), requires_grad=True)
    probe = torch.tensor(rng.normal(size=8))
    (ops.soft_histogram(values, 0.0, 1.0, 8) * probe).sum().backward()
    ref = values.detach().clone().requires_grad_()
    (soft_histogram_reference(ref, 0.0, 1.0, 8) * probe).sum().backward()
    torch.testing.assert_close(values.grad, ref.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_backward_output_mask(rng, device, dtype, weighted):
    """The backward computes only the gradients asked for (an empty tensor for the others), and
    each the same as when both are asked for; values out of range, on the edges, at +-inf and
    NaN included."""
    values = torch.tensor(rng.uniform(-0.3, 1.3, (3, 5000)), dtype=dtype, device=device)
    values[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    weights = (torch.tensor(rng.uniform(0, 2, (3, 5000)), dtype=dtype, device=device)
               if weighted else None)
    grad = torch.tensor(rng.normal(size=(3, 9)), dtype=dtype, device=device)
    backward = torch.ops.lsscore.soft_histogram_backward
    both = backward(grad, values, weights, 0.0, 1.0, 9, [True, True])
    for mask in ([True, False], [False, True], [False, False]):
        got = backward(grad, values, weights, 0.0, 1.0, 9, mask)
        for wanted, ours, full in zip(mask, got, both):
            if wanted:
                assert torch.equal(ours, full)
            else:
                assert ours.numel() == 0
    assert torch.isfinite(both[0]).all() and (both[0][0, :4] == 0).all()


def test_autograd_asks_only_for_needed_gradients(rng):
    """Weights given but not trained (a mask, as in peak_histogram) get no gradient; values
    not trained neither; what is computed agrees with the float64 reference's autograd."""
    values = torch.tensor(rng.uniform(-0.2, 1.2, (2, 300)))
    weights = torch.tensor(rng.uniform(0, 2, (2, 300)))
    probe = torch.tensor(rng.normal(size=6))
    for train_values, train_weights in ((True, False), (False, True), (True, True)):
        v = values.clone().requires_grad_(train_values)
        w = weights.clone().requires_grad_(train_weights)
        (ops.soft_histogram(v, 0.0, 1.0, 6, weights=w) * probe).sum().backward()
        rv = values.clone().requires_grad_(train_values)
        rw = weights.clone().requires_grad_(train_weights)
        (soft_histogram_reference(rv, 0.0, 1.0, 6, rw) * probe).sum().backward()
        for ours, ref, trained in ((v, rv, train_values), (w, rw, train_weights)):
            if trained:
                torch.testing.assert_close(ours.grad, ref.grad)
            else:
                assert ours.grad is None


@pytest.mark.parametrize("weighted", [False, True])
def test_float32_gradient_matches_float64_reference(rng, weighted):
    """The float32 backward (bins chosen in float32 arithmetic) against the float64 reference's
    autograd on the same values, at the training shape's row length: equal to float32
    precision except within float32's error of a bin centre, where the slope changes and
    either side's is right."""
    lo, hi, nbins = -0.1, 1.1, 64
    values = torch.tensor(rng.uniform(-0.2, 1.2, (4, 32**3)), dtype=torch.float32)
    weights = (torch.tensor(rng.uniform(0, 2, (4, 32**3)), dtype=torch.float32)
               if weighted else None)
    probe = torch.tensor(rng.normal(size=nbins), dtype=torch.float32)
    v = values.clone().requires_grad_()
    w = None if weights is None else weights.clone().requires_grad_()
    (ops.soft_histogram(v, lo, hi, nbins, weights=w) * probe).sum().backward()
    rv = values.double().requires_grad_()
    rw = None if weights is None else weights.double().requires_grad_()
    (soft_histogram_reference(rv, lo, hi, nbins, rw) * probe.double()).sum().backward()
    s = (values.double() - lo) * nbins / (hi - lo) - 0.5
    far = (s - s.round()).abs() > 1e-4
    assert far.float().mean() > 0.99
    torch.testing.assert_close(v.grad[far], rv.grad[far].float(), rtol=2e-6, atol=0)
    if weighted:
        torch.testing.assert_close(w.grad, rw.grad.float(), rtol=1e-5, atol=1e-6)


def test_result_independent_of_thread_count(rng):
    """Rows long enough for several chunks, and many short rows: the same bits at any thread
    count, forward and backward."""
    long = torch.tensor(rng.uniform(-0.1, 1.1, (2, 300_000)), dtype=torch.float32)
    short = torch.tensor(rng.uniform(-0.1, 1.1, (3000, 100)), dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            out = []
            for values in (long, short):
                v = values.clone().requires_grad_()
                hist = ops.soft_histogram(v, 0.0, 1.0, 64, weights=values.abs())
                (hist * torch.arange(64.0)).sum().backward()
                out += [hist, v.grad]
            results.append(out)
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.soft_histogram(torch.rand(10), 1.0, 1.0, 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 2.0, 1.0, 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, float("nan"), 4), ValueError, "lo < hi"),
    (lambda: ops.soft_histogram(torch.rand(10), 0.0, 5e-324, 4), ValueError, "cannot be cut"),
    (lambda: ops.soft_histogram(torch.rand(10), -1e308, 1e308, 4), ValueError, "cannot be cut"),
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


def test_raw_ops_validate_too():
    """The registered ops check their arguments themselves (callers may bypass Python)."""
    lss = torch.ops.lsscore
    with pytest.raises(RuntimeError, match="lo < hi"):
        lss.soft_histogram(torch.rand(10), None, 1.0, 0.0, 4)
    with pytest.raises(RuntimeError, match="cannot be cut"):  # NaN bin positions otherwise
        lss.soft_histogram(torch.zeros(10), None, 0.0, 5e-324, 3)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        lss.soft_histogram_backward(torch.rand(2, 5), torch.rand(2, 10), None, 0.0, 1.0, 4,
                                    [True, False])


# the exceptions the three ops document; any other, or one for an input the checks below call
# valid, fails the fuzz test
documented = (RuntimeError, ValueError, TypeError)
anyfloat = st.one_of(st.floats(-1e6, 1e6), st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0.0, 1e300]))
# any shape, or a batch of cubes (the only shapes find_peaks and power_spectrum accept)
shapes = st.one_of(
    st.lists(st.integers(0, 9), min_size=0, max_size=4).map(tuple),
    st.builds(lambda batch, n: (*batch, n, n, n), st.lists(st.integers(0, 2), max_size=1),
              st.integers(0, 9)))


def _cubic(shape):
    return len(shape) >= 3 and shape[-1] == shape[-2] == shape[-3]


@pytest.mark.filterwarnings("ignore:overflow encountered")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes, lo=st.one_of(st.floats(-10, 0), anyfloat),
       hi=st.one_of(st.floats(0.5, 10), anyfloat), nbins=st.integers(-2, 20),
       radius=st.integers(-1, 4), boundary=st.sampled_from(["periodic", "open", "x"]),
       box=st.one_of(st.floats(1e-3, 1e4), anyfloat, st.sampled_from([5e-324, 1e-310])),
       finite=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]), data=st.data())
def test_fuzz_statistics_ops(shape, lo, hi, nbins, radius, boundary, box, finite, dtype, data):
    """Random shapes and values into soft_histogram, find_peaks and power_spectrum: a valid
    input gives a well-formed result, any other raises one of the documented exceptions."""
    elements = st.floats(-1e6, 1e6) if finite else anyfloat
    values = data.draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    n = shape[-1] if shape else 0

    valid = (values.ndim >= 1 and math.isfinite(lo) and math.isfinite(hi) and lo < hi
             and nbins >= 1 and math.isfinite(hi - lo) and math.isfinite(nbins / (hi - lo))
             and not np.isnan(values).any())
    try:
        hist = ops.soft_histogram(values, lo, hi, nbins)
    except documented:
        assert not valid
    else:
        assert valid
        assert hist.shape == (*values.shape[:-1], nbins)
        assert np.all(np.isfinite(hist)) and np.all(hist >= 0)
        assert np.all(hist.sum(-1) <= values.shape[-1] + 1e-3)

    valid = (_cubic(shape) and 1 <= radius <= 5 and boundary in ("periodic", "open")
             and (boundary == "open" or n >= 2 * radius + 1))
    try:
        mask = ops.find_peaks(values, radius=radius, boundary=boundary)
    except documented:
        assert not valid
    else:
        assert valid
        assert mask.shape == values.shape and mask.dtype == bool
        assert not np.any(mask & np.isnan(values))

    # |values| <= 1e6 keeps |F|^2 and P finite; 1e300 overflows them (a documented error)
    valid = (_cubic(shape) and n >= 4 and math.isfinite(box) and 0 < box <= 1e30
             and math.isfinite(2 * math.pi * n / box) and np.all(np.abs(values) <= 1e6))
    try:
        k, pk, modes = ops.power_spectrum(values, box)
    except documented:
        assert not valid
    else:
        assert valid
        assert pk.shape == (*values.shape[:-3], len(k)) and np.all(pk >= 0)
        assert np.all(np.isfinite(pk)) and np.all(np.isfinite(k)) and np.all(modes >= 0)


@requires_cuda
def test_cpu_and_cuda_agree(rng):
    values = torch.tensor(rng.normal(size=(16, 32**3)), dtype=torch.float32)
    cpu = ops.soft_histogram(values, -2.0, 2.0, 40)
    gpu = ops.soft_histogram(values.cuda(), -2.0, 2.0, 40).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-3)
