"""The whole-box generator: translation equivariance on the stride's lattice, tiles equal to
the whole box, any box size from the same weights, its large-scale input's spectrum."""
import math

import numpy as np
import pytest
import torch

from lsswgan_core import ops
from lsswgan_core.gan.models import BoxGenerator, periodic_pad, periodic_window


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    g = BoxGenerator(width=0.125)
    k = np.geomspace(0.005, 3.0, 40)
    g.set_input_power(k, 2e4 * (k / 0.05) ** -1.4 / (1 + (0.02 / k) ** 2), cell_size=4.0)
    return g.eval()


def test_halo_and_sizes(generator):
    assert generator.halo == 23 and generator.stride == 4
    for n in (4, 12, 32):
        x = torch.randn(1, 3, n + 46, n + 46, n + 46)
        assert generator(x).shape == (1, 1, n, n, n)
    with pytest.raises(ValueError, match="multiple of 4"):
        generator(torch.randn(1, 3, 52, 52, 52))
    with pytest.raises(ValueError, match="takes"):
        generator(torch.randn(1, 2, 50, 50, 50))


def test_periodic_window_wraps():
    x = torch.arange(5.0).reshape(1, 1, 5).expand(5, 5, 5)
    assert periodic_window(x, (0, 0, 3), 7, 0)[0, 0].tolist() == [3, 4, 0, 1, 2, 3, 4]
    assert periodic_pad(x, 6).shape == (17, 17, 17)
    assert periodic_pad(x, 6)[0, 0, :3].tolist() == [4, 0, 1]


@torch.no_grad()
def test_translation_equivariant_on_the_stride_lattice(generator):
    x = generator.draw_inputs(1, 24, torch.Generator().manual_seed(3))
    whole = generator.box(x)
    for shift in [(4, 0, 0), (8, -12, 20), (0, 4, 4)]:
        moved = generator.box(torch.roll(x, shift, (-3, -2, -1)))
        assert torch.equal(moved, torch.roll(whole, shift, (-3, -2, -1)))


@torch.no_grad()
@pytest.mark.parametrize("tile", [8, 12, 24])
def test_tiles_equal_the_whole_box(generator, tile):
    x = generator.draw_inputs(2, 24, torch.Generator().manual_seed(4))
    whole = generator.box(x)
    tiled = generator.tiled_box(x, tile)
    assert (tiled - whole).abs().max() <= 1e-5
    with pytest.raises(ValueError, match="tile"):
        generator.tiled_box(x, 10)


@torch.no_grad()
def test_box_is_periodic_at_its_wrap_face(generator):
    """The wrap face is like any other: rolling the inputs by half the box rolls the box."""
    x = generator.draw_inputs(1, 16, torch.Generator().manual_seed(5))
    torch.testing.assert_close(generator.box(torch.roll(x, 8, -1)),
                               torch.roll(generator.box(x), 8, -1), rtol=0, atol=1e-5)


def test_large_scale_input_has_the_set_spectrum(generator):
    n, box = 64, 64 * 4.0
    x = generator.draw_inputs(6, n, torch.Generator().manual_seed(6))[:, 0].double()
    assert abs(float(x.std()) - 1) < 0.05 and x.dtype == torch.float64
    k, pk, modes = ops.power_spectrum(x * generator.input_std, box)
    want = generator._power_at(torch.as_tensor(k))
    sel = modes >= 100                              # bins with enough modes to compare
    ratio = pk.mean(0)[sel] / want[sel]
    assert torch.allclose(ratio, torch.ones_like(ratio), atol=4 / math.sqrt(6 * 100))


def test_input_spectrum_is_refused_when_malformed(generator):
    with pytest.raises(ValueError, match="increasing"):
        BoxGenerator(0.125).set_input_power([0.1, 0.05], [1.0, 1.0], 4.0)
    with pytest.raises(ValueError, match="increasing"):
        BoxGenerator(0.125).set_input_power([0.1, 0.2], [1.0, -1.0], 4.0)


def test_same_weights_any_size_and_no_batch_dependence(generator):
    """A box does not depend on the others of its batch (no normalisation; the convolutions
    of another batch size round otherwise, hence 1e-5), and one set of weights makes a 4^3
    and a 40^3 box."""
    with torch.no_grad():
        x = generator.draw_inputs(3, 20, torch.Generator().manual_seed(7))
        both = generator.box(x)
        torch.testing.assert_close(generator.box(x[1:2]), both[1:2], rtol=0, atol=1e-5)
        assert generator.box(generator.draw_inputs(1, 40)).shape == (1, 1, 40, 40, 40)
        assert generator.box(generator.draw_inputs(1, 4)).shape == (1, 1, 4, 4, 4)


@pytest.fixture(scope="module")
def box_checkpoint(generator, tmp_path_factory):
    """A checkpoint of an (untrained) box generator, as `lsscore train` writes one."""
    import json

    from lsswgan_core.config import config_from_dict, config_to_toml
    from lsswgan_core.data import Transform
    from lsswgan_core.gan.run import save_checkpoint

    cfg = config_from_dict({"model": {"generator": "box", "width": 0.125}})
    attrs = {**Transform(x_max=40.0).attrs(), "x_max": 40.0, "box_size": 256.0, "grid": 64,
             "cube_size": 128.0, "cube": 32}
    path = tmp_path_factory.mktemp("box") / "last.pt"
    save_checkpoint(path, {"epoch": 0, "generator_step": 0, "critic_step": 0,
                           "generator": generator.state_dict(), "config": config_to_toml(cfg),
                           "dataset": json.dumps(attrs)})
    return path


@pytest.mark.parametrize("physical", [False, True])
def test_write_boxes_is_the_same_box_at_any_tile(box_checkpoint, generator, tmp_path, physical):
    import h5py

    from lsswgan_core.gan.sample import write_boxes

    boxes = []
    for tile in (8, 16):
        meta = write_boxes(box_checkpoint, tmp_path / f"b{tile}.h5", 16, count=2, tile=tile,
                           physical=physical, seed=3)
        with h5py.File(tmp_path / f"b{tile}.h5") as f:
            boxes.append(f["boxes"][:])
            assert f.attrs["box_size"] == 64.0 and f.attrs["cell_size"] == 4.0
            assert f.attrs["tile"] == tile and f.attrs["sample_seed"] == 3
            assert bool(f.attrs["physical"]) == physical and f.attrs["transform_x_max"] == 40.0
        assert meta["cells"] == 16
    assert boxes[0].shape == (2, 16, 16, 16)
    assert np.abs(boxes[0] - boxes[1]).max() <= 1e-5 * (40 if physical else 1)
    assert not np.array_equal(boxes[0][0], boxes[0][1])          # two boxes, two seeds
    if not physical:   # the same as the whole box from the same inputs
        rng = torch.Generator().manual_seed(__import__("lsswgan_core.gan.sample",
                                                       fromlist=["_box_seed"])._box_seed(3, 0))
        with torch.no_grad():
            whole = generator.box(generator.draw_inputs(1, 16, rng))[0, 0].numpy()
        assert np.abs(whole - boxes[0][0]).max() <= 1e-5


def test_write_boxes_refuses_what_it_cannot_make(box_checkpoint, tmp_path):
    from lsswgan_core.gan.sample import write_boxes

    with pytest.raises(ValueError, match="multiple of 4"):
        write_boxes(box_checkpoint, tmp_path / "x.h5", 18)
    with pytest.raises(ValueError, match="tile"):
        write_boxes(box_checkpoint, tmp_path / "x.h5", 16, tile=12)
    with pytest.raises(ValueError, match="at least 1"):
        write_boxes(box_checkpoint, tmp_path / "x.h5", 16, count=0)
    assert not (tmp_path / "x.h5").exists()


@pytest.fixture(scope="module")
def box_dataset(tmp_path_factory):
    from lsswgan_core.data import DataConfig, preprocess
    from lsswgan_core.sim.simulate import write_suite

    root = tmp_path_factory.mktemp("boxdata")
    write_suite(root / "suite", 3, 32, 128.0, seed=1, pm_steps=2, show_progress=False,
                mesh_factor=1)
    return preprocess(sorted(str(p) for p in (root / "suite").glob("sim_*")), root / "data.h5",
                      DataConfig(grid=64, cube=32, cubes_per_box=2, scheme="cic",
                                 length_unit="Mpc/h", split_fractions=(1, 1, 1)),
                      show_progress=False)


def box_config(**train):
    from lsswgan_core.config import config_from_dict

    return config_from_dict({
        # 'data', the demo's input ('lpt' windows and calibration: the tests below)
        "model": {"generator": "box", "box_input": "data", "width": 0.125,
                  "init_output_bias": True},
        "train": {"epochs": 2, "batch_size": 4, "n_critic": 2, "summary_epochs": 1,
                  "log_every": 1, "checkpoint_every": 1, "ema_decay": 0.9, **train},
        "duality_gap": {"every": 2, "epochs": 1, "batch_size": 4}})


@pytest.mark.slow
def test_box_run_trains_resumes_bit_exactly_and_samples_boxes(box_dataset, tmp_path):
    """`lsscore train` with model.generator = 'box': crops of the whole boxes, the summary
    loss and the duality gap; a run stopped after one epoch and resumed ends with the
    uninterrupted run's weights; its checkpoint makes boxes of any size."""
    import h5py

    from lsswgan_core.data import Dataset
    from lsswgan_core.gan.run import load_checkpoint
    from lsswgan_core.gan.sample import write_boxes
    from lsswgan_core.gan.train import train

    from ._helpers import assert_same_checkpoint

    whole = train(box_dataset, tmp_path / "whole", box_config(), show_progress=False)
    assert whole["epoch"] == 2 and math.isfinite(whole["duality_gap"])
    train(box_dataset, tmp_path / "parts", box_config(), show_progress=False, max_epochs=1)
    train(box_dataset, tmp_path / "parts", None, resume=True, show_progress=False)
    assert_same_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt",
                           tmp_path / "parts" / "checkpoints" / "last.pt")
    ckpt = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    attrs = __import__("json").loads(ckpt["dataset"])
    assert attrs["transform_x_max"] == Dataset(box_dataset).attrs["box_x_max"]
    assert "generator_ema" in ckpt and ckpt["generator"]["power_k"].numel() > 10
    for n in (32, 64):
        meta = write_boxes(ckpt, tmp_path / f"b{n}.h5", n, physical=True)
        with h5py.File(tmp_path / f"b{n}.h5") as f:
            box = f["boxes"][0]
        assert box.shape == (n, n, n) and np.isfinite(box).all() and box.min() >= 0
        assert meta["box_size"] == n * 2.0
    from lsswgan_core.config import EvaluateConfig
    from lsswgan_core.evaluation.evaluate import evaluate

    metrics = evaluate(tmp_path / "whole" / "checkpoints" / "last.pt", box_dataset,
                       tmp_path / "report", config=EvaluateConfig(n_cubes=4, box_sizes=(2,)))
    boxes = metrics["boxes"]
    assert boxes["cells"] == 64 and boxes["tiled_vs_whole"] <= 1e-5, metrics["problems"]
    assert set(boxes["seams"]) == {"lattice_tile", "lattice_crop", "axis_excess", "face_tile",
                                   "face_wrap", "phase_tile"}
    assert {"box_slices.png", "box_power.png", "box_seams.png"} <= \
        {p.name for p in (tmp_path / "report").glob("*.png")}
    saved = __import__("json").loads((tmp_path / "report" / "metrics.json").read_text())
    assert saved["boxes"]["size_independence"].keys() == {"128"}
    assert (tmp_path / "report" / "box_large.png").is_file()   # the 128^3 box
    block = saved["boxes"]["size_independence"]["128"]
    assert len(block["inside_band"]) == block["bins"] == 31   # edges at 1..32 k_F of 64^3
    assert block["bins_inside"] == sum(block["inside_band"])
    assert block["bins_inside_real_band"] == sum(block["inside_real_band"])
    assert len(block["inside_real_band"]) == 31
    assert saved["boxes"]["spread_ratio"] is None   # one real box: no box-to-box spread
    # the demo's summary reads this report
    from cli.demo import box_summary

    lines = box_summary(box_config(), saved, "train 1, val 1, dg 1", tmp_path / "b.h5",
                        tmp_path / "report")
    text = "\n".join(lines)
    for part in ("whole boxes (1 generated vs 1 held-out real, 64^3)", "tiled vs whole",
                 "face wrap", "remapped-Gaussian baseline", "128^3 ", "/31", "time_limit",
                 "generated / real "):
        assert part in text, (part, text)


@pytest.mark.parametrize("source", ["data", "lpt"])
def test_training_inputs_are_windows_of_a_seeded_pool(source):
    """sample_latent: the large-scale channel of a crop is a window of one of the pool's input
    boxes (up to one of the 48 symmetries), the pool is the same for the same seed (so a
    resumed run sees the inputs a continuous one would) and another for another seed; the
    noise channels are fresh white noise. 'lpt' inputs are standardised like 'data' ones."""
    k = np.geomspace(0.005, 3.0, 40)
    power = 2e4 * (k / 0.05) ** -1.4 / (1 + (0.02 / k) ** 2)
    g = BoxGenerator(width=0.125, crop=8, source=source)
    g.set_input_power(k, power, cell_size=4.0, seed=11)
    x = g.sample_latent(3, torch.Generator().manual_seed(0))
    size = 8 + 2 * g.halo
    assert x.shape == (3, 3, size, size, size) and x.dtype == torch.float32
    pool = g._input_pool(-(-2 * size // 16) * 16, None)
    assert pool.shape[0] == g.pool_boxes
    assert abs(float(pool.mean())) < 0.1 and abs(float(pool.std()) - 1) < 0.1
    assert abs(float(x[:, 1:].std()) - 1) < 0.05
    # every value of a crop's large-scale channel is one of the pool's (continuous values: it
    # is a window of the pool, moved by a symmetry), and crops differ
    for b in range(3):
        assert bool(torch.isin(x[b, 0].flatten(), pool.flatten()).all())
    assert not torch.equal(x[0, 0], x[1, 0])
    twin = BoxGenerator(width=0.125, crop=8, source=source)
    twin.set_input_power(k, power, cell_size=4.0, seed=11)
    assert torch.equal(twin._input_pool(pool.shape[-1], None), pool)
    other = BoxGenerator(width=0.125, crop=8, source=source)
    other.set_input_power(k, power, cell_size=4.0, seed=12)
    assert not torch.equal(other._input_pool(pool.shape[-1], None), pool)


def test_match_output_starts_the_box_at_the_data_one_point_distribution():
    """match_output: logit of the output = sigma z + mu + a small correction, with mu, sigma
    those of the training values' logit, z the standardised large-scale input."""
    k = np.geomspace(0.005, 3.0, 40)
    g = BoxGenerator(width=0.125, crop=8)
    g.set_input_power(k, 2e4 * (k / 0.05) ** -1.4 / (1 + (0.02 / k) ** 2), cell_size=4.0)
    values = torch.sigmoid(-2.0 + 0.7 * torch.randn(200_000, generator=torch.Generator().manual_seed(1)))
    fit = g.match_output(values)
    assert abs(fit["mu"] + 2.0) < 0.01 and abs(fit["sigma"] - 0.7) < 0.01
    with torch.no_grad():
        x = g.draw_inputs(1, 32, torch.Generator().manual_seed(2))
        out = g.box(x)[0, 0].double()
    logit = torch.log(out / (1 - out))
    assert abs(float(logit.mean()) + 2.0) < 0.15 and abs(float(logit.std()) - 0.7) < 0.15
    # the skip carries the input: the output follows channel 0
    corr = torch.corrcoef(torch.stack([logit.flatten(), x[0, 0].double().flatten()]))[0, 1]
    assert float(corr) > 0.9


def test_calibrate_input_gives_the_channel_the_target_spectrum():
    """calibrate_input: the channel's P(k) takes the target's shape (the ratio is flat across
    k, up to cosmic variance and the cap), the channel stays standardised, the filter is in the
    state dict, and an 'lpt' channel keeps its phases (it correlates with the unfiltered one)."""
    k = np.geomspace(0.005, 3.0, 40)
    power = 2e4 * (k / 0.05) ** -1.4 / (1 + (0.02 / k) ** 2)
    target_k = np.geomspace(0.02, 1.5, 30)
    target = 300.0 * (target_k / 0.1) ** -1.1   # T(k) within the cap (10x its smallest)
    for source in ("data", "lpt"):
        g = BoxGenerator(width=0.125, crop=8, source=source)
        g.set_input_power(k, power, cell_size=4.0)
        rng = torch.Generator().manual_seed(3)
        before = g.draw_inputs(1, 48, rng)[0, 0].double()
        g.calibrate_input(target_k, target)
        assert "filter_t" in g.state_dict() and g.filter_t.numel() > 10
        after = g.draw_inputs(4, 48, torch.Generator().manual_seed(3))[:, 0].double()
        assert abs(float(after.std()) - 1) < 0.1
        kk, pk, modes = ops.power_spectrum(after - after.mean(), 48 * 4.0)
        sel = (modes >= 50) & (kk > 0.05) & (kk < 0.45)   # below the cap of an lpt channel
        ratio = pk.mean(0)[sel] / torch.as_tensor(np.interp(kk[sel].numpy(), target_k, target))
        assert float(ratio.max() / ratio.min()) < 1.6, ratio
        corr = torch.corrcoef(torch.stack([before.flatten(), after[0].flatten()]))[0, 1]
        assert float(corr) > 0.6
    with pytest.raises(ValueError, match="increasing"):
        g.calibrate_input([0.2, 0.1], [1.0, 1.0])
