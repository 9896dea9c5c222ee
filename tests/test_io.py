"""Snapshot readers: every format the test writes itself, agreement across formats, units,
and bad files (truncated, corrupt, missing parts, inconsistent headers)."""
import logging
import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsswgan_core.io import SnapshotError, open_snapshot, write_gadget, write_hdf5

from ._helpers import read_positions

BOX = 100.0


@pytest.fixture
def positions(rng):
    return rng.uniform(0, BOX, (3000, 3))


GADGET_VARIANTS = {
    "format1-le": dict(),
    "format2-le": dict(snap_format=2),
    "format1-be": dict(endian=">"),
    "format2-be-3files": dict(snap_format=2, endian=">", num_files=3),
    "ids64-f64-mass": dict(id_dtype="u8", pos_dtype="f8", mass_block=True),
    "2files": dict(num_files=2),
    "lgadget2-2files": dict(flavour="lgadget2", num_files=2),
    "gadget4": dict(flavour="gadget4"),
    "gadget4-format2-2files": dict(flavour="gadget4", snap_format=2, num_files=2),
}


@pytest.mark.parametrize("name", sorted(GADGET_VARIANTS))
def test_gadget_variants_round_trip(tmp_path, positions, name):
    kw = GADGET_VARIANTS[name]
    files = write_gadget(tmp_path / "snap_005", positions, BOX, redshift=1.5, **kw)
    # any way of naming the snapshot works: base name, first file, a later part
    names = [files[0]] if len(files) == 1 else [tmp_path / "snap_005", files[0], files[-1]]
    for path in names:
        snap = open_snapshot(path, length_unit="Mpc/h")
        assert snap.files == files
        assert snap.npart[1] == len(positions) and snap.box_size == BOX
        assert snap.redshift == pytest.approx(1.5)
        read = read_positions(snap)
        tol = 0 if kw.get("pos_dtype") == "f8" else 1e-5
        np.testing.assert_allclose(read, positions, rtol=tol, atol=tol * BOX)
    flavour = kw.get("flavour", "gadget2")
    assert snap.format.startswith(flavour)
    assert ("big" in snap.format) == (kw.get("endian") == ">")


def test_snapdir(tmp_path, positions):
    d = tmp_path / "snapdir_063"
    d.mkdir()
    write_gadget(d / "snapshot_063", positions, BOX, num_files=2)
    snap = open_snapshot(d, length_unit="Mpc/h")
    np.testing.assert_allclose(read_positions(snap), positions, rtol=1e-6)


@pytest.mark.parametrize("flavour", ["gadget", "gadget4", "swift"])
@pytest.mark.parametrize("num_files", [1, 2])
def test_hdf5_flavours(tmp_path, positions, flavour, num_files):
    write_hdf5(tmp_path / "snap", positions, BOX, num_files=num_files, flavour=flavour,
               unit_length_cm=3.085678e24 if flavour == "gadget" else None)
    snap = open_snapshot(tmp_path / "snap" if num_files > 1 else tmp_path / "snap.hdf5")
    assert snap.length_unit_source == "file"
    assert snap.box_size == pytest.approx(BOX)
    np.testing.assert_allclose(read_positions(snap), positions, rtol=1e-12)


def test_every_format_gives_the_same_particles(tmp_path, positions):
    write_gadget(tmp_path / "g", positions, BOX, pos_dtype="f8", num_files=2)
    write_hdf5(tmp_path / "h", positions, BOX, flavour="gadget4")
    np.save(tmp_path / "n.npy", positions)
    np.savez(tmp_path / "z.npz", positions=positions)
    reads = [read_positions(open_snapshot(tmp_path / "g", length_unit="Mpc/h")),
             read_positions(open_snapshot(tmp_path / "h.hdf5")),
             read_positions(open_snapshot(tmp_path / "n.npy", box_size=BOX)),
             read_positions(open_snapshot(tmp_path / "z.npz", box_size=BOX))]
    for r in reads[1:]:
        np.testing.assert_allclose(r, reads[0], rtol=1e-12)


def test_length_units(tmp_path, positions, caplog):
    write_gadget(tmp_path / "kpc", positions * 1000, BOX * 1000)
    with caplog.at_level(logging.WARNING, logger="lsscore.io"):
        snap = open_snapshot(tmp_path / "kpc")
    assert snap.length_unit_source == "guess" and "kpc/h" in caplog.text
    assert snap.box_size == pytest.approx(BOX)
    np.testing.assert_allclose(read_positions(snap), positions, rtol=1e-6)
    snap = open_snapshot(tmp_path / "kpc", length_unit="kpc/h")
    assert snap.length_unit_source == "argument" and snap.box_size == pytest.approx(BOX)
    # a Gadget-4 HDF5 file in kpc/h says so itself; the argument is then ignored
    write_hdf5(tmp_path / "g4", positions * 1000, BOX * 1000, flavour="gadget4",
               unit_length_cm=3.085678e21)
    snap = open_snapshot(tmp_path / "g4.hdf5", length_unit="Mpc/h")
    assert snap.length_unit_source == "file" and snap.box_size == pytest.approx(BOX)
    with pytest.raises(ValueError, match="length unit"):
        open_snapshot(tmp_path / "kpc", length_unit="parsec")


def _expect_error(path, match, **kw):
    with pytest.raises(SnapshotError, match=match) as info:
        read_positions(open_snapshot(path, **kw))
    assert str(path.name) in str(info.value) or info.value.path.endswith(path.name)


def test_bad_files(tmp_path, positions):
    (f,) = write_gadget(tmp_path / "good", positions, BOX)
    data = f.read_bytes()
    # truncated inside the POS block
    (tmp_path / "trunc").write_bytes(data[:2000])
    _expect_error(tmp_path / "trunc", "truncated", length_unit="Mpc/h")
    # a wrong first record marker
    (tmp_path / "marker").write_bytes(np.array(123, "<u4").tobytes() + data[4:])
    _expect_error(tmp_path / "marker", "first record marker", length_unit="Mpc/h")
    # a header claiming many more particles than the file holds: refused before allocating
    bad = bytearray(data)
    bad[4 + 4:4 + 8] = np.array(2**31 - 1, "<u4").tobytes()
    (tmp_path / "claims").write_bytes(bytes(bad))
    _expect_error(tmp_path / "claims", "POS block", length_unit="Mpc/h")
    # an unknown format
    (tmp_path / "text.dat").write_text("hello, not a snapshot\n" * 20)
    _expect_error(tmp_path / "text.dat", "not a Gadget snapshot")
    # no such file
    with pytest.raises(SnapshotError, match="no such file"):
        open_snapshot(tmp_path / "nothing")


def test_missing_part_and_inconsistent_headers(tmp_path, positions):
    files = write_gadget(tmp_path / "multi", positions, BOX, num_files=3)
    os.remove(files[1])
    _expect_error(tmp_path / "multi.1", "part 1 of the 3-file snapshot is missing",
                  length_unit="Mpc/h")
    files = write_gadget(tmp_path / "mixed", positions, BOX, num_files=2)
    other = write_gadget(tmp_path / "other", positions, 2 * BOX, num_files=2)
    files[1].write_bytes(other[1].read_bytes())
    _expect_error(files[1], "box_size", length_unit="Mpc/h")
    # HDF5 with a missing part
    parts = write_hdf5(tmp_path / "h", positions, BOX, num_files=2)
    os.remove(parts[1])
    with pytest.raises(SnapshotError, match="missing"):
        open_snapshot(parts[0])


def test_numpy_errors(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((5, 2)))
    with pytest.raises(SnapshotError, match=r"\(N, 3\)"):
        open_snapshot(tmp_path / "bad.npy", box_size=1.0)
    np.save(tmp_path / "ok.npy", np.zeros((5, 3)))
    with pytest.raises(SnapshotError, match="box_size"):
        open_snapshot(tmp_path / "ok.npy")


def test_reading_is_chunked_and_memory_bounded(tmp_path, rng):
    num = 1 << 20
    write_gadget(tmp_path / "big", rng.uniform(0, BOX, (num, 3)), BOX, num_files=2)
    snap = open_snapshot(tmp_path / "big", length_unit="Mpc/h")
    chunk = 1 << 14
    tracemalloc.start()
    count = 0
    for block in snap.iter_positions(chunk=chunk):
        assert block.shape[0] <= chunk
        count += len(block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == num
    # a few chunks of float32 triples, never the 12 MiB of the whole snapshot
    assert peak < 8 * chunk * 3 * 4, peak


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(variant=st.sampled_from(sorted(GADGET_VARIANTS)), data=st.data())
def test_fuzz_truncated_and_corrupted_files(tmp_path_factory, variant, data):
    """Truncate a valid file or corrupt its structure (anything but the position payload):
    reading gives a SnapshotError or exactly the original positions, never anything else."""
    tmp = tmp_path_factory.mktemp("fuzz")
    pos = np.random.default_rng(0).uniform(0, BOX, (50, 3))
    kw = dict(GADGET_VARIANTS[variant], num_files=1)
    (path,) = write_gadget(tmp / "s", pos, BOX, **kw)
    raw = bytearray(path.read_bytes())
    original = read_positions(open_snapshot(path, length_unit="Mpc/h"))
    itemsize = 8 if kw.get("pos_dtype") == "f8" else 4
    header_len = (16 if kw.get("snap_format") == 2 else 0) + 8 + (192 if kw.get("flavour") == "gadget4" else 256)
    payload_start = header_len + (16 if kw.get("snap_format") == 2 else 0) + 4
    payload = range(payload_start, payload_start + 3 * itemsize * len(pos))
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(raw) - 1).filter(lambda j: j not in payload))
            raw[i] = data.draw(st.integers(0, 255))
    path.write_bytes(bytes(raw))
    try:
        out = read_positions(open_snapshot(path, length_unit="Mpc/h"))
    except SnapshotError:
        return
    np.testing.assert_array_equal(out, original)


def test_gadget4_counts_that_overflow_int64_are_a_snapshot_error(tmp_path, positions):
    # two huge counts whose int64 sum wraps to 3000 - 2^63, keeping the POS marker consistent
    (f,) = write_gadget(tmp_path / "g4", positions, BOX, flavour="gadget4")
    raw = bytearray(f.read_bytes())
    npart = np.frombuffer(raw[4:4 + 48], "<i8").copy()
    npart[0] = npart[2] = 2**62
    raw[4:4 + 48] = npart.tobytes()
    (tmp_path / "overflow").write_bytes(bytes(raw))
    _expect_error(tmp_path / "overflow", "truncated", length_unit="Mpc/h")


def _swap_labels(path, a: bytes, b: bytes):
    """Swaps two SnapFormat-2 (little-endian) block labels, each after its 8-byte marker."""
    mark, tmp = np.array(8, "<u4").tobytes(), b"\x01tmp"
    raw = path.read_bytes().replace(mark + a, mark + tmp).replace(mark + b, mark + a)
    path.write_bytes(raw.replace(mark + tmp, mark + b))


def test_positions_outside_the_box_are_a_snapshot_error(tmp_path, positions, rng):
    vel = rng.normal(0, 300, positions.shape)
    (f,) = write_gadget(tmp_path / "swapped", positions, BOX, snap_format=2, velocities=vel)
    _swap_labels(f, b"POS ", b"VEL ")  # velocities now carry the POS label
    _expect_error(f, "block 'POS '.*BoxSize", length_unit="Mpc/h")
    (f,) = write_gadget(tmp_path / "small_box", positions, BOX / 2)
    _expect_error(f, "the POS block", length_unit="Mpc/h")
    (h,) = write_hdf5(tmp_path / "h", positions, BOX / 2, flavour="gadget4")
    _expect_error(h, "PartType1/Coordinates")
    np.save(tmp_path / "n.npy", positions)
    _expect_error(tmp_path / "n.npy", "positions array", box_size=BOX / 2)
    nan = positions.copy()
    nan[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    _expect_error(tmp_path / "nan.npy", "nan", box_size=BOX)


def test_positions_on_the_box_edges_within_rounding_are_accepted(tmp_path, positions):
    edge = positions.copy()
    edge[0] = BOX * (1 + 1e-7)  # float32 rounding of a position just below BOX
    edge[1] = -BOX * 1e-7
    (f,) = write_gadget(tmp_path / "edge", edge, BOX)
    assert len(read_positions(open_snapshot(f, length_unit="Mpc/h"))) == len(edge)


def test_swift_without_cosmology_needs_hubble(tmp_path, positions, caplog):
    (f,) = write_hdf5(tmp_path / "ics", positions, BOX, flavour="swift", hubble=0.6774,
                      cosmology_group=False)
    with caplog.at_level(logging.WARNING, logger="lsscore.io"):
        _expect_error(f, "without h.*hubble")
    assert "does not state its length unit" not in caplog.text
    snap = open_snapshot(f, hubble=0.6774)
    assert snap.length_unit_source == "file" and snap.box_size == pytest.approx(BOX)
    np.testing.assert_allclose(read_positions(snap), positions, rtol=1e-12)
    # the file's own h wins over the argument
    (g,) = write_hdf5(tmp_path / "snap", positions, BOX, flavour="swift", hubble=0.6774)
    assert open_snapshot(g, hubble=0.5).box_size == pytest.approx(BOX)
    for bad in (-1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="hubble"):
            open_snapshot(f, hubble=bad)
