"""Shared fixtures: the devices the kernels can run on, and seeded random generators."""
import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import lsswgan_core


def _ops_digest() -> str:
    """A digest of the ops' sources (csrc/, beside the package in a checkout; else the built
    _C) and their Python registrations (fake and autograd), read without importing them:
    importing the ops fixes inductor's cache directory. Sources rather than _C's bytes, which
    carry the checkout's path: a fresh clone keeps the cache of the same code."""
    package = Path(lsswgan_core.__file__).parent
    csrc = package.parent / "csrc"
    files = sorted(p for p in csrc.rglob("*") if p.is_file()) if csrc.is_dir() else \
        [Path(importlib.util.find_spec("lsswgan_core._C").origin)]
    h = hashlib.sha1()
    for source in files + sorted((package / "ops").glob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()[:12]


# torch.compile caches its generated C++ kernels on disk, keyed without the CPU capability:
# under ATEN_CPU_CAPABILITY=default it then finds AVX2 kernels of an earlier run, which do not
# compile without AVX2. Its AOT autograd cache keys a graph by the forward alone, so after a
# change to a custom op's backward or schema it would replay the backward compiled before. One
# cache per capability and build of the ops (not set if the caller chose a cache).
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(
    tempfile.gettempdir(),
    f"lsscore-inductor-{torch.backends.cpu.get_cpu_capability().lower()}-{_ops_digest()}"))

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
