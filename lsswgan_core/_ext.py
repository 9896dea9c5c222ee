"""Loads the compiled extension `lsswgan_core._C`, which registers the torch ops.

A missing or stale build raises `BuildError` with the command that fixes it instead of a
bare ImportError or an undefined-symbol trace.
"""
from __future__ import annotations

import torch

from ._version import __version__

BUILD_HINT = (
    "build it with `make build` (or `pip install --no-build-isolation -e .` in an "
    "environment that already has torch)"
)


class BuildError(ImportError):
    """The compiled extension is missing, stale or built against another torch."""


def _load():
    try:
        from . import _C  # noqa: PLC0415  (registers torch.ops.lsscore.*)
    except ImportError as exc:
        text = str(exc)
        if "undefined symbol" in text or "cannot open shared object" in text:
            raise BuildError(
                f"lsswgan_core._C does not load with torch {torch.__version__} ({text}); it was "
                f"probably built against another torch: rebuild, {BUILD_HINT}") from None
        raise BuildError(f"lsswgan_core._C is not built: {BUILD_HINT}") from None
    built_torch = str(_C.torch_version)
    if built_torch.split("+")[0] != torch.__version__.split("+")[0]:
        raise BuildError(f"lsswgan_core._C was built against torch {built_torch} but torch "
                         f"{torch.__version__} is installed: rebuild, {BUILD_HINT}")
    if str(_C.version) != __version__:
        raise BuildError(f"lsswgan_core._C is version {_C.version} but the Python package is "
                         f"{__version__}: the build is stale; rebuild, {BUILD_HINT}")
    return _C


_C = _load()


def build_info() -> dict:
    """Facts about the compiled kernels and the torch they run on."""
    return {
        "version": __version__,
        "torch": torch.__version__,
        "built_against_torch": str(_C.torch_version),
        "cuda_kernels": bool(_C.with_cuda),
        "openmp": bool(_C.with_openmp),
        "cpu_threads": torch.get_num_threads(),
        "gpu_visible": torch.cuda.is_available(),
        "gpu_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
