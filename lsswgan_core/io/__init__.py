"""Snapshot readers. `open_snapshot(path)` recognises the format by itself:

- Gadget binary: SnapFormat 1 and 2, either endianness, float32/float64 positions, 32/64-bit
  IDs, one or many files (`snapshot_063`, `snapshot_063.0`, `snapdir_063/`), the L-Gadget2
  header (Indra, Millennium) and the Gadget-4 native header;
- HDF5 of Gadget-2/3, AREPO, Gadget-4 and SWIFT;
- NumPy `.npy` / `.npz` arrays of shape (N, 3) (give `box_size`).

Positions come out in Mpc/h, chunk by chunk: ``snap.iter_positions(ptype=1, chunk=...)``.
"""
from __future__ import annotations

from pathlib import Path

from .base import DEFAULT_CHUNK, Snapshot, SnapshotError, parse_hubble, parse_length_unit
from .gadget import open_gadget, write_gadget
from .hdf5 import hdf5_parts, open_hdf5, write_hdf5
from .numpy_io import open_numpy

__all__ = ["DEFAULT_CHUNK", "Snapshot", "SnapshotError", "open_snapshot", "write_gadget",
           "write_hdf5"]


def open_snapshot(path, length_unit: str | None = None, box_size: float | None = None,
                  hubble: float | None = None) -> Snapshot:
    """Opens a snapshot of any supported format (see the module docstring).

    Args:
        path: a file, the base name of a multi-file snapshot, or a snapshot directory.
        length_unit: 'Mpc/h' or 'kpc/h' for files that do not state their unit (ignored when
            the file does); without it the unit is guessed from BoxSize and the guess logged.
        box_size: the box side in Mpc/h, required for NumPy arrays.
        hubble: h, for files that record lengths without h and do not give h themselves
            (SWIFT initial conditions: `/Units` but no `/Cosmology`); the file's own h wins.
            None or 0: not given.

    Raises:
        SnapshotError: naming the file, for anything unreadable; for positions outside the
            box (raised while iterating); when h is needed and neither file nor caller gives it.
        ValueError: a bad ``length_unit`` or ``hubble``.
    """
    path = Path(path)
    factor = parse_length_unit(length_unit)
    hubble = parse_hubble(hubble)
    if path.suffix in (".npy", ".npz"):
        return open_numpy(path, box_size, factor)
    parts = hdf5_parts(path)
    if parts is not None:
        return open_hdf5(parts, factor, hubble)
    return open_gadget(path, factor)
