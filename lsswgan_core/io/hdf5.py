"""HDF5 snapshots of Gadget-2/3, AREPO, Gadget-4 and SWIFT (`/Header`,
`/PartType1/Coordinates`), one file or many (`snap_063.0.hdf5`, ..., or a snapdir).

Length units: Gadget-4 (and AREPO runs that write it) record `UnitLength_in_cm` in
`/Parameters` or `/Header`, in units that include 1/h; SWIFT records `Unit length in cgs (U_L)`
in `/Units` and writes lengths without h, converted here with the file's h (`/Cosmology`) or,
for files without one (initial conditions), the caller's; never a guessed one.
"""
from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from ..files import atomic_hdf5
from .base import MPC_IN_CM, Snapshot, SnapshotError, guess_length_factor, log

_NUMBERED = re.compile(r"^(.*)\.(\d+)\.(hdf5|h5)$")


# what h5py raises on a corrupt file (besides OSError): bad object headers, attributes
# or addresses surface as RuntimeError, KeyError, ValueError, TypeError or IndexError
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError,
              AttributeError)   # a name that is not a dataset (a committed datatype)


@contextlib.contextmanager
def _corrupt_as_snapshot_error(path: Path):
    """Whatever h5py raises while reading `path` becomes a SnapshotError naming the file."""
    try:
        yield
    except SnapshotError:
        raise
    except _H5_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SnapshotError(path, f"not a readable HDF5 snapshot ({first})") from None


def _h5py():
    import h5py  # noqa: PLC0415

    return h5py


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def hdf5_parts(path: Path) -> list[Path] | None:
    """All parts of a (possibly multi-file) HDF5 snapshot given as any part, a base name or a
    snapdir; None if `path` is not an HDF5 snapshot."""
    if path.is_dir():
        firsts = sorted(p for p in path.iterdir() if re.search(r"\.0\.(hdf5|h5)$", p.name))
        if len(firsts) != 1:
            return None
        path = firsts[0]
    elif not path.exists():
        for ext in ("hdf5", "h5"):
            cand = Path(f"{path}.0.{ext}")
            if cand.exists():
                path = cand
                break
        else:
            return None
    if not is_hdf5(path):
        return None
    m = _NUMBERED.match(str(path))
    if not m:
        return [path]
    return [Path(f"{m.group(1)}.{i}.{m.group(3)}") for i in range(_num_files(path))]


def _attr(group, *names, default=None):
    for name in names:
        if group is not None and name in group.attrs:
            return group.attrs[name]
    return default


def _num_files(path: Path) -> int:
    h5py = _h5py()
    with _corrupt_as_snapshot_error(path), h5py.File(path, "r") as f:
        n = int(np.ravel(_attr(f.get("Header"), "NumFilesPerSnapshot", "NumFiles", default=1))[0])
    if not 1 <= n <= 1 << 20:
        raise SnapshotError(path, f"NumFilesPerSnapshot = {n} is not a file count")
    return n


class HDF5Snapshot(Snapshot):
    def _iter_raw(self, ptype: int, chunk: int) -> Iterator[np.ndarray]:
        h5py = _h5py()
        for path in self.files:
            with _corrupt_as_snapshot_error(path), h5py.File(path, "r") as f:
                name = f"PartType{ptype}/Coordinates"
                if name not in f:
                    continue
                dset = f[name]
                if dset.ndim != 2 or dset.shape[1] != 3:
                    raise SnapshotError(path, f"{name} has shape {dset.shape}, expected (N, 3)")
                _check_allocated(dset, path, name)
                for start in range(0, dset.shape[0], chunk):
                    block = np.asarray(dset[start:start + chunk])
                    if block.dtype.kind != "f":
                        raise SnapshotError(path, f"{name} holds {block.dtype}, not floats")
                    yield path, name, block


def _check_allocated(dset, path: Path, name: str) -> None:
    """libhdf5 reads data it cannot find (a lost chunk, an address past the end of the file)
    as the fill value, zeros, without an error: every chunk, or the contiguous block, must be
    there and inside the file."""
    if dset.size == 0:
        return
    size = os.path.getsize(path)
    if dset.chunks is not None:
        expected = int(np.prod([-(-s // c) for s, c in zip(dset.shape, dset.chunks)]))
        have = dset.id.get_num_chunks()
        if have < expected:
            raise SnapshotError(path, f"{name}: {have} of its {expected} data chunks are "
                                "missing (a corrupt chunk index)")
        spans = []
        if hasattr(dset.id, "chunk_iter"):
            dset.id.chunk_iter(lambda info: spans.append((info.byte_offset, info.size)))
        else:
            spans = [(i.byte_offset, i.size) for i in map(dset.id.get_chunk_info, range(have))]
    else:
        offset = dset.id.get_offset()
        spans = [(offset if offset is not None else size, dset.size * dset.dtype.itemsize)]
        if dset.id.get_storage_size() < dset.size * dset.dtype.itemsize:
            raise SnapshotError(path, f"{name}: its data is shorter than its shape")
    for offset, length in spans:
        if offset is None or offset + length > size:
            raise SnapshotError(path, f"{name}: data at byte {offset} (+{length}) lies past the "
                                f"end of the file ({size} bytes): truncated or corrupt")


def open_hdf5(parts: list[Path], length_factor: float | None,
              hubble: float | None = None) -> HDF5Snapshot:
    h5py = _h5py()
    for i, p in enumerate(parts):
        if not p.exists():
            raise SnapshotError(p, f"part {i} of the {len(parts)}-file snapshot is missing")
    npart = None
    first = None
    for p in parts:
        try:
            f = h5py.File(p, "r")
        except _H5_ERRORS as exc:
            raise SnapshotError(p, f"not a readable HDF5 file ({exc})") from None
        with _corrupt_as_snapshot_error(p), f:
            header = f.get("Header")
            if header is None:
                raise SnapshotError(p, "no /Header group")
            counts = _attr(header, "NumPart_ThisFile")
            if counts is None:
                raise SnapshotError(p, "no NumPart_ThisFile in /Header")
            counts = np.asarray(counts, dtype=np.int64).ravel()
            box = np.asarray(_attr(header, "BoxSize", default=np.nan), dtype=np.float64).ravel()
            for t, c in enumerate(counts):
                name = f"PartType{t}/Coordinates"
                have = f[name].shape[0] if name in f else 0
                if have != c:
                    raise SnapshotError(p, f"header says {c} type-{t} particles, {name} holds {have}")
            facts = {"box": box, "redshift": float(np.ravel(_attr(header, "Redshift", default=np.nan))[0]),
                     "time": float(np.ravel(_attr(header, "Time", "Scale-factor", default=np.nan))[0])}
            if first is None:
                first = facts
                first["cosmology"], first["factor"], first["source"], first["flavour"] = \
                    _units_and_cosmology(f, p, hubble)
            elif not np.array_equal(box, first["box"]) or facts["redshift"] != first["redshift"] \
                    and not (np.isnan(facts["redshift"]) and np.isnan(first["redshift"])):
                raise SnapshotError(p, "BoxSize or Redshift differs from the first file")
            if npart is None:
                npart = np.zeros(len(counts), dtype=np.int64)
            if len(counts) != len(npart):
                raise SnapshotError(p, "NumPart_ThisFile length differs from the first file")
            npart += counts
    box = first["box"]
    if box.size not in (1, 3) or not np.all(np.isfinite(box)) or np.any(box <= 0):
        raise SnapshotError(parts[0], f"BoxSize {box.tolist()} is not a positive number")
    if box.size == 3 and not np.allclose(box, box[0]):
        raise SnapshotError(parts[0], f"box is not cubic: {box.tolist()}")
    factor, source = first["factor"], first["source"]
    if source == "none":
        if length_factor is not None:
            factor, source = length_factor, "argument"
        else:
            factor, source = guess_length_factor(float(box[0]), parts[0]), "guess"
    if not (np.isfinite(factor) and factor > 0 and np.isfinite(float(box[0]) * factor)):
        raise SnapshotError(parts[0], f"the length unit gives a factor {factor} to Mpc/h, "
                            "not a positive number")
    z = first["redshift"]
    return HDF5Snapshot(files=parts, format=f"HDF5 ({first['flavour']})",
                        box_size=float(box[0]) * factor, npart=npart,
                        redshift=None if np.isnan(z) else z,
                        scale_factor=None if np.isnan(first["time"]) else first["time"],
                        cosmology=first["cosmology"], length_factor=factor,
                        length_unit_source=source)


def _units_and_cosmology(f, path, hubble):
    """(cosmology, length factor to Mpc/h, source, flavour) from the file's own records; h
    from the caller (``hubble``) only where the file records lengths without h and gives no h."""
    header, params = f.get("Header"), f.get("Parameters")
    if "Units" in f:  # SWIFT: lengths in U_L, no h
        unit = _attr(f["Units"], "Unit length in cgs (U_L)")
        if unit is None:
            raise SnapshotError(path, "/Units has no 'Unit length in cgs (U_L)'")
        group = f.get("Cosmology")
        cosmo = {} if group is None else {
            k: float(np.ravel(v)[0]) for k, v in group.attrs.items()
            if np.size(v) == 1 and np.issubdtype(np.asarray(v).dtype, np.number)}
        h = cosmo.get("h")
        if h is None:
            if hubble is None:
                raise SnapshotError(path, "lengths are recorded in /Units without h and the file "
                                    "gives no h (no /Cosmology h): pass hubble= (--hubble) to "
                                    "convert them to Mpc/h")
            h = cosmo["h"] = hubble
        elif hubble is not None and not np.isclose(h, hubble, rtol=1e-6):
            log.warning("%s: the file's h = %.6g is used, not the given hubble = %.6g",
                        path, h, hubble)
        if not np.isfinite(h) or h <= 0:
            raise SnapshotError(path, f"h = {h} in /Cosmology is not a positive number")
        return cosmo, float(np.ravel(unit)[0]) / MPC_IN_CM * h, "file", "SWIFT"
    cosmo = {}
    for group in (header, params):
        for key in ("Omega0", "OmegaLambda", "HubbleParam", "OmegaBaryon"):
            value = _attr(group, key)
            if value is not None:
                cosmo[key] = float(np.ravel(value)[0])
    unit = _attr(params, "UnitLength_in_cm")
    if unit is None:
        unit = _attr(header, "UnitLength_in_cm")
    flavour = "Gadget-4" if params is not None and "UnitLength_in_cm" in params.attrs else "Gadget/AREPO"
    if unit is not None:  # Gadget units carry 1/h
        return cosmo, float(np.ravel(unit)[0]) / MPC_IN_CM, "file", flavour
    return cosmo, None, "none", flavour


def write_hdf5(base, positions: np.ndarray, box_size: float, num_files: int = 1,
               flavour: str = "gadget", redshift: float = 0.0, hubble: float = 0.7,
               unit_length_cm: float | None = None, cosmology_group: bool = True) -> list[Path]:
    """Writes type-1 particles as an HDF5 snapshot of the given flavour ('gadget', 'gadget4',
    'swift'): `base.hdf5`, or `base.0.hdf5` ... when num_files > 1. For 'swift' the positions
    are taken in Mpc/h and written in Mpc (no h), as SWIFT does; without `cosmology_group` the
    file has no /Cosmology (as SWIFT initial conditions). The positions carry a Fletcher-32
    checksum per chunk, so that a reader sees a corrupted block or a moved chunk address
    (libhdf5 checks no address) as an error rather than as other numbers."""
    h5py = _h5py()
    n = len(positions)
    bounds = np.linspace(0, n, num_files + 1).astype(np.int64)
    paths = ([Path(f"{base}.hdf5")] if num_files == 1
             else [Path(f"{base}.{i}.hdf5") for i in range(num_files)])
    ntypes = 7 if flavour == "swift" else 6
    for i, path in enumerate(paths):
        lo, hi = bounds[i], bounds[i + 1]
        this = np.zeros(ntypes, dtype=np.uint64 if flavour == "gadget4" else np.int32)
        this[1] = hi - lo
        total = np.zeros(ntypes, dtype=np.uint64 if flavour == "gadget4" else np.uint32)
        total[1] = n
        with atomic_hdf5(path) as (f, _):   # a failed write: no torn file, no h5py crash
            header = f.create_group("Header")
            header.attrs["NumPart_ThisFile"] = this
            header.attrs["NumPart_Total"] = total
            header.attrs["NumFilesPerSnapshot"] = num_files
            header.attrs["Redshift"] = redshift
            header.attrs["Time"] = 1 / (1 + redshift)
            pos = np.asarray(positions[lo:hi], dtype=np.float64)
            if flavour == "swift":
                header.attrs["BoxSize"] = np.full(3, box_size / hubble)
                f.create_group("Units").attrs["Unit length in cgs (U_L)"] = MPC_IN_CM
                if cosmology_group:
                    cosmo = f.create_group("Cosmology")
                    cosmo.attrs["h"] = hubble
                    cosmo.attrs["Omega_m"] = 0.3
                pos = pos / hubble
            else:
                header.attrs["BoxSize"] = box_size
                header.attrs["NumPart_Total_HighWord"] = np.zeros(ntypes, dtype=np.uint32)
                header.attrs["HubbleParam"] = hubble
                header.attrs["Omega0"] = 0.3
                if flavour == "gadget4":
                    params = f.create_group("Parameters")
                    params.attrs["UnitLength_in_cm"] = unit_length_cm or MPC_IN_CM
                    params.attrs["HubbleParam"] = hubble
                elif unit_length_cm is not None:
                    header.attrs["UnitLength_in_cm"] = unit_length_cm
            f.create_dataset("PartType1/Coordinates", data=pos, chunks=True, fletcher32=True)
    return paths
