"""The run directory's lock: a live holder is named, a dead one's lock is taken over, nothing
is left behind."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from lsswgan_core.gan.run import RunDir, RunError

HOLD = """
import sys
from lsswgan_core.gan.run import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_live_holder_is_named_and_the_lock_is_released(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock():
        record = json.loads((run.root / "lock").read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunError, match=rf"pid {os.getpid()} on host "):
            with run.lock():
                pass
    assert os.listdir(run.root) == []
    with run.lock():  # free again
        pass


@pytest.mark.slow
def test_a_killed_holder_blocks_while_alive_and_is_taken_over_once_dead(tmp_path):
    run = RunDir(tmp_path / "run")
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run.root)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunError, match=rf"pid {proc.pid} on host {socket.gethostname()}"):
            with run.lock():
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads((run.root / "lock").read_text())["pid"] == proc.pid  # left behind
    with run.lock():
        assert json.loads((run.root / "lock").read_text())["pid"] == os.getpid()
    assert not (run.root / "lock").exists()


def test_a_lock_recorded_by_another_host_is_refused(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / "lock").write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid"}))
    with pytest.raises(RunError, match="pid 1 on host elsewhere.invalid.*remove"):
        with run.lock():
            pass
    assert (run.root / "lock").exists()
