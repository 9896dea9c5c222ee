"""Configuration: the paper's values, TOML round trip, unknown keys refused by name."""
import pytest

from lsswgan_core.config import (Config, ConfigError, config_from_dict, config_to_toml,
                                 load_config)

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_paper_config_holds_the_papers_values():
    cfg = load_config(ROOT / "configs" / "paper.toml")
    t = cfg.train
    assert (t.n_critic, t.gp_lambda, t.batch_size, t.lambda_summ, t.summary_epochs, t.epochs) == (
        5, 10.0, 16, 0.3, 170, 500)
    assert cfg.optim.lr == 1e-4 and cfg.optim.betas == (0.0, 0.9)
    s = cfg.summary
    assert (s.lambda_pk, s.lambda_mass, s.lambda_peak) == (2.0, 2.0, 1.0)
    d = cfg.duality_gap
    assert (d.every, d.epochs, d.batch_size, d.lr) == (10, 20, 8, 2e-4)
    assert cfg == Config()  # the defaults are the paper's


def test_round_trip(tmp_path):
    cfg = config_from_dict({"train": {"epochs": 3, "bf16": True}, "model": {"width": 0.25}})
    path = tmp_path / "c.toml"
    path.write_text(config_to_toml(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("table,match", [
    ({"train": {"epocs": 3}}, "unknown key in \\[train\\]: epocs"),
    ({"trian": {}}, "unknown section: trian"),
    ({"train": {"epochs": 2.5}}, "train.epochs must be an integer"),
    ({"train": {"tf32": 1}}, "train.tf32 must be true or false"),
    ({"optim": {"betas": [0.5]}}, "optim.betas must be a list of 2"),
    ({"model": 3}, "\\[model\\] must be a table"),
])
def test_bad_configs(table, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(table)


def test_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_paper_config_holds_the_papers_dataset_and_every_section():
    cfg = load_config(ROOT / "configs" / "paper.toml")
    d = cfg.data
    assert (d.grid, d.cube, d.split_cubes, d.scheme) == (256, 32, (992, 128, 128), "ngp")
    assert (d.transform_c, d.transform_s) == (11.0, 0.002)
    assert cfg.evaluate.peak_radius == 2
    cfg.validate()
    load_config(ROOT / "configs" / "demo.toml").validate()


@pytest.mark.parametrize("section,key,value,match", [
    ("model", "width", 0.0, "model.width must be a positive number"),
    ("model", "width", -1.0, "model.width must be a positive number"),
    ("train", "batch_size", 0, "train.batch_size must be >= 1"),
    ("data", "grid", 30, "does not divide"),
    ("data", "split_fractions", [0.0, 0.5, 0.5], "train split must not be empty"),
    ("data", "split_cubes", [1, 2], "split_cubes must be a list of 3"),
    ("data", "split_cubes", [0, 2, 2], "three cube counts \\(train > 0\\)"),
    ("data", "cubes_per_box", -1, "cubes_per_box must be >= 0"),
    ("evaluate", "bispectrum_pairs", [[3.0, 0.0]], "pairs of positive numbers"),
])
def test_validate_refuses_nonsense(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({section: {key: value}}).validate()


def test_override_sets_keys_by_name():
    from lsswgan_core.config import override

    cfg = override(Config(), ["train.epochs=7", "model.width=0.25", "data.scheme=cic",
                              "evaluate.bispectrum_pairs=[[2, 4]]"])
    assert (cfg.train.epochs, cfg.model.width, cfg.data.scheme) == (7, 0.25, "cic")
    assert cfg.evaluate.bispectrum_pairs == ((2.0, 4.0),)
    with pytest.raises(ConfigError, match="unknown key in \\[train\\]: epoch"):
        override(Config(), ["train.epoch=7"])
    with pytest.raises(ConfigError, match="section.key=value"):
        override(Config(), ["epochs=7"])


@pytest.mark.parametrize("section,key,value,match", [
    ("model", "upsample", "pixelshuffle", "model.upsample must be one of"),
    ("model", "padding", "circular", "model.padding must be one of"),
    ("model", "sample_bn", "running", "model.sample_bn must be one of"),
    ("model", "cube", 64, "take 32\\^3 cubes"),
    ("optim", "lr_critic", float("inf"), "lr_critic and optim.lr_generator must be >= 0"),
    ("train", "ema_decay", 1.0, "ema_decay must lie in"),
    ("train", "time_limit", -1.0, "time_limit must be >= 0"),
    ("summary", "units", "epoch", "summary.units must be one of"),
    ("summary", "pk_bins", "all", "summary.pk_bins must be one of"),
])
def test_validate_refuses_bad_fidelity_options(section, key, value, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({section: {key: value}}).validate()


def test_units_from_the_train_split_need_normalised_statistics():
    with pytest.raises(ConfigError, match="needs summary.normalise"):
        config_from_dict({"summary": {"units": "train", "normalise": False}}).validate()
    config_from_dict({"summary": {"units": "train"}}).validate()
