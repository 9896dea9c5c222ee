"""The compiled ops with their autograd and fake-tensor registrations.

Every public function takes torch tensors (any device the kernels were built for) or NumPy
arrays; NumPy in gives NumPy out.
"""
from .paint import SCHEMES, paint, readout

__all__ = ["SCHEMES", "paint", "readout"]
