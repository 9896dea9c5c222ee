"""How much memory this process may still take, and one refusal for sizes that do not fit:
an absurd size (`--grid 100000`, `--particles 1024` on a laptop, `--n-cubes 10**12`) is
refused before anything is allocated, with the option that asked for it named."""
from __future__ import annotations

import shutil
from pathlib import Path


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup (v2) limit;
    None where neither is known."""
    sizes = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    sizes.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            sizes.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(sizes) if sizes else None


def require_memory(need: float, what: str, advice: str) -> None:
    """A ValueError when `need` bytes (for `what`, which names the option) do not fit."""
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(f"{what} needs {need / 2**30:.4g} GiB, more than the "
                         f"{have / 2**30:.4g} GiB of memory available; {advice}")


def require_disk(need: float, path, what: str, advice: str) -> None:
    """A ValueError when `need` bytes (for `what`, which names the option) cannot fit on the
    file system that will hold `path` (its nearest existing ancestor is asked)."""
    place = Path(path).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:
        return
    if need > free:
        raise ValueError(f"{what} needs {need / 2**30:.4g} GiB of disk, more than the "
                         f"{free / 2**30:.4g} GiB free under {place}; {advice}")
