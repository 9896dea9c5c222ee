"""Shared fixtures: the devices the kernels can run on, and seeded random generators."""
import numpy as np
import pytest
import torch

import lsswgan_core

DEVICES = ["cpu"]
if torch.cuda.is_available() and lsswgan_core.build_info()["cuda_kernels"]:
    DEVICES.append("cuda")

requires_cuda = pytest.mark.skipif("cuda" not in DEVICES,
                                   reason="needs a GPU and the CUDA kernels")


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
