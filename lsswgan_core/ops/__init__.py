"""The compiled ops with their autograd and fake-tensor registrations.

Every public function takes torch tensors (any device the kernels were built for) or NumPy
arrays; NumPy in gives NumPy out.
"""
from ._util import SCHEME_ORDER
from .histogram import soft_histogram
from .paint import paint, readout
from .peaks import find_peaks
from .power_spectrum import power_spectrum

__all__ = ["SCHEME_ORDER", "find_peaks", "paint", "power_spectrum", "readout",
           "soft_histogram"]
