"""The paper's critic and generator (Tables 1-3) and the WGAN-GP and summary losses."""
import copy

import pytest
import torch

from lsswgan_core.gan.losses import (SummaryConfig, _interpolate, _penalty, critic_loss,
                                     generator_loss, summary_loss)
from lsswgan_core.gan.models import Critic, Generator


def parameter_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def gradient_penalty(critic, real, fake, rng=None):
    """Per-sample (||grad D(x_hat)||_2 - 1)^2 at x_hat = eps real + (1 - eps) fake."""
    x_hat = _interpolate(real, fake, rng)
    return _penalty(critic(x_hat), x_hat)


def _shapes(model, x):
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d,
                                                        torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return shapes


def test_critic_layers_match_table_1():
    critic = Critic(width=1).eval()
    shapes = _shapes(critic, torch.zeros(2, 1, 32, 32, 32))
    assert shapes == [(64, 16, 16, 16), (128, 8, 8, 8), (256, 4, 4, 4), (512, 4, 4, 4),
                      (512, 4, 4, 4), (1,)]
    assert critic.dense.in_features == 32768
    conv = [(1, 64, 4), (64, 128, 4), (128, 256, 4), (256, 512, 3), (512, 512, 3)]
    expected = sum(i * o * k**3 + o for i, o, k in conv) + 32768 + 1
    assert parameter_count(critic) == expected  # spectral norm adds buffers, not parameters
    print(f"critic parameters at width 1: {expected:,}")


def test_generator_layers_match_tables_2_and_3():
    gen = Generator(width=1).eval()
    shapes = _shapes(gen, torch.zeros(2, 256))
    transposed = [s for s in shapes if len(s) == 4]
    assert shapes[0] == (16384,)
    # each stride-2 TrConv, then the ResBlock's two convolutions keep its shape
    assert transposed == [(128, 8, 8, 8)] * 3 + [(64, 16, 16, 16)] * 3 + [(32, 32, 32, 32)] * 3 + [
        (16, 32, 32, 32), (1, 32, 32, 32)]
    out = gen(torch.randn(3, 256))
    assert out.shape == (3, 1, 32, 32, 32) and out.min() >= 0 and out.max() <= 1
    def res(c):  # two 3^3 convolutions and two BatchNorms
        return 2 * (c * c * 27 + c) + 2 * 2 * c

    expected = (256 * 16384 + 16384
                + sum(i * o * 64 + o + 2 * o + res(o) for i, o in [(256, 128), (128, 64), (64, 32)])
                + (32 * 16 * 27 + 16 + 2 * 16) + (16 * 1 * 27 + 1))
    assert parameter_count(gen) == expected
    print(f"generator parameters at width 1: {expected:,}")


def test_width_scales_channels_and_rejects_other_cubes():
    small = Critic(width=0.25)
    assert small.dense.in_features == 64 * 128
    assert Generator(width=0.25)(torch.randn(2, 256)).shape == (2, 1, 32, 32, 32)
    with pytest.raises(ValueError, match="32"):
        Critic(cube=64)


def test_gradient_penalty_and_critic_loss():
    torch.manual_seed(0)
    critic = Critic(width=0.125)
    real, fake = torch.rand(4, 1, 32, 32, 32), torch.rand(4, 1, 32, 32, 32)
    gp = gradient_penalty(critic, real, fake)
    assert gp.shape == (4,) and torch.all(gp >= 0)
    # a linear critic with a unit-norm gradient has zero penalty
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32**3, 1, bias=False))
    with torch.no_grad():
        linear[1].weight.fill_(1.0 / 32**1.5)
    assert torch.allclose(gradient_penalty(linear, real, fake), torch.zeros(4), atol=1e-8)
    loss, w, gp_mean = critic_loss(critic, real, fake)
    loss.backward()
    assert all(p.grad is not None for p in critic.parameters() if p.requires_grad)


def test_summary_loss_zero_for_identical_batches_positive_otherwise():
    torch.manual_seed(1)
    real = torch.rand(6, 1, 32, 32, 32) ** 3
    zero, terms = summary_loss(real, real.clone())
    assert zero.item() == pytest.approx(0.0, abs=1e-12)
    other, terms = summary_loss(real, torch.rand(6, 1, 32, 32, 32))
    assert other.item() > 0 and all(t.item() > 0 for t in terms.values())


def test_summary_units_fixed_or_from_the_batch():
    """With the real batch's own units the loss is unchanged; other units change it."""
    from lsswgan_core.gan.losses import summary_statistics

    torch.manual_seed(4)
    real, fake = torch.rand(4, 1, 32, 32, 32) ** 3, torch.rand(4, 1, 32, 32, 32) ** 2
    cfg = SummaryConfig()
    own = {k: v.mean() for k, v in summary_statistics(real, cfg).items()}
    base, _ = summary_loss(real, fake, cfg)
    same, _ = summary_loss(real, fake, cfg, units=own)
    torch.testing.assert_close(same, base)
    other, terms = summary_loss(real, fake, cfg, units={k: 2 * v for k, v in own.items()})
    assert not torch.allclose(other, base)


def test_summary_gradient_reaches_the_generator():
    torch.manual_seed(2)
    gen, critic = Generator(width=0.125), Critic(width=0.125)
    real = torch.rand(4, 1, 32, 32, 32) ** 2
    fake = gen(gen.sample_latent(4))
    loss, adversarial, terms = generator_loss(critic, fake, real, lambda_summ=0.3,
                                              summary=SummaryConfig())
    assert set(terms) == {"pk", "mass", "peak"}
    loss.backward()
    grads = [p.grad for p in gen.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    # the summary part alone also reaches the generator
    gen.zero_grad()
    s, _ = summary_loss(real, gen(gen.sample_latent(4)))
    s.backward()
    assert gen.dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("upsample,padding", [("nearest", "replicate"), ("trilinear", "reflect"),
                                              ("transposed", "zeros")])
def test_generator_options_shapes_and_range(upsample, padding):
    torch.manual_seed(0)
    gen = Generator(width=0.125, upsample=upsample, padding=padding)
    out = gen(torch.randn(3, 256))
    assert out.shape == (3, 1, 32, 32, 32) and 0 <= out.min() and out.max() <= 1
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.Conv3d)]
    assert all(c.padding_mode == padding for c in convs)
    if upsample != "transposed":
        assert not any(isinstance(m, torch.nn.ConvTranspose3d) for m in gen.modules())
    with pytest.raises(ValueError, match="upsample must be one of"):
        Generator(upsample="pixelshuffle")


def test_interpolating_generator_has_no_period_two_lattice_at_init():
    """A stride-2 transposed convolution at initialisation already prints its 2^3 phases into
    the output (power in the |n| >= n/2 shells far above its neighbours'); nearest-neighbour
    upsampling followed by a 3^3 convolution spreads it."""
    from lsswgan_core.ops import power_spectrum

    torch.manual_seed(1)
    ratios = {}
    for upsample in ("transposed", "nearest"):
        gen = Generator(width=0.25, upsample=upsample, padding="replicate" if upsample != "transposed" else "zeros")
        with torch.no_grad():
            x = gen(torch.randn(8, 256))[:, 0]
        k, p, n_modes = power_spectrum(x - x.mean(), 1.0, bins=torch.arange(1, 29) * 2 * torch.pi - 1e-6)
        p = p.mean(0)
        ratios[upsample] = float(p[-4:].mean() / p[8:12].mean())   # the corner vs mid shells
    assert ratios["nearest"] < ratios["transposed"]


def test_minibatch_std_keeps_groups_apart_and_the_penalty_per_sample():
    torch.manual_seed(3)
    critic = Critic(width=0.125, minibatch_std=True)
    real, fake = torch.rand(4, 1, 32, 32, 32), torch.rand(4, 1, 32, 32, 32)
    # a group's output does not depend on the other groups
    both = critic(torch.cat([real, fake]), groups=2)
    alone = critic(real, groups=1)
    torch.testing.assert_close(both[:4], alone)
    # detached group: the gradient of D(x_i) reaches only x_i
    x = torch.rand(4, 1, 32, 32, 32, requires_grad=True)
    out = critic(x, groups=1, detach=(0,))
    (grad,) = torch.autograd.grad(out[0, 0], x)
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0
    out = critic(x, groups=1)
    (grad,) = torch.autograd.grad(out[0, 0], x)
    assert grad[1:].abs().sum() > 0                      # not detached: the batch statistic
    loss, w, gp = critic_loss(critic, real, fake)
    loss.backward()
    assert torch.isfinite(loss) and critic.dense.weight.grad is not None
    with pytest.raises(ValueError, match="equal groups"):
        critic(torch.rand(5, 1, 32, 32, 32), groups=2)


def _one_call_critic_loss(critic, real, fake, rng, gp_lambda=10.0):
    """The reference: real, fake and interpolated cubes in one critic call (one power
    iteration), the penalty through the interpolated third."""

    b = real.shape[0]
    x_hat = _interpolate(real, fake, rng)
    x = torch.cat([real, fake, x_hat])
    out = (critic(x, groups=3, detach=(2,)) if critic.minibatch_std else critic(x)).squeeze(1).float()
    gp = _penalty(out[2 * b:], x_hat)
    return (out[b:2 * b] - out[:b] + gp_lambda * gp).mean()


@pytest.mark.parametrize("minibatch_std", [False, True])
def test_two_call_critic_loss_equals_the_one_call_loss(minibatch_std):
    """critic_loss calls the critic on real + fake, then on the interpolates (so that only
    that call carries the double backward), sharing one spectral-norm power iteration: in
    float64 its loss, its gradients and the power-iteration state equal those of the one-call
    formulation on the same interpolation draws."""
    torch.manual_seed(3)
    critic = Critic(width=0.125, minibatch_std=minibatch_std).double()
    reference = copy.deepcopy(critic)
    real = torch.rand(3, 1, 32, 32, 32, dtype=torch.float64)
    fake = torch.rand(3, 1, 32, 32, 32, dtype=torch.float64)
    loss, _, _ = critic_loss(critic, real, fake, 10.0, torch.Generator().manual_seed(5))
    loss.backward()
    ref = _one_call_critic_loss(reference, real, fake, torch.Generator().manual_seed(5))
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
    for (name, p), q in zip(critic.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-12, msg=name)
    # one power iteration, as in one call (two uncached calls would have run two)
    for (name, u), v in zip(critic.named_buffers(), reference.buffers()):
        torch.testing.assert_close(u, v, rtol=1e-12, atol=0, msg=name)
