"""torch.compile(fullgraph=True): every public op, the summary loss and a whole generator step
trace as one graph and give the eager result and gradients, so that a user can compile a
training step that calls them; on every device the kernels are built for."""
import numpy as np
import pytest
import torch

from lsswgan_core import ops
from lsswgan_core.config import SummaryConfig
from lsswgan_core.gan.losses import generator_loss, summary_loss
from lsswgan_core.gan.models import Critic, Generator

torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)


# one case per public op: a function of differentiable float64 inputs -> tensors
CASES = {
    "paint": lambda pos, w, cubes: (ops.paint(pos, 8, 10.0, weights=w, scheme="tsc"),),
    "readout": lambda pos, w, cubes: (ops.readout(cubes[0, :8, :8, :8], pos, 10.0,
                                                  scheme="cic"),),
    "find_peaks": lambda pos, w, cubes: (ops.find_peaks(cubes.detach(), radius=2,
                                                        boundary="open") * cubes,),
    "power_spectrum": lambda pos, w, cubes: ops.power_spectrum(cubes, 50.0, mas="cic"),
    "soft_histogram": lambda pos, w, cubes: (ops.soft_histogram(cubes.flatten(1), 0.0, 1.0, 16,
                                                                weights=cubes.flatten(1)),),
}


def test_every_public_op_has_a_case():
    public = {name for name in ops.__all__ if callable(getattr(ops, name))}
    assert public == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_compiles_whole_and_matches_eager(name, device):
    rng = np.random.default_rng(7)
    pos = torch.tensor(rng.uniform(0, 10, (200, 3)), device=device, requires_grad=True)
    w = torch.tensor(rng.uniform(0.5, 1.5, 200), device=device, requires_grad=True)
    cubes = torch.tensor(rng.uniform(0, 1, (3, 16, 16, 16)) ** 3, device=device,
                         requires_grad=True)
    fn = CASES[name]
    compiled = torch.compile(fn, fullgraph=True)
    got, ref = compiled(pos, w, cubes), fn(pos, w, cubes)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    probe = [torch.linspace(0.5, 1.5, r.numel(), dtype=r.dtype, device=device).reshape(r.shape)
             for r in ref]
    g = torch.autograd.grad(sum((a * p).sum() for a, p in zip(got, probe) if a.requires_grad),
                            (pos, w, cubes), allow_unused=True)
    g_ref = torch.autograd.grad(sum((b * p).sum() for b, p in zip(ref, probe) if b.requires_grad),
                                (pos, w, cubes), allow_unused=True)
    assert any(x is not None for x in g_ref)
    for a, b in zip(g, g_ref):
        assert (a is None) == (b is None)
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_paint_out_accumulates_in_place_under_compile(device):
    pos = torch.tensor(np.random.default_rng(3).uniform(-5, 15, (300, 3)), device=device)
    grid = torch.ones(8, 8, 8, dtype=torch.float64, device=device)
    torch.compile(lambda p, out: ops.paint(p, 8, 10.0, scheme="cic", out=out),
                  fullgraph=True)(pos, grid)
    torch.testing.assert_close(grid, 1 + ops.paint(pos, 8, 10.0, scheme="cic"))


def test_power_spectrum_recompiles_for_other_shapes_and_bins(device):
    """The mode table is a constant of the graph: another batch or cube side recompiles and
    still gives the eager values and gradients, with default and explicit bins."""
    def spectra(f):
        _, p_default, _ = ops.power_spectrum(f, 50.0, mas="cic")
        k, p_bins, modes = ops.power_spectrum(f, 50.0, bins=[0.1, 0.3, 0.6, 1.0])
        return p_default, p_bins, k, modes

    compiled = torch.compile(spectra, fullgraph=True)
    rng = np.random.default_rng(5)
    for shape in [(2, 8, 8, 8), (3, 8, 8, 8), (3, 10, 10, 10)]:
        f = torch.tensor(rng.normal(size=shape), device=device, requires_grad=True)
        out, ref = compiled(f), spectra(f)
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        (grad,) = torch.autograd.grad(out[0].sum() + out[1].sum(), f)
        (grad_ref,) = torch.autograd.grad(ref[0].sum() + ref[1].sum(), f)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("pk_bins", ["nyquist", "corner"])
def test_summary_loss_compiles_whole_and_matches_eager(pk_bins):
    cfg = SummaryConfig(pk_bins=pk_bins)
    g = torch.Generator().manual_seed(0)
    real = torch.rand(4, 1, 32, 32, 32, generator=g) ** 3
    fake = (torch.rand(4, 1, 32, 32, 32, generator=g) ** 3).requires_grad_(True)

    def loss(real, fake):
        return summary_loss(real, fake, cfg)[0]

    got, ref = torch.compile(loss, fullgraph=True)(real, fake), loss(real, fake)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
    (grad,) = torch.autograd.grad(got, fake)
    (grad_ref,) = torch.autograd.grad(ref, fake)
    assert grad_ref.abs().max() > 0
    torch.testing.assert_close(grad, grad_ref, rtol=1e-5, atol=1e-6 * grad_ref.abs().max().item())


def test_generator_step_compiles_whole():
    """Generator, critic, adversarial and summary loss in one graph (aot_eager: the capture
    is what is tested, not inductor's code), with the eager loss and generator gradients."""
    torch.manual_seed(0)
    generator, critic = Generator(width=0.125), Critic(width=0.125, minibatch_std=True)
    real = torch.rand(4, 1, 32, 32, 32) ** 3
    z = torch.randn(4, 256)

    def step(z, real):
        return generator_loss(critic, generator(z), real, 0.3, SummaryConfig(pk_bins="corner"))[0]

    # the step changes buffers (BatchNorm statistics, the power iteration): same start for both
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in (generator, critic)]
    ref = step(z, real)
    grads_ref = torch.autograd.grad(ref, list(generator.parameters()))
    for m, state in zip((generator, critic), saved):
        m.load_state_dict(state)
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(z, real)
    grads = torch.autograd.grad(got, list(generator.parameters()))
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=0)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * b.abs().max().item())
