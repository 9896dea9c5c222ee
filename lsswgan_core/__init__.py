"""lsscore: summary-driven 3D WGAN-GP emulators of the cosmic web.

The statistics kernels are usable on their own, on torch tensors or NumPy arrays::

    import lsswgan_core as lc
    grid = lc.ops.paint(positions, n=256, box_size=1000.0, scheme="cic")

`ops`, `stats`, `build_info` and `BuildError` load on first use (they need torch and the
compiled extension), so that the leaves (`lsswgan_core.config`, `files`, `resources`,
`progress`) import without them: the CLI reads its choices from the config before any build.
"""
import importlib

from ._version import __version__

__all__ = ["__version__", "BuildError", "build_info", "ops", "stats"]


def __getattr__(name: str):
    if name in ("ops", "stats"):
        return importlib.import_module(f".{name}", __name__)
    if name in ("BuildError", "build_info"):
        return getattr(importlib.import_module("._ext", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
