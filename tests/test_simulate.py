"""`lsscore simulate`: the linear spectrum, linear growth on large scales, nonlinear growth on
small scales, mass conservation, determinism, and the snapshot it writes."""
import math

import numpy as np
import pytest

from lsswgan_core import ops
from lsswgan_core.sim.cosmology import Cosmology
from lsswgan_core.io import open_snapshot
from lsswgan_core.sim.simulate import run_simulation, write_suite

from ._helpers import read_positions

N, BOX = 32, 250.0


@pytest.fixture(scope="module")
def sim():
    return run_simulation(N, BOX, seed=5, pm_steps=8)


def test_cosmology_basics():
    c = Cosmology()
    assert c.growth(1.0) == pytest.approx(1.0)
    # growth is ~a early on (matter domination), suppressed by Lambda later
    assert c.growth(0.01) / 0.01 == pytest.approx(c.growth(0.02) / 0.02, rel=2e-3)
    assert c.growth(0.5) < 0.5 / c.growth(1.0) * c.growth(1.0) * 1.3
    a, eps = 0.4, 1e-4
    numeric = (c.growth(a + eps) - c.growth(a - eps)) / (2 * eps)
    assert c.growth_derivative(a) == pytest.approx(numeric, rel=1e-5)
    assert c.sigma_r(8.0, (c.sigma8 / c.sigma_r(8.0)) ** 2) == pytest.approx(c.sigma8, rel=1e-6)
    k = np.geomspace(0.01, 0.3, 200)
    # the baryon wiggles: the ratio to a smooth fit oscillates
    ratio = c.linear_power(k) / np.exp(np.polyval(np.polyfit(np.log(k), np.log(c.linear_power(k)), 4), np.log(k)))
    assert np.ptp(ratio) > 0.03
    assert c.transfer(np.array([1e-5]))[0] == pytest.approx(1.0, abs=1e-3)


def test_initial_field_has_the_linear_spectrum(sim):
    c = Cosmology()
    k, pk, modes = ops.power_spectrum(sim.initial_delta, BOX)
    expected = c.linear_power(k)
    chi2 = np.sum((pk - expected) ** 2 / (expected**2 / (modes / 2)))
    dof = len(k)
    assert abs(chi2 - dof) < 4 * math.sqrt(2 * dof), (chi2, dof)


def test_linear_growth_on_large_scales_nonlinear_on_small(sim):
    c = Cosmology()
    grid = ops.paint(sim.positions, N, BOX, scheme="cic")
    assert grid.sum() == pytest.approx(N**3)  # every particle is in the box: mass conserved
    k, pk, modes = ops.power_spectrum(grid / grid.mean() - 1, BOX, mas="cic")
    k0, p0, _ = ops.power_spectrum(sim.initial_delta, BOX)  # the same realisation, linear
    ratio = pk / p0  # growth relative to linear theory at a = 1, realisation by realisation
    large = k < 0.05
    assert large.any()
    assert np.all(np.abs(ratio[large] - 1) < 0.1), ratio[large]
    small = k > 0.3
    assert small.any() and np.all(pk[small] > 1.3 * c.linear_power(k[small]))


def test_deterministic_and_written_snapshot_reads_back(tmp_path):
    a = run_simulation(16, 100.0, seed=3, pm_steps=3)
    b = run_simulation(16, 100.0, seed=3, pm_steps=3)
    assert np.array_equal(a.positions, b.positions)
    paths = write_suite(tmp_path, 2, 16, 100.0, seed=1, pm_steps=3, show_progress=False)
    again = write_suite(tmp_path / "again", 2, 16, 100.0, seed=1, pm_steps=3, show_progress=False)
    for p, q in zip(paths, again):
        s, t = open_snapshot(p, length_unit="Mpc/h"), open_snapshot(q, length_unit="Mpc/h")
        assert len(s.files) == 2 and s.npart[1] == 16**3 and s.box_size == 100.0
        assert np.array_equal(read_positions(s), read_positions(t))
    first = read_positions(open_snapshot(paths[0], length_unit="Mpc/h"))
    second = read_positions(open_snapshot(paths[1], length_unit="Mpc/h"))
    assert not np.array_equal(first, second)
    assert first.min() >= 0 and first.max() < 100.0


def test_lpt_density_physics():
    """The 2LPT density of a lattice of one particle per cell: no displacement paints 1
    everywhere (mass conserved, no lattice left); a field follows its linear density on large
    scales (the modes line up, correlation near 1) and moves a translated field with it."""
    import torch

    from lsswgan_core import ops
    from lsswgan_core.sim.simulate import gaussian_field, lpt_density

    n, box = 32, 512.0   # 16 Mpc/h cells: the first modes are close to linear at z = 0
    flat = lpt_density(torch.zeros(n, n, n, dtype=torch.float64), box)
    torch.testing.assert_close(flat, torch.ones(n, n, n), rtol=0, atol=1e-5)
    cosmo = Cosmology()
    delta = torch.from_numpy(gaussian_field(n, box, cosmo.linear_power, seed=1))
    rho = lpt_density(delta, box, cosmo)
    assert rho.dtype == torch.float32 and bool((rho >= 0).all())
    assert abs(float(rho.double().mean()) - 1) < 1e-5
    assert float(rho.max()) > 2 and float(rho.min()) < 0.5   # knots and voids
    lin = torch.fft.rfftn(delta)
    non = torch.fft.rfftn(rho.double() - 1)
    low = torch.zeros_like(lin.real, dtype=torch.bool)
    low[:3, :3, :3] = True
    low[0, 0, 0] = False
    corr = (lin[low] * non[low].conj()).sum().real / (lin[low].abs().pow(2).sum()
                                                     * non[low].abs().pow(2).sum()).sqrt()
    assert float(corr) > 0.95
    k, p_lin, _ = ops.power_spectrum(delta, box)
    _, p_lpt, _ = ops.power_spectrum(rho.double() - 1, box)
    assert 0.7 < float(p_lpt[0] / p_lin[0]) < 1.5
    moved = lpt_density(torch.roll(delta, (5, -3, 7), (0, 1, 2)), box, cosmo)
    torch.testing.assert_close(moved, torch.roll(rho, (5, -3, 7), (0, 1, 2)), rtol=0, atol=2e-4)
    with pytest.raises(ValueError, match="n, n, n"):
        lpt_density(torch.zeros(4, 4, 5), box)
