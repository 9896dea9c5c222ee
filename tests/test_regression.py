"""A tiny training run gives bit-identical weights, buffers and optimiser states to the
reference recorded on the code before the training side was restructured
(tests/data/tiny_run_reference.json): refactoring the loop must not change what it computes."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

from lsswgan_core.config import config_from_dict
from lsswgan_core.run import load_checkpoint
from lsswgan_core.train import train

from ._datasets import write_dataset

REFERENCE = json.loads((Path(__file__).parent / "data" / "tiny_run_reference.json").read_text())


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:32]


@pytest.mark.skipif(torch.__version__ != REFERENCE["torch"],
                    reason=f"the reference was recorded with torch {REFERENCE['torch']}")
def test_tiny_run_is_bit_identical_to_the_reference(tmp_path):
    data = write_dataset(tmp_path / "tiny.h5", sizes=(16, 4, 8))
    with torch.random.fork_rng(devices=[]):
        threads = torch.get_num_threads()
        torch.set_num_threads(REFERENCE["threads"])
        try:
            train(data, tmp_path / "run", config_from_dict(REFERENCE["table"]), show_progress=False)
        finally:
            torch.set_num_threads(threads)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert [ckpt["epoch"], ckpt["generator_step"], ckpt["critic_step"]] == REFERENCE["steps"]
    for key in ("critic", "generator"):
        assert {name: digest(v) for name, v in ckpt[key].items()} == REFERENCE[key], key
    for key in ("opt_critic", "opt_generator"):
        got = {f"{pid}.{n}": digest(v) for pid, st in ckpt[key]["state"].items()
               for n, v in st.items()}
        assert got == REFERENCE[key], key
