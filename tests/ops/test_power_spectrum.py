"""power_spectrum: against the full-complex-FFT float64 reference, Parseval, a Gaussian random
field of known P(k), compensated CIC shot noise, gradients, bad input (opcheck: tests/ops/test_opcheck.py; torch.compile: tests/test_compile.py)."""
import math

import numpy as np
import pytest
import torch

from lsswgan_core import ops
from lsswgan_core.ops.reference import power_spectrum_reference

from ..conftest import requires_cuda


@pytest.mark.parametrize("n", [8, 15, 16])
@pytest.mark.parametrize("mas", [None, "ngp", "cic", "tsc"])
def test_matches_reference_float64(rng, device, n, mas):
    field = torch.tensor(rng.normal(size=(2, n, n, n)))
    k, pk, modes = ops.power_spectrum(field.to(device), 250.0, mas=mas)
    k_ref, pk_ref, modes_ref = power_spectrum_reference(field, 250.0, mas=mas)
    torch.testing.assert_close(pk.cpu(), pk_ref, rtol=1e-10, atol=0)
    torch.testing.assert_close(k.cpu(), k_ref, rtol=1e-12, atol=0)
    assert torch.equal(modes.cpu(), modes_ref)


def test_matches_reference_float32_and_explicit_bins(rng, device):
    n, box = 16, 100.0
    field = torch.tensor(rng.normal(size=(3, n, n, n)), dtype=torch.float32)
    k_f = 2 * math.pi / box
    edges = k_f * np.array([0.5, 1.7, 2.2, 4.0, 6.5, 9.0, 14.0])
    k, pk, modes = ops.power_spectrum(field.to(device), box, bins=edges)
    k_ref, pk_ref, modes_ref = power_spectrum_reference(field.double(), box, edges=edges)
    assert pk.dtype == torch.float32
    torch.testing.assert_close(pk.cpu().double(), pk_ref, rtol=1e-4, atol=0)
    assert torch.equal(modes.cpu(), modes_ref)


def test_default_bins_from_integer_n2():
    # |n|^2 = 4 sits exactly on the edge 2 k_F: it belongs to bin [2, 3), never to [1, 2)
    n, box = 8, 2 * math.pi  # k_F = 1
    k, pk, modes = ops.power_spectrum(torch.zeros(n, n, n, dtype=torch.float64), box)
    assert k.shape == (3,)
    # modes with 1 <= |n|^2 < 4, full complex space: 6 (|n|=1) + 12 (|n|^2=2) + 8 (3) = 26
    assert modes.tolist()[0] == 26
    # 4 <= |n|^2 < 9: 6 (4) + 24 (5) + 24 (6) + 12 (8) = 66
    assert modes.tolist()[1] == 66
    assert torch.all(pk == 0)


def test_parseval(rng, device):
    n, box = 12, 37.0
    field = torch.tensor(rng.normal(size=(n, n, n)), device=device)
    k_f = 2 * math.pi / box
    edges = [0.5 * k_f, 1e9]  # every mode but k = 0
    _, pk, modes = ops.power_spectrum(field, box, bins=edges)
    total = (pk * modes).sum() * n**6 / box**3       # sum over k != 0 of |F|^2
    f = field.double()
    expected = n**3 * (f**2).sum() - f.sum() ** 2     # n^3 sum f^2 - |F(0)|^2
    torch.testing.assert_close(total.double(), expected, rtol=1e-10, atol=0)


def test_gaussian_random_field_recovers_its_spectrum():
    """A Gaussian random field drawn from P(k) = A k^-1.5 gives P back within cosmic
    variance: chi^2 over the bins of 4 realisations is consistent with its degrees of freedom."""
    n, box = 48, 300.0
    gen = torch.Generator().manual_seed(3)
    k_f = 2 * math.pi / box
    freq = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    half = torch.arange(n // 2 + 1, dtype=torch.float64)
    kx, ky, kz = torch.meshgrid(freq, freq, half, indexing="ij")
    n_abs = torch.sqrt(kx**2 + ky**2 + kz**2)
    pk_true = torch.where(n_abs > 0, 1e4 * (k_f * n_abs.clamp(min=1e-12)) ** -1.5,
                          torch.zeros_like(n_abs))
    # the expectation of each default bin: P averaged over its modes (full complex space)
    index = n_abs.floor().long() - 1
    mult = torch.where((kz == 0) | (kz == n // 2), 1.0, 2.0).double()
    nbins = n // 2 - 1
    expected = torch.stack([(pk_true * mult)[index == b].sum() / mult[index == b].sum()
                            for b in range(nbins)])
    chi2, dof = 0.0, 0
    for _ in range(4):
        white = torch.randn(n, n, n, generator=gen, dtype=torch.float64)
        field = torch.fft.irfftn(torch.fft.rfftn(white) * torch.sqrt(pk_true * n**3 / box**3),
                                 s=(n, n, n))
        k, pk, modes = ops.power_spectrum(field, box)
        # a bin's estimate averages n_modes / 2 independent modes
        var = expected**2 / (modes / 2)
        chi2 += float(((pk - expected) ** 2 / var).sum())
        dof += nbins
    assert abs(chi2 - dof) < 4 * math.sqrt(2 * dof), (chi2, dof)
    # and a spectrum off by 10% is rejected by the same test
    assert float((((pk * 1.1) - expected) ** 2 / var).sum()) > nbins + 4 * math.sqrt(2 * nbins)


def test_compensated_cic_shot_noise_is_flat():
    """Uniform random particles painted with CIC and compensated with mas='cic': after
    subtracting the shot noise 1/nbar the spectrum is consistent with zero (flat to a few
    per cent of the shot noise) below k_Nyq / 2."""
    rng = np.random.default_rng(11)
    n, box, num = 64, 500.0, 64**3 * 2
    pos = rng.uniform(0, box, (num, 3))
    grid = ops.paint(pos, n, box, scheme="cic")
    delta = grid / grid.mean() - 1
    k, pk, modes = ops.power_spectrum(delta, box, mas="cic")
    shot = box**3 / num
    k_nyq = math.pi * n / box
    sel = (k < k_nyq / 2) & (modes > 300)
    residual = (pk[sel] - shot) / shot
    assert sel.sum() >= 8
    # per bin: within 4 sigma of zero (sigma = sqrt(2 / n_modes)) plus the ~1.5% aliasing left
    assert np.all(np.abs(residual) < 4 * np.sqrt(2 / modes[sel]) + 0.02), residual
    # on average: flat to a couple of per cent
    assert abs(np.average(residual, weights=modes[sel])) < 0.02
    # and uncompensated it is clearly not flat at k_Nyq / 2
    _, raw, _ = ops.power_spectrum(delta, box)
    assert raw[sel][-1] / shot < 0.9


def test_gradcheck(rng, device):
    n, box = 6, 10.0
    field = torch.tensor(rng.normal(size=(2, n, n, n)), device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: ops.power_spectrum(f, box, mas="cic")[1], (field,))
    index = torch.tensor([0, -1, 2, 1, 2], device=device, dtype=torch.int32)
    pairs = torch.randn(3, 5, 2, dtype=torch.float64, device=device, requires_grad=True)
    weight = torch.rand(5, dtype=torch.float64, device=device)
    bin_power = torch.ops.lsscore.bin_power
    assert torch.autograd.gradcheck(lambda v: bin_power(v, index, weight, 3), (pairs,))
    # against the definition
    expected = torch.zeros(3, 3, dtype=torch.float64, device=device)
    for m, b in enumerate(index.tolist()):
        if b >= 0:
            expected[:, b] += weight[m] * (pairs[:, m] ** 2).sum(-1)
    torch.testing.assert_close(bin_power(pairs, index, weight, 3), expected)


def test_gradient_matches_reference_autograd(rng):
    n, box = 8, 50.0
    field = torch.tensor(rng.normal(size=(n, n, n)), requires_grad=True)
    probe = torch.tensor(rng.normal(size=3))
    (ops.power_spectrum(field, box, mas="tsc")[1] * probe).sum().backward()
    ref_field = field.detach().clone().requires_grad_()
    (power_spectrum_reference(ref_field, box, mas="tsc")[1] * probe).sum().backward()
    torch.testing.assert_close(field.grad, ref_field.grad, rtol=1e-10, atol=1e-12)


def test_empty_bins_are_zero_not_nan():
    n, box = 8, 2 * math.pi
    edges = [1.0, 1.1, 1.2, 2.0, 100.0]  # [1.1, 1.2) holds no mode
    k, pk, modes = ops.power_spectrum(torch.randn(n, n, n, dtype=torch.float64), box, bins=edges)
    assert modes[1] == 0 and pk[1] == 0 and torch.isfinite(k).all()
    assert k[1] == pytest.approx(1.15)


def test_numpy_in_numpy_out(rng):
    k, pk, modes = ops.power_spectrum(rng.normal(size=(8, 8, 8)).astype(np.float32), 10.0)
    assert all(isinstance(a, np.ndarray) for a in (k, pk, modes))
    assert pk.dtype == np.float32


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 9), 1.0), ValueError, "shape"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 0.0), ValueError, "box_size"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), float("inf")), ValueError, "box_size"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 1e-310), ValueError, "too small"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 1e31), ValueError, "too large"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 1.0, mas="pcs"), ValueError, "mas"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 1.0, bins=[1.0]), ValueError, "bins"),
    (lambda: ops.power_spectrum(torch.zeros(8, 8, 8), 1.0, bins=[2.0, 1.0]), ValueError, "bins"),
    (lambda: ops.power_spectrum(torch.zeros(3, 3, 3), 1.0), ValueError, "n >= 4"),
    (lambda: ops.power_spectrum(torch.full((8, 8, 8), float("nan")), 1.0), ValueError,
     "512 non-finite"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_empty_batch(device):
    field = torch.zeros(0, 8, 8, 8, dtype=torch.float64, device=device, requires_grad=True)
    k, pk, modes = ops.power_spectrum(field, 10.0)
    assert pk.shape == (0, 3) and k.shape == modes.shape == (3,)
    pk.sum().backward()
    assert field.grad.shape == field.shape
    _, pk, _ = ops.power_spectrum(np.zeros((2, 0, 8, 8, 8), dtype=np.float32), 10.0)
    assert pk.shape == (2, 0, 3) and pk.dtype == np.float32


def test_results_do_not_alias_the_cache():
    field = torch.randn(8, 8, 8, dtype=torch.float64)
    k, _, modes = ops.power_spectrum(field, 10.0)
    k.zero_()
    modes.zero_()
    k, _, modes = ops.power_spectrum(field, 10.0)
    assert (k > 0).all() and (modes > 0).all()


def test_raw_bin_power_is_safe_for_any_index():
    bin_power = torch.ops.lsscore.bin_power
    pairs = torch.ones(4, 2)
    # out-of-range entries (negative or >= nbins) leave the mode out, never read or write
    out = bin_power(pairs, torch.tensor([0, 1, 5, -7], dtype=torch.int32), None, 3)
    assert out.tolist() == [2.0, 2.0, 0.0]
    with pytest.raises(RuntimeError, match="int32"):
        bin_power(pairs, torch.tensor([0, 1, 1, 0]), None, 3)
    with pytest.raises(RuntimeError, match="shape"):
        bin_power(torch.ones(4, 3), torch.tensor([0, 1, 1, 0], dtype=torch.int32), None, 3)


@requires_cuda
def test_cpu_and_cuda_agree(rng):
    field = torch.tensor(rng.normal(size=(4, 32, 32, 32)), dtype=torch.float32)
    for mas in (None, "cic"):
        _, cpu, _ = ops.power_spectrum(field, 100.0, mas=mas)
        _, gpu, _ = ops.power_spectrum(field.cuda(), 100.0, mas=mas)
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=0)


def test_corner_bins_count_every_mode_and_continue_the_default_bins(rng):
    n, box = 8, 20.0
    field = torch.tensor(rng.normal(size=(2, n, n, n)))
    k, pk, modes = ops.power_spectrum(field, box, bins="corner")
    k0, pk0, modes0 = ops.power_spectrum(field, box)
    assert modes.sum() == n**3 - 1                     # every mode but k = 0
    assert k.max() * box / (2 * math.pi) <= math.sqrt(3) * n / 2
    torch.testing.assert_close(pk[..., :len(pk0[0])], pk0, rtol=1e-12, atol=0)
    torch.testing.assert_close(modes[:len(modes0)], modes0)
    with pytest.raises(ValueError, match="corner"):
        ops.power_spectrum(field, box, bins="edge")
