import pytest
from omegaconf.errors import ReadonlyConfigError

from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError


def test_load_config_is_read_only(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  in_channels: 13\n")
    config = load_config(path, required=["model.in_channels"])
    assert config.model.in_channels == 13
    with pytest.raises(ReadonlyConfigError):
        config.model.in_channels = 4
    assert to_container(config) == {"model": {"in_channels": 13}}


def test_missing_required_key_names_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {}\n")
    with pytest.raises(ConfigError, match=r"model\.in_channels") as info:
        load_config(path, required=["model.in_channels"])
    assert str(path) in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
