"""Writing files so that a failure never leaves a torn or half-written file under a final name.

`atomic_file(path)` yields a binary file object open on a temporary name in the same
directory (`NAME.HOST.PID.RANDOM.tmp`: unique per writer, so two processes writing one output
never mix their bytes; a killed writer's is removed by the next writer of NAME);
when the body ends the file is fsync'ed and renamed over `path`. When anything fails (disk
full, a file-size limit, a quota, permissions, a missing directory, or an exception of the
body) the temporary file is removed, the previous file (or none) stays under `path`, and a
`WriteError` (an OSError naming `path`) is raised.

The file object never lets a write fail: it records the first failure and discards the bytes
after it. That is what makes HDF5 safe to write: libhdf5 cannot close a file whose writes
failed, and h5py then crashes the interpreter when it tries again at exit ("Can't decrement
id ref count", SIGSEGV). Written through this object (h5py's file-object driver) libhdf5 sees
only successful writes and closes cleanly, and the recorded failure is raised afterwards. The
same holds for torch.save (which turns a failed write into a RuntimeError without the errno)
and numpy. Long writers call `check()` now and then to stop early after a failure.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import secrets
import socket
import time
from pathlib import Path

REASONS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EFBIG: "file too large (a file-size limit was reached)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a part of the path is not a directory",
    errno.EISDIR: "is a directory",
    errno.EIO: "input/output error",
}


class WriteError(OSError):
    """A file that could not be written; `filename` is the final path."""

    def __str__(self):
        return f"cannot write {self.filename}: {REASONS.get(self.errno, self.strerror)}"


def describe(exc: OSError) -> str:
    """One line for an OSError: what failed, the path, and why in words."""
    if isinstance(exc, WriteError):
        return str(exc)
    reason = REASONS.get(exc.errno, exc.strerror or str(exc))
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {reason}" if where is not None else reason


class _Writer(io.RawIOBase):
    """A raw binary file whose writes never fail: the first OSError is kept in `error` and
    what follows is discarded (the position still advances, so the writer's view of the file
    stays consistent)."""

    def __init__(self, fd: int):
        super().__init__()
        self.fd, self.error = fd, None

    def readable(self):
        return True

    def writable(self):
        return True

    def seekable(self):
        return True

    def fileno(self):
        return self.fd

    def readinto(self, buffer):
        return os.readv(self.fd, [buffer])

    def write(self, data):
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):
                    done += os.write(self.fd, view[done:])
                return done
            except OSError as exc:
                self.error = exc
        os.lseek(self.fd, len(view), os.SEEK_CUR)
        return len(view)

    def seek(self, offset, whence=os.SEEK_SET):
        return os.lseek(self.fd, offset, whence)

    def tell(self):
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def truncate(self, size=None):
        size = self.tell() if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def close(self):   # the fd belongs to atomic_file
        super().close()

    def check(self) -> None:
        """Raises the recorded failure (as the OSError it was)."""
        if self.error is not None:
            raise self.error


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of `path` left by killed writers of this host (a SIGKILL leaves no
    time to clean up): removed by the next writer, never those of a live process."""
    prefix = f"{path.name}.{socket.gethostname()}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent if str(path.parent) else "."):
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            pid = entry.name[len(prefix):].split(".")[0]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temporary(path: Path) -> tuple[Path, int]:
    _remove_stale_temporaries(path)
    for _ in range(100):
        tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}."
                             f"{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
    raise WriteError(errno.EEXIST, "could not create a temporary file", str(path))


def _failure(exc: OSError, path: Path) -> WriteError:
    if isinstance(exc, WriteError):
        return exc
    return WriteError(exc.errno or errno.EIO, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object on a temporary name beside `path`, renamed to `path` when the
    body ends and everything was written; see the module docstring. Raises WriteError."""
    path = Path(path)
    try:
        tmp, fd = _temporary(path)
    except OSError as exc:
        raise _failure(exc, path) from None
    writer = _Writer(fd)
    try:
        try:
            yield writer
        except BaseException:
            if writer.error is not None:   # the body failed because a write did
                raise _failure(writer.error, path) from None
            raise
        try:
            writer.check()
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, path)
        except OSError as exc:
            raise _failure(exc, path) from None
        tmp = None
        _sync_directory(path.parent)
    finally:
        writer.close()
        if fd >= 0:
            os.close(fd)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _sync_directory(directory: Path) -> None:
    """Makes a rename durable (best effort: some file systems refuse to fsync a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path, data: bytes) -> Path:
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode())


@contextlib.contextmanager
def atomic_hdf5(path, **kwargs):
    """An h5py.File open for writing on a temporary name, renamed to `path` when the body
    ends (see the module docstring). Yields (file, check): call check() between large
    writes to stop as soon as one has failed. Raises WriteError."""
    import h5py  # noqa: PLC0415

    with atomic_file(path) as raw:
        with h5py.File(raw, "w", **kwargs) as f:
            yield f, raw.check


# ------------------------------------------------------------------ exclusive locks


@contextlib.contextmanager
def exclusive_lock(path, what: str, error=RuntimeError):
    """Holds the lock file `path` while the body runs, so that two processes never write one
    output (`what`, as the user named it). The file records the holder's pid and host and is
    flock'ed by it for as long as it lives; the kernel drops the flock when the holder dies,
    however it dies. It is written under a temporary name, flock'ed, then linked to `path` (an
    exclusive create), so `path` never exists unlocked while its creator lives. A lock left by
    a dead process of this host (no flock on it) is taken over; one recorded by another host
    is refused, since its liveness cannot be checked from here.

    Raises:
        error: `what` is locked by a live process (named by pid and host), or by another host.
    """
    path = Path(path)
    fd = _acquire_lock(path, what, error)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
        os.close(fd)  # drops the flock


def _lock_record() -> bytes:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode() + b"\n"


def _read_holder(fd: int) -> dict:
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _acquire_lock(path: Path, what: str, error) -> int:
    """An fd holding an exclusive flock on `path`, which then records this process."""
    for _ in range(100):  # retried only when the file changes under us
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, _lock_record())
            os.link(tmp, path)
            return fd
        except FileExistsError:
            os.close(fd)
        finally:
            os.unlink(tmp)
        # RUN/lock exists: a live holder keeps its flock; a dead one's is gone
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # released meanwhile: try again
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise error(f"{what} is in use: pid {holder.get('pid', '?')} on host "
                           f"{holder.get('host', '?')} holds {path} (since "
                           f"{holder.get('since', '?')}); wait for it to finish or choose "
                           "another --out") from None
        try:
            if os.stat(path).st_ino != os.fstat(fd).st_ino:
                os.close(fd)
                continue  # replaced between our open and our flock: look again
        except FileNotFoundError:
            os.close(fd)
            continue
        holder = _read_holder(fd)
        host = holder.get("host")
        if host is not None and host != socket.gethostname():
            os.close(fd)
            raise error(f"{path} records pid {holder.get('pid', '?')} on host {host}, whose "
                           "liveness cannot be checked from here; if that process has ended, "
                           f"remove {path} and retry")
        # a stale lock of a dead process of this host: take it over
        record = _lock_record()
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        return fd
    raise error(f"{path}: could not take the lock (it keeps changing)")
