"""Gadget binary snapshots: Gadget-2 SnapFormat 1 and 2 (either endianness, float32 or float64
positions, 32- or 64-bit IDs, with or without a MASS block, one or many files), the L-Gadget2
header of the Indra and Millennium suites, and the Gadget-4 native header.

Every size is checked against the file before anything sized from a header is allocated;
positions are read in chunks, so memory is bounded by the chunk, never the snapshot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..files import atomic_file
from .base import Snapshot, SnapshotError, guess_length_factor, log

_G2_FIELDS = [("npart", "u4", 6), ("massarr", "f8", 6), ("time", "f8", 1), ("redshift", "f8", 1),
              ("flag_sfr", "i4", 1), ("flag_feedback", "i4", 1), ("nall", "u4", 6),
              ("flag_cooling", "i4", 1), ("num_files", "i4", 1), ("box_size", "f8", 1),
              ("omega0", "f8", 1), ("omega_lambda", "f8", 1), ("hubble", "f8", 1),
              ("flag_age", "i4", 1), ("flag_metals", "i4", 1), ("nall_hw", "u4", 6),
              ("fill", "V64", 1)]
# Gadget-4: 64-bit counts, no cosmology in the header (it is in the parameter file).
_G4_FIELDS = [("npart", "i8", 6), ("nall", "i8", 6), ("massarr", "f8", 6), ("time", "f8", 1),
              ("redshift", "f8", 1), ("box_size", "f8", 1), ("num_files", "i4", 1),
              ("pad", "i4", 1), ("ntrees", "i8", 1), ("tot_ntrees", "i8", 1)]


def _dtype(fields, endian):
    return np.dtype([(name, endian + kind, (n,)) if n > 1 else (name, endian + kind)
                     for name, kind, n in fields])


HEADER_SIZES = {256: "gadget2", 192: "gadget4"}


@dataclass
class _FileLayout:
    path: Path
    endian: str
    snap_format: int           # 1 or 2
    flavour: str               # gadget2, lgadget2, gadget4
    header: np.void
    npart: np.ndarray          # int64 per type in this file
    pos_offset: int            # byte offset of the first position
    pos_itemsize: int          # 4 or 8


def _read_exact(f, path, n, what):
    data = f.read(n)
    if len(data) != n:
        raise SnapshotError(path, f"truncated in {what}: wanted {n} bytes, got {len(data)}")
    return data


def _marker(f, path, endian, what):
    return int(np.frombuffer(_read_exact(f, path, 4, what), dtype=endian + "u4")[0])


def _scan(path: Path) -> _FileLayout:
    """Reads one file's header and locates its POS block, checking every size first."""
    try:
        size = path.stat().st_size
        f = open(path, "rb")
    except OSError as exc:
        raise SnapshotError(path, f"cannot open: {exc.strerror}") from None
    with f:
        first = _read_exact(f, path, 4, "the first record marker")
        endian = None
        for e in ("<", ">"):
            if int(np.frombuffer(first, dtype=e + "u4")[0]) in (8, 192, 256):
                endian = e
                break
        if endian is None:
            raise SnapshotError(path, "not a Gadget snapshot: the first record marker is "
                                f"{np.frombuffer(first, dtype='<u4')[0]} (expected 256, 192 or 8)")
        marker = int(np.frombuffer(first, dtype=endian + "u4")[0])
        snap_format = 1
        if marker == 8:  # SnapFormat 2: a label record before every block
            label = _read_exact(f, path, 4, "the HEAD label")
            _read_exact(f, path, 4, "the HEAD label")
            if _marker(f, path, endian, "the HEAD label") != 8 or label != b"HEAD":
                raise SnapshotError(path, f"SnapFormat 2 file whose first block is {label!r}, "
                                    "not HEAD")
            snap_format = 2
            marker = _marker(f, path, endian, "the header marker")
        if marker not in HEADER_SIZES:
            raise SnapshotError(path, f"header record of {marker} bytes (expected 256 or 192)")
        flavour = HEADER_SIZES[marker]
        fields = _G2_FIELDS if flavour == "gadget2" else _G4_FIELDS
        header = np.frombuffer(_read_exact(f, path, marker, "the header"),
                               dtype=_dtype(fields, endian))[0]
        if _marker(f, path, endian, "the header's closing marker") != marker:
            raise SnapshotError(path, "the header's closing record marker does not match")
        npart = np.asarray(header["npart"], dtype=np.int64)
        if np.any(npart < 0):
            raise SnapshotError(path, f"negative particle counts in the header: {npart.tolist()}")
        total = sum(int(c) for c in npart)  # Python ints: int64 counts may overflow a sum
        if snap_format == 2:
            # find the POS block by its label
            while True:
                if f.tell() + 16 > size:
                    raise SnapshotError(path, "no POS block")
                if _marker(f, path, endian, "a block label") != 8:
                    raise SnapshotError(path, f"bad block label record at byte {f.tell() - 4}")
                label = _read_exact(f, path, 4, "a block label")
                _read_exact(f, path, 4, "a block label")
                _marker(f, path, endian, "a block label")
                if label == b"POS ":
                    break
                skip = _marker(f, path, endian, f"block {label!r}")
                if f.tell() + skip + 4 > size:
                    raise SnapshotError(path, f"block {label!r} of {skip} bytes runs past the end "
                                        f"of the {size}-byte file")
                f.seek(skip, 1)
                if _marker(f, path, endian, f"block {label!r}") != skip:
                    raise SnapshotError(path, f"block {label!r}: closing marker does not match")
        pos_marker = _marker(f, path, endian, "the POS block marker")
        pos_offset = f.tell()
        itemsize = None
        for candidate in (4, 8):
            if pos_marker == (3 * candidate * total) % 2**32:
                itemsize = candidate
                break
        if itemsize is None:
            raise SnapshotError(path, f"POS block of {pos_marker} bytes does not hold the header's "
                                f"{total} particles as float32 or float64 triples")
        end = pos_offset + 3 * itemsize * total
        if end + 4 > size:
            raise SnapshotError(path, f"truncated: the POS block of {total} particles needs "
                                f"{end + 4} bytes, the file has {size}")
        f.seek(end)
        if _marker(f, path, endian, "the POS block's closing marker") != pos_marker:
            raise SnapshotError(path, "the POS block's closing record marker does not match")
    return _FileLayout(path, endian, snap_format, flavour, header, npart, pos_offset, itemsize)


_NUMBERED = re.compile(r"^(.*)\.(\d+)$")


def gadget_files(path: Path) -> tuple[Path | None, list[Path]]:
    """The parts of a binary snapshot given as its base name, first file, any part, or a
    snapdir. Returns (base, [existing part 0 or the single file])."""
    if path.is_dir():
        firsts = sorted(p for p in path.iterdir() if p.name.endswith(".0"))
        if not firsts:
            raise SnapshotError(path, "directory holds no '<name>.0' snapshot part")
        if len(firsts) > 1:
            raise SnapshotError(path, f"directory holds several snapshots: "
                                f"{[p.name for p in firsts]}")
        return Path(str(firsts[0])[:-2]), [firsts[0]]
    m = _NUMBERED.match(str(path))
    if m and (path.exists() or Path(m.group(1) + ".0").exists()):
        return Path(m.group(1)), [Path(m.group(1) + ".0")]
    if path.exists():
        return None, [path]
    if Path(str(path) + ".0").exists():
        return path, [Path(str(path) + ".0")]
    raise SnapshotError(path, "no such file (nor a '.0' part)")


class GadgetSnapshot(Snapshot):
    def __init__(self, layouts: list[_FileLayout], length_factor: float, unit_source: str):
        head = layouts[0]
        h = head.header
        npart = np.sum([lay.npart for lay in layouts], axis=0)
        names = h.dtype.names
        cosmology = {}
        if "omega0" in names:
            cosmology = {"Omega0": float(h["omega0"]), "OmegaLambda": float(h["omega_lambda"]),
                         "HubbleParam": float(h["hubble"])}
        redshift = float(h["redshift"])
        super().__init__(files=[lay.path for lay in layouts],
                         format=f"{head.flavour} (SnapFormat {head.snap_format}, "
                                f"{'little' if head.endian == '<' else 'big'}-endian)",
                         box_size=float(h["box_size"]) * length_factor, npart=npart,
                         redshift=redshift, scale_factor=float(h["time"]),
                         cosmology=cosmology, length_factor=length_factor,
                         length_unit_source=unit_source)
        self._layouts = layouts

    def _iter_raw(self, ptype: int, chunk: int) -> Iterator[np.ndarray]:
        for lay in self._layouts:
            count = int(lay.npart[ptype])
            if count == 0:
                continue
            dtype = np.dtype(lay.endian + ("f4" if lay.pos_itemsize == 4 else "f8"))
            start = lay.pos_offset + 3 * lay.pos_itemsize * sum(int(c) for c in lay.npart[:ptype])
            block = "block 'POS '" if lay.snap_format == 2 else "the POS block"
            with open(lay.path, "rb") as f:
                f.seek(start)
                done = 0
                while done < count:
                    k = min(chunk, count - done)
                    data = np.fromfile(f, dtype=dtype, count=3 * k)
                    if data.size != 3 * k:
                        raise SnapshotError(lay.path, "truncated while reading positions")
                    done += k
                    yield lay.path, block, data.reshape(k, 3).astype(dtype.newbyteorder("="),
                                                                      copy=False)


def open_gadget(path: Path, length_factor: float | None) -> GadgetSnapshot:
    base, first = gadget_files(path)
    head = _scan(first[0])
    num_files = int(head.header["num_files"])
    if num_files < 1 or num_files > 1_000_000:
        raise SnapshotError(first[0], f"header says the snapshot has {num_files} files")
    if base is None:
        if num_files != 1:
            raise SnapshotError(first[0], f"header says the snapshot has {num_files} files but "
                                "the file name has no '.N' suffix")
        parts = [first[0]]
    else:
        parts = [Path(f"{base}.{i}") for i in range(num_files)]
        for i, p in enumerate(parts):
            if not p.exists():
                raise SnapshotError(p, f"part {i} of the {num_files}-file snapshot is missing")
    layouts = [head] + [_scan(p) for p in parts[1:]]
    for lay in layouts[1:]:
        for key in ("box_size", "num_files", "redshift"):
            if lay.header[key] != head.header[key]:
                raise SnapshotError(lay.path, f"header {key} = {lay.header[key]} differs from "
                                    f"{head.header[key]} in {head.path.name}")
        if (lay.endian, lay.snap_format, lay.flavour) != (head.endian, head.snap_format, head.flavour):
            raise SnapshotError(lay.path, "format differs from the snapshot's first file")
    # Counts come from the files themselves. The L-Gadget2 header has no NallHW (the slot
    # holds hashtabsize), so Nall is only compared, never trusted.
    total = np.sum([lay.npart for lay in layouts], axis=0)
    nall = np.asarray(head.header["nall"], dtype=np.int64)
    if head.flavour == "gadget2":
        hw = np.asarray(head.header["nall_hw"], dtype=np.int64)
        if np.array_equal(nall + (hw << 32), total):
            pass
        elif np.array_equal(nall, total):
            for lay in layouts:
                lay.flavour = "lgadget2"
        else:
            log.warning("%s: header Nall %s differs from the per-file counts %s; using the "
                        "counts", head.path, nall.tolist(), total.tolist())
    elif not np.array_equal(nall, total):
        log.warning("%s: header NpartTotal %s differs from the per-file counts %s; using the "
                    "counts", head.path, nall.tolist(), total.tolist())
    box = float(head.header["box_size"])
    if not np.isfinite(box) or box <= 0:
        raise SnapshotError(head.path, f"BoxSize {box} is not a positive number")
    source = "argument"
    if length_factor is None:
        length_factor, source = guess_length_factor(box, head.path), "guess"
    return GadgetSnapshot(layouts, length_factor, source)


# ---- writer (tests, and `lsscore simulate`) ---------------------------------------------------

def write_gadget(base, positions: np.ndarray, box_size: float, num_files: int = 1,
                 snap_format: int = 1, endian: str = "<", id_dtype="u4", pos_dtype="f4",
                 mass_block: bool = False, flavour: str = "gadget2", redshift: float = 0.0,
                 omega0: float = 0.3, omega_lambda: float = 0.7, hubble: float = 0.7,
                 velocities: np.ndarray | None = None, particle_mass: float = 1.0) -> list[Path]:
    """Writes dark-matter particles (type 1) as a Gadget binary snapshot: `base` itself when
    num_files == 1, else `base.0` ... `base.{num_files-1}`. Positions in the file's length
    unit. Returns the files written."""
    positions = np.asarray(positions)
    n = len(positions)
    vel = np.zeros_like(positions) if velocities is None else np.asarray(velocities)
    bounds = np.linspace(0, n, num_files + 1).astype(np.int64)
    paths = [Path(base)] if num_files == 1 else [Path(f"{base}.{i}") for i in range(num_files)]
    fields = _G2_FIELDS if flavour in ("gadget2", "lgadget2") else _G4_FIELDS
    for i, path in enumerate(paths):
        lo, hi = bounds[i], bounds[i + 1]
        header = np.zeros((), dtype=_dtype(fields, endian))
        npart = np.zeros(6, dtype=np.int64)
        npart[1] = hi - lo
        header["npart"] = npart
        nall = np.zeros(6, dtype=np.int64)
        nall[1] = n
        header["massarr"] = np.array([0, 0 if mass_block else particle_mass, 0, 0, 0, 0])
        header["time"] = 1.0 / (1.0 + redshift)
        header["redshift"] = redshift
        header["num_files"] = num_files
        header["box_size"] = box_size
        if flavour == "gadget4":
            header["nall"] = nall
        else:
            header["nall"] = nall & 0xFFFFFFFF
            header["omega0"], header["omega_lambda"], header["hubble"] = omega0, omega_lambda, hubble
            if flavour == "lgadget2":
                hw = np.zeros(6, dtype=np.int64)
                hw[0] = 1 << 20  # hashtabsize sits where Gadget-2 keeps NallHW
                header["nall_hw"] = hw
            else:
                header["nall_hw"] = nall >> 32
        blocks = [("HEAD", header.tobytes()),
                  ("POS ", positions[lo:hi].astype(endian + pos_dtype).tobytes()),
                  ("VEL ", vel[lo:hi].astype(endian + pos_dtype).tobytes()),
                  ("ID  ", np.arange(lo, hi).astype(endian + id_dtype).tobytes())]
        if mass_block:
            blocks.append(("MASS", np.full(hi - lo, particle_mass).astype(endian + pos_dtype)
                           .tobytes()))
        m = np.dtype(endian + "u4")
        with atomic_file(path) as f:   # a failed write leaves no torn snapshot file
            for label, data in blocks:
                if snap_format == 2:
                    f.write(np.array(8, m).tobytes() + label.encode() +
                            np.array(len(data) + 8, m).tobytes() + np.array(8, m).tobytes())
                f.write(np.array(len(data), m).tobytes() + data + np.array(len(data), m).tobytes())
    return paths
