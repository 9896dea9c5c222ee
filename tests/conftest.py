"""Shared fixtures: the devices the kernels can run on, and seeded random generators."""
import os
import tempfile

import numpy as np
import pytest
import torch

import lsswgan_core

# torch.compile caches its generated C++ kernels on disk, keyed without the CPU capability:
# under ATEN_CPU_CAPABILITY=default it then finds AVX2 kernels of an earlier run, which do not
# compile without AVX2. One cache per capability (not set if the caller chose a cache).
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"lsscore-inductor-{torch.backends.cpu.get_cpu_capability().lower()}"))

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
