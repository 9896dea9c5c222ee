"""`lsscore simulate`: small, cheap N-body suites for the demo and the tests.

Gaussian initial conditions from the Eisenstein & Hu linear spectrum (WMAP7 by default),
second-order Lagrangian perturbation theory (2LPT) displacements and momenta, then a few
particle-mesh steps: kick-drift-kick in the scale factor with the FastPM factors (Feng et al.
2016), which make every step exact for linear growth, so a handful of steps evolve the large
scales correctly while the small scales go nonlinear (filaments, knots, voids). Densities are
painted and forces read out with CIC through `lsswgan_core.ops`.

Units: lengths in Mpc/h, time in 1/H0, momentum p = a^2 dx/dt. Equations of motion:
dx/da = p / (a^3 E), dp/da = F / (a E), F = -grad Phi, laplacian Phi = (3/2) Omega_m delta / a.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import ops
from .cosmology import Cosmology
from ..ops.kspace import kgrid
from ..progress import Progress
from ..resources import require_disk, require_memory


@dataclass
class SimulationResult:
    positions: np.ndarray      # (N, 3) Mpc/h, wrapped into the box
    momenta: np.ndarray        # (N, 3) p = a^2 dx/dt
    initial_delta: np.ndarray  # the linear density field on the particle lattice at a = 1
    a_final: float


def _kvectors(n: int, box: float, device=None):
    """kx, ky, kz (h/Mpc, float64, broadcasting to the rfft modes) and |k|^2 (n, n, n//2 + 1)."""
    k_f = 2 * math.pi / box
    g = kgrid(n, device=device)
    kx, ky, kz = (k_f * v.double() for v in (g.nx, g.ny, g.nz))
    k2 = kx**2 + ky**2 + kz**2
    k2[0, 0, 0] = 1.0  # the k = 0 mode is zeroed wherever it is used
    return kx, ky, kz, k2


def gaussian_field(n: int, box: float, power, seed: int) -> np.ndarray:
    """A Gaussian random field on n^3 cells whose power spectrum (the convention of ops.power_spectrum) is
    power(k), k in h/Mpc."""
    gen = torch.Generator().manual_seed(int(seed))
    white = torch.randn(n, n, n, generator=gen, dtype=torch.float64)
    kx, ky, kz, k2 = _kvectors(n, box)
    amp = torch.sqrt(torch.as_tensor(power(np.sqrt(k2.numpy())), dtype=torch.float64) * n**3 / box**3)
    amp[0, 0, 0] = 0.0
    return torch.fft.irfftn(torch.fft.rfftn(white) * amp, s=(n, n, n)).numpy()


def lpt_displacements(delta: np.ndarray, box: float):
    """First- and second-order displacement fields (each (n, n, n, 3)) of a density field:
    psi1 = -grad phi1 with lap phi1 = delta; psi2 = grad phi2 with
    lap phi2 = sum_{i<j} (phi1_ii phi1_jj - phi1_ij^2). x = q + D1 psi1 + D2 psi2."""
    n = delta.shape[0]
    kx, ky, kz, k2 = _kvectors(n, box)
    kvec = (kx, ky, kz)
    delta_k = torch.fft.rfftn(torch.as_tensor(delta))
    phi1 = -delta_k / k2
    phi1[0, 0, 0] = 0
    shape = (n, n, n)
    psi1 = torch.stack([torch.fft.irfftn(-1j * k * phi1, s=shape) for k in kvec], dim=-1)
    d = {}
    for i in range(3):
        for j in range(i, 3):
            d[i, j] = torch.fft.irfftn(-kvec[i] * kvec[j] * phi1, s=shape)
    source = (d[0, 0] * d[1, 1] + d[0, 0] * d[2, 2] + d[1, 1] * d[2, 2]
              - d[0, 1] ** 2 - d[0, 2] ** 2 - d[1, 2] ** 2)
    phi2 = -torch.fft.rfftn(source) / k2
    phi2[0, 0, 0] = 0
    psi2 = torch.stack([torch.fft.irfftn(1j * k * phi2, s=shape) for k in kvec], dim=-1)
    return psi1.numpy(), psi2.numpy()


def lpt_density(delta: torch.Tensor, box: float, cosmology: Cosmology | None = None,
                scheme: str = "tsc", smoothing: float = 0.5) -> torch.Tensor:
    """rho / rhobar (n, n, n, float32, >= 0) of a lattice of one particle per cell displaced
    by 2LPT from the linear density `delta` (n, n, n) at a = 1, painted with `scheme` on the
    same cells and smoothed by a Gaussian of `smoothing` cells: the field's filaments, walls
    and voids at the cost of a dozen FFTs, without gravity's small-scale collapse. One
    particle per cell leaves empty cells in lines along the lattice where particles spread
    out (CIC shows them as axis-aligned streaks); TSC and half a cell of smoothing remove
    them. Lean: float32 fields, the second-order source summed term by term, positions one
    axis at a time (at 256^3 about 1.5 GB)."""
    cosmo = cosmology or Cosmology()
    n = delta.shape[-1]
    if delta.shape != (n, n, n):
        raise ValueError(f"the linear density must be (n, n, n), got {tuple(delta.shape)}")
    shape = (n, n, n)
    device = delta.device
    kx, ky, kz, k2 = (v.float() for v in _kvectors(n, box, device))
    kvec = (kx, ky, kz)
    phi1 = -torch.fft.rfftn(delta.float()) / k2
    phi1[0, 0, 0] = 0

    def second(i, j):  # d_i d_j phi1
        return torch.fft.irfftn(-kvec[i] * kvec[j] * phi1, s=shape)

    diag = [second(i, i) for i in range(3)]
    source = diag[0] * diag[1] + diag[0] * diag[2] + diag[1] * diag[2]
    del diag
    for i, j in ((0, 1), (0, 2), (1, 2)):
        source -= second(i, j) ** 2
    phi2 = -torch.fft.rfftn(source) / k2
    phi2[0, 0, 0] = 0
    del source
    d2 = -3.0 / 7.0 * float(cosmo.omega_m_at(1.0)) ** (-1.0 / 143.0)  # D1(1) = 1
    cell = box / n
    lattice = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) * cell
    pos = torch.empty(n, n, n, 3, dtype=torch.float32, device=device)
    for axis, k in enumerate(kvec):
        psi1 = torch.fft.irfftn(-1j * k * phi1, s=shape)
        psi2 = torch.fft.irfftn(1j * k * phi2, s=shape)
        q = lattice.view([n if a == axis else 1 for a in range(3)])
        x = torch.remainder(q + psi1 + d2 * psi2, box)
        pos[..., axis] = torch.where(x >= box, x - box, x)   # float32 rounding
    rho = ops.paint(pos.view(-1, 3), n, box, scheme=scheme)
    del pos
    if smoothing > 0:
        k2[0, 0, 0] = 0.0
        rho = torch.fft.irfftn(torch.fft.rfftn(rho) * torch.exp(-0.5 * k2 * (smoothing * cell) ** 2),
                               s=shape)
    return (rho / rho.mean()).clamp_(min=0.0)


def _forces(positions: torch.Tensor, mesh: int, box: float, a: float, cosmo: Cosmology,
            kvectors=None):
    """F = -grad Phi at the particles: CIC paint, FFT Poisson solve, CIC readout, in the
    positions' dtype. kvectors: `_kvectors(mesh, box)` in that dtype, if already made."""
    rho = ops.paint(positions, mesh, box, scheme="cic")
    delta = rho / rho.mean() - 1
    kx, ky, kz, k2 = kvectors or (v.to(positions.dtype) for v in _kvectors(mesh, box))
    pot_k = torch.fft.rfftn(delta) / ((a / (-1.5 * cosmo.omega_m)) * k2)
    pot_k[0, 0, 0] = 0
    force = torch.empty_like(positions)
    for i, k in enumerate((kx, ky, kz)):
        grid = torch.fft.irfftn(pot_k * (-1j * k), s=(mesh,) * 3).contiguous()
        force[:, i] = ops.readout(grid, positions, box, scheme="cic")
    return force


MAX_BOX = 1e6   # Mpc/h


def simulation_bytes(particles: int, mesh_factor: int = 2) -> int:
    """A bound on the memory one simulation takes: per particle the linear field, two
    displacement fields, the lattice, positions, momenta and forces (float64, ~30 words);
    per mesh cell the density, its transform and the force grids (~8 words)."""
    return 8 * (30 * particles**3 + 8 * (mesh_factor * particles) ** 3)


def check_simulation(particles: int, box: float, redshift: float, mesh_factor: int = 2) -> None:
    """ValueError for settings no simulation can have, named by their option, before any
    allocation: a box or redshift that is not a finite number in range, a size beyond memory."""
    if not (isinstance(box, (int, float)) and math.isfinite(box) and 0 < box <= MAX_BOX):
        raise ValueError(f"--box-size must be in (0, {MAX_BOX:g}] Mpc/h (the observable "
                         f"universe is ~1e4 Mpc/h across), got {box!r}")
    if not (isinstance(redshift, (int, float)) and math.isfinite(redshift) and redshift >= 0):
        raise ValueError(f"--redshift must be a finite number >= 0, got {redshift!r}")
    if particles < 2 or mesh_factor < 1:
        raise ValueError(f"--particles must be >= 2 and --mesh-factor >= 1, got {particles}, "
                         f"{mesh_factor}")
    require_memory(simulation_bytes(particles, mesh_factor),
                   f"--particles {particles} (with --mesh-factor {mesh_factor})",
                   "choose fewer particles per side")


def run_simulation(particles: int, box: float, seed: int, pm_steps: int = 10,
                   redshift: float = 0.0, a_init: float = 0.1, mesh_factor: int = 2,
                   cosmology: Cosmology | None = None, progress: Progress | None = None
                   ) -> SimulationResult:
    """One simulation of particles^3 particles in a box of side `box` Mpc/h."""
    cosmo = cosmology or Cosmology()
    check_simulation(particles, box, redshift, mesh_factor)
    a_final = 1.0 / (1.0 + redshift)
    if not 0 < a_init < a_final:
        raise ValueError(f"need 0 < a_init < a_final, got {a_init}, {a_final}")
    n = particles
    delta = gaussian_field(n, box, lambda k: cosmo.linear_power(k), seed)
    psi1, psi2 = lpt_displacements(delta, box)
    q = (np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), axis=-1) + 0.5) * (box / n)

    def d1(a):
        return float(cosmo.growth(a))

    def dd1(a):
        return float(cosmo.growth_derivative(a))

    def d2_factor(a):  # D2 = -3/7 D1^2 Omega_m(a)^(-1/143)
        return -3.0 / 7.0 * d1(a) ** 2 * float(cosmo.omega_m_at(a)) ** (-1.0 / 143.0)

    def gp(a):  # G_p = a^3 E dD/da: p = G_p psi in linear theory
        return a**3 * float(cosmo.efunc(a)) * dd1(a)

    a = a_init
    pos = q + d1(a) * psi1 + d2_factor(a) * psi2
    e = float(cosmo.efunc(a))
    mom = a**3 * e * (dd1(a) * psi1 + 2 * d2_factor(a) / d1(a) * dd1(a) * psi2)
    # the particle-mesh steps in float32, the precision of the snapshot's own positions
    # (1.5e-5 Mpc/h in a 256 Mpc/h box): about twice as fast as float64
    pos = torch.as_tensor(pos.reshape(-1, 3), dtype=torch.float32)
    mom = torch.as_tensor(mom.reshape(-1, 3), dtype=torch.float32)
    mesh = mesh_factor * n
    kvec = tuple(v.float() for v in _kvectors(mesh, box))
    steps = np.linspace(a_init, a_final, pm_steps + 1)
    force = _forces(torch.remainder(pos, box), mesh, box, a, cosmo, kvec)
    for a0, a1 in zip(steps[:-1], steps[1:]):
        ac = 0.5 * (a0 + a1)
        # kick a0 -> ac with the force at a0; psi = F a / (1.5 Omega_m D) in linear theory
        mom += force * (a0 / (1.5 * cosmo.omega_m * d1(a0))) * (gp(ac) - gp(a0))
        # drift a0 -> a1 with the momentum at ac
        pos += mom * ((d1(a1) - d1(a0)) / gp(ac))
        pos = torch.remainder(pos, box)
        force = _forces(pos, mesh, box, a1, cosmo, kvec)
        # kick ac -> a1 with the force at a1
        mom += force * (a1 / (1.5 * cosmo.omega_m * d1(a1))) * (gp(a1) - gp(ac))
        if progress is not None:
            progress.update(1)
    pos = torch.where(pos >= box, pos - box, pos)   # remainder(-tiny, L) rounds to L
    return SimulationResult(pos.numpy(), mom.numpy(), delta, a_final)


def write_suite(out_dir, n_sims: int, particles: int, box: float, seed: int, pm_steps: int = 10,
                redshift: float = 0.0, fmt: str = "gadget2", files_per_snapshot: int = 2,
                cosmology: Cosmology | None = None, show_progress: bool = True,
                mesh_factor: int = 2) -> list[Path]:
    """Simulates `n_sims` boxes and writes each as a snapshot under out_dir/sim_XXX/.
    Simulation i uses seed (seed, i): a suite is deterministic per seed."""
    from ..io import write_gadget, write_hdf5  # noqa: PLC0415

    cosmo = cosmology or Cosmology()
    check_simulation(particles, box, redshift, mesh_factor)
    if n_sims < 1:
        raise ValueError(f"--n-sims must be >= 1, got {n_sims}")
    out_dir = Path(out_dir)
    # positions, velocities (float32) and IDs per particle, per snapshot
    require_disk(n_sims * particles**3 * 28, out_dir,
                 f"--n-sims {n_sims} of --particles {particles}", "simulate fewer boxes")
    paths = []
    with Progress(n_sims * pm_steps, "simulate", enabled=show_progress) as bar:
        for i in range(n_sims):
            sim_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            res = run_simulation(particles, box, sim_seed, pm_steps, redshift, cosmology=cosmo,
                                 progress=bar, mesh_factor=mesh_factor)
            sim_dir = out_dir / f"sim_{i:03d}"
            sim_dir.mkdir(parents=True, exist_ok=True)
            base = sim_dir / "snapshot_000"
            # Gadget velocities: peculiar velocity / sqrt(a) in km/s; v = 100 p / a
            vel = 100.0 * res.momenta / res.a_final**1.5
            if fmt == "gadget2":
                write_gadget(base, res.positions, box, num_files=files_per_snapshot,
                             redshift=redshift, omega0=cosmo.omega_m,
                             omega_lambda=cosmo.omega_lambda, hubble=cosmo.h, velocities=vel)
                paths.append(base)
            elif fmt == "hdf5":
                write_hdf5(base, res.positions, box, num_files=files_per_snapshot,
                           flavour="gadget4", redshift=redshift, hubble=cosmo.h)
                paths.append(base)
            else:
                raise ValueError(f"format must be 'gadget2' or 'hdf5', got {fmt!r}")
    return paths
