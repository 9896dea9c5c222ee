"""A tiny training run gives bit-identical weights, buffers and optimiser states to the
reference in tests/data/tiny_run_reference.json: refactoring must not change what training
computes.

The reference was recorded on the code before the training side was restructured, and
re-recorded once since, on purpose, when the critic loss went from one critic call to two
(real + generated, then the interpolates, which changes the order of floating-point sums
but not the maths: tests/test_models.py checks the two against each other in float64).
Re-record only for such a deliberate change, and say so in the commit:
    python -m tests.test_regression --record"""
import hashlib
import json
from pathlib import Path

import pytest
import torch

from lsswgan_core.config import config_from_dict
from lsswgan_core.gan.run import load_checkpoint
from lsswgan_core.gan.train import train

from ._helpers import write_dataset

REFERENCE = json.loads((Path(__file__).parent / "data" / "tiny_run_reference.json").read_text())


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:32]


@pytest.mark.skipif(torch.__version__ != REFERENCE["torch"],
                    reason=f"the reference was recorded with torch {REFERENCE['torch']}")
def test_tiny_run_is_bit_identical_to_the_reference(tmp_path):
    got = tiny_run_digests(tmp_path)
    assert got["steps"] == REFERENCE["steps"]
    for key in ("critic", "generator", "opt_critic", "opt_generator"):
        assert got[key] == REFERENCE[key], key


def tiny_run_digests(tmp_path: Path) -> dict:
    """The tiny run of the reference's config; SHA-256 prefixes of everything it saved."""
    data = write_dataset(tmp_path / "tiny.h5", sizes=(16, 4, 8))
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        torch.set_num_threads(REFERENCE["threads"])
        try:
            train(data, tmp_path / "run", config_from_dict(REFERENCE["table"]), show_progress=False)
        finally:
            torch.set_num_threads(threads)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    got = {"steps": [ckpt["epoch"], ckpt["generator_step"], ckpt["critic_step"]]}
    for key in ("critic", "generator"):
        got[key] = {name: digest(v) for name, v in ckpt[key].items()}
    for key in ("opt_critic", "opt_generator"):
        got[key] = {f"{pid}.{n}": digest(v) for pid, st in ckpt[key]["state"].items()
                    for n, v in st.items()}
    return got


if __name__ == "__main__":
    import sys
    import tempfile

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.test_regression --record")
    with tempfile.TemporaryDirectory() as tmp:
        record = {"table": REFERENCE["table"], "torch": torch.__version__,
                  "threads": REFERENCE["threads"], **tiny_run_digests(Path(tmp))}
    path = Path(__file__).parent / "data" / "tiny_run_reference.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")
