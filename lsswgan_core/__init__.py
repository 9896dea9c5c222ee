"""lsscore: summary-driven 3D WGAN-GP emulators of the cosmic web.

The statistics kernels are usable on their own, on torch tensors or NumPy arrays::

    import lsswgan_core as lc
    grid = lc.ops.paint(positions, n=256, box_size=1000.0, scheme="cic")
"""
from ._version import __version__
from ._ext import BuildError, build_info
from . import ops, stats

__all__ = ["__version__", "BuildError", "build_info", "ops", "stats"]
