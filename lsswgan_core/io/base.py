"""What every snapshot reader returns, and the unit conventions."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

log = logging.getLogger("lsscore.io")

DEFAULT_CHUNK = 1 << 20
MPC_IN_CM = 3.085678e24
LENGTH_UNITS = {"mpc/h": 1.0, "kpc/h": 1e-3}
# positions may sit on the box edges up to rounding (float32 snapshots, wrapped in float32)
BOX_RTOL = 1e-6


class SnapshotError(ValueError):
    """A snapshot that cannot be read: names the file and what is wrong."""

    def __init__(self, path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = str(path)


def parse_length_unit(unit: str | None) -> float | None:
    """'Mpc/h' or 'kpc/h' -> factor to Mpc/h."""
    if unit is None:
        return None
    key = unit.strip().lower()
    if key not in LENGTH_UNITS:
        raise ValueError(f"length unit must be one of 'Mpc/h', 'kpc/h', got {unit!r}")
    return LENGTH_UNITS[key]


def parse_hubble(hubble) -> float | None:
    """The caller's h (None or 0 = not given), checked."""
    if hubble is None:
        return None
    try:
        value = float(hubble)
    except (TypeError, ValueError):
        raise ValueError(f"hubble must be a number, got {hubble!r}") from None
    if value == 0:
        return None
    if not np.isfinite(value) or not 0 < value < 10:
        raise ValueError(f"hubble (h = H0 / 100 km/s/Mpc) must be in (0, 10), got {hubble!r}")
    return value


def check_in_box(pos: np.ndarray, box_size: float, path, block: str) -> None:
    """Refuses positions outside [0, box_size) beyond rounding: a block that is not positions
    (say velocities under a swapped SnapFormat-2 label), a wrong BoxSize or a wrong unit
    would otherwise be wrapped into the box by paint without a word."""
    if pos.size == 0:
        return
    tol = BOX_RTOL * box_size
    lo, hi = float(pos.min()), float(pos.max())
    if not (lo >= -tol and hi < box_size + tol):  # also catches NaN
        raise SnapshotError(path, f"{block}: positions must lie in [0, BoxSize = {box_size:.6g} "
                            f"Mpc/h), found values in [{lo:.6g}, {hi:.6g}] (is it really the "
                            "positions block, and are BoxSize and the length unit right?)")
    if len(pos) > 1 and lo == hi == 0.0:
        # what a lost data address reads as (HDF5 returns zeros for data it cannot find, and
        # a pointer moved into padding reads zeros too): no snapshot has every particle at 0
        raise SnapshotError(path, f"{block}: all {len(pos)} positions of a chunk are exactly 0 "
                            "(a corrupt or missing data block)")


def guess_length_factor(box_size: float, path) -> float:
    """Gadget's default unit is kpc/h: a box of >= 5000 units is taken to be in kpc/h."""
    factor = 1e-3 if box_size >= 5000 else 1.0
    log.warning("%s: the file does not state its length unit; BoxSize %.6g read as %s "
                "(pass length_unit= / --length-unit to override)", path, box_size,
                "kpc/h" if factor == 1e-3 else "Mpc/h")
    return factor


@dataclass
class Snapshot:
    """Header facts of a snapshot (all of its files) and a chunked position reader."""

    files: list[Path]
    format: str
    box_size: float                      # Mpc/h
    npart: np.ndarray                    # particles per type, whole snapshot
    redshift: float | None = None
    scale_factor: float | None = None
    cosmology: dict = field(default_factory=dict)
    length_factor: float = 1.0           # file length unit -> Mpc/h
    length_unit_source: str = "file"     # 'file', 'argument' or 'guess'

    def iter_positions(self, ptype: int = 1, chunk: int = DEFAULT_CHUNK) -> Iterator[np.ndarray]:
        """Yields (k, 3) float arrays of positions in Mpc/h, k <= chunk, file by file.

        Raises:
            SnapshotError: naming the file and block, when positions lie outside
                ``[0, box_size)`` by more than ``BOX_RTOL * box_size``, or are not finite.
        """
        if not 0 <= ptype < len(self.npart):
            raise ValueError(f"particle type must be in [0, {len(self.npart)}), got {ptype}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        for path, block, raw in self._iter_raw(ptype, int(chunk)):
            pos = raw * self.length_factor if self.length_factor != 1.0 else raw
            check_in_box(pos, self.box_size, path, block)
            yield pos

    def _iter_raw(self, ptype: int, chunk: int) -> Iterator[tuple[Path, str, np.ndarray]]:
        """Yields (file, block name, (k, 3) positions in the file's unit)."""
        raise NotImplementedError  # pragma: no cover
