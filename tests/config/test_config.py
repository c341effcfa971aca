import pytest

from hone.config.load import dump_config, load_config, presets
from hone.errors import ConfigError


def test_defaults_are_lora_sft_on_the_default_model():
    config = load_config()
    assert config.model == "smollm2-135m-instruct"
    assert config.method.type == "lora" and config.objective.type == "sft"
    assert config.train.batch_size == 8 and config.train.batch_tokens is None


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: {type: lora, rank: 4}\ntrain: {lr: 0.01, epochs: 2}\n")
    config = load_config(path, ["train.lr=1e-4", "method.alpha=8", "data.packing=false"])
    assert (config.method.rank, config.method.alpha) == (4, 8)
    assert config.train.lr == 1e-4 and config.train.epochs == 2
    assert config.data.packing is False
    assert load_config(dump_config(config) and path, ["train.lr=1e-4", "method.alpha=8",
                                                      "data.packing=false"]) == config


def test_every_bad_setting_is_named_with_its_path(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: {rank: 0, ranq: 4}\ntrain: {lr: -1, schedule: sometimes}\ndata: {packing: maybe}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text
    for expected in ("method.rank: Input should be greater than 0", "method.ranq: unknown setting",
                     "train.lr: Input should be greater than 0", "train.schedule:", "data.packing:"):
        assert expected in text


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown type 'lorax'; expected one of 'lora'"):
        load_config(None, ["method=lorax"])


def test_batch_units_are_exclusive():
    assert load_config(None, ["train.batch_tokens=2048"]).train.batch_size is None
    with pytest.raises(ConfigError, match="not both"):
        load_config(None, ["train.batch_tokens=2048", "train.batch_size=4"])


def test_malformed_override_and_yaml(tmp_path):
    with pytest.raises(ConfigError, match="is not key=value"):
        load_config(None, ["train.lr"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml:"):
        load_config(bad)


@pytest.mark.parametrize("name", presets())
def test_presets_are_valid(name):
    assert load_config(preset=name).model == "smollm2-135m-instruct"


def test_the_example_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[2] / "examples").glob("*/config.yaml"))
    assert configs
    for path in configs:
        assert load_config(path, preset="demo").data.train
