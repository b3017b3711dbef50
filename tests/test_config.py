import pytest

from headlens.config import ConfigError, load_config, presets
from headlens.masks import LEVELS


def test_defaults_preset_file_and_overrides_merge_in_order(tmp_path):
    assert load_config().sweep.levels == list(LEVELS)
    assert "tiny-lxmert" in presets() and "tiny-visual_bert" in presets()
    config = load_config(preset="tiny-visual_bert")
    assert config.model.family == "visual_bert" and config.sweep.batch_size == 16
    file = tmp_path / "run.yaml"
    file.write_text("sweep:\n  batch_size: 4\nout_dir: from-file\n")
    config = load_config(["out_dir=from-cli"], preset="tiny-visual_bert", file=file)
    assert (config.sweep.batch_size, config.out_dir, config.model.family) == (4, "from-cli", "visual_bert")


def test_unknown_key_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"command line: key 'sweep.batchsize'.*Did you mean"):
        load_config(["sweep.batchsize=3"])


def test_wrong_type_is_an_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'data.num_examples'.*could not be converted"):
        load_config(["data.num_examples=many"])
    file = tmp_path / "bad.yaml"
    file.write_text("model:\n  famly: lxmert\n")
    with pytest.raises(ConfigError, match=rf"{file}: key 'model.famly'"):
        load_config(file=file)


def test_unknown_preset_and_missing_file():
    with pytest.raises(ConfigError, match="unknown preset .huge.; valid: demo, demo-quick, easy-vqa-lxmert, .*tiny-lxmert"):
        load_config(preset="huge")
    with pytest.raises(ConfigError, match="config file not found: nowhere.yaml"):
        load_config(file="nowhere.yaml")


def test_values_outside_their_lists_are_errors_naming_the_key():
    with pytest.raises(ConfigError, match="key 'sweep.methods'.*grad, lrp, attnlrp, taylor, entropy, random"):
        load_config(["sweep.methods=[grad,lpr]"])
    with pytest.raises(ConfigError, match="key 'sweep.levels'"):
        load_config(["sweep.levels=[0,1.5]"])
    with pytest.raises(ConfigError, match="key 'sweep.batch_size': must be at least 1"):
        load_config(["sweep.batch_size=0"])
