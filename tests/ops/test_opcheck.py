"""torch.library.opcheck over every op of the lsscore library (schema, fake kernel, autograd
registration, dispatch under torch.compile), both dtypes, every device. The list of ops is
read from the dispatcher, so an op registered without samples here fails the test."""
import pytest
import torch

import lsswgan_core.ops  # noqa: F401  (registers torch.ops.lsscore and its fake and autograd kernels)

DTYPES = [torch.float32, torch.float64]


def registered_ops():
    return sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("lsscore::"))


def samples(device, dtype):
    """{op name: [argument tuples]}: typical inputs, inputs that need gradients (for the
    autograd checks of the differentiable ops), optional arguments left out, empty inputs."""
    g = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0, grad=False):
        t = (torch.rand(*shape, generator=g, dtype=dtype) * scale).to(device)
        return t.requires_grad_(grad)

    def randn(*shape, grad=False):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device).requires_grad_(grad)

    pos, w, field = rand(40, 3, scale=4.0), rand(40), randn(6, 6, 6)
    none = torch.zeros(0, 3, dtype=dtype, device=device)
    index = torch.tensor([0, -1, 2, 1, 2, 7], dtype=torch.int32, device=device)
    pairs, values = randn(3, 6, 2), rand(2, 30, scale=1.4)
    return {
        "paint": [(rand(40, 3, scale=4.0, grad=True), rand(40, grad=True), 6, 4.0, order)
                  for order in (2, 3)]
        + [(pos, rand(40, grad=True), 6, 4.0, 1), (pos, None, 5, 4.0, 2), (none, None, 4, 1.0, 3)],
        "paint_into": [(field.clone(), pos, w, 4.0, 2), (field.clone(), pos, None, 4.0, 1),
                       (field.clone(), none, None, 4.0, 3)],
        "readout": [(randn(6, 6, 6, grad=True), rand(40, 3, scale=4.0, grad=True), 4.0, order)
                    for order in (2, 3)]
        + [(randn(6, 6, 6, grad=True), pos, 4.0, 1), (field, none, 4.0, 2)],
        "readout_gradient": [(field, pos, w, 4.0, 3), (field, pos, None, 4.0, 2),
                             (field, none, None, 4.0, 1)],
        "find_peaks": [(randn(2, 7, 7, 7), 2, True), (randn(5, 5, 5), 1, False),
                       (randn(0, 5, 5, 5), 2, True)],
        "bin_power": [(randn(3, 6, 2, grad=True), index, rand(6, grad=True), 3),
                      (randn(3, 6, 2, grad=True), index, None, 4),
                      (randn(2, 0, 6, 2), index, None, 3)],
        "bin_power_backward": [(randn(3, 3), pairs, index, rand(6)),
                               (randn(3, 8), pairs, index, None)],
        "soft_histogram": [(rand(2, 30, scale=1.4, grad=True), rand(2, 30, grad=True), 0.2, 1.0, 7),
                           (rand(2, 30, scale=1.4, grad=True), rand(2, 30), 0.2, 1.0, 7),
                           (rand(2, 30, scale=1.4), rand(2, 30, grad=True), 0.2, 1.0, 7),
                           (rand(2, 30, scale=1.4, grad=True), None, -1.0, 1.0, 3),
                           (rand(4, 0), None, 0.0, 1.0, 5)],
        "soft_histogram_backward": [(randn(2, 7), values, rand(2, 30), 0.2, 1.0, 7, [True, True]),
                                    (randn(2, 7), values, rand(2, 30), 0.2, 1.0, 7, [True, False]),
                                    (randn(2, 7), values, rand(2, 30), 0.2, 1.0, 7, [False, True]),
                                    (randn(2, 3), values, None, -1.0, 1.0, 3, [True, False]),
                                    (randn(2, 3), values, None, -1.0, 1.0, 3, [False, False])],
    }


def test_every_registered_op_has_samples():
    assert registered_ops() == sorted(samples("cpu", torch.float64))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", registered_ops())
def test_opcheck(device, dtype, name):
    op = getattr(torch.ops.lsscore, name).default
    for args in samples(device, dtype)[name]:
        torch.library.opcheck(op, args)
