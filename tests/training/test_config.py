"""Training configs: optional keys get defaults, overrides must name a known key, the result is read-only."""

from __future__ import annotations

import pytest
from omegaconf import ReadonlyConfigError

from latentsync.errors import ConfigError
from latentsync.training.config import load_training_config


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("run:\n  seed: 1\n  max_train_steps: 10\noptimizer:\n  lr: 1.0e-4\n")
    return str(path)


def test_defaults_then_file_then_overrides(config_file):
    config = load_training_config(
        config_file, required=("run.seed",), optional={"run.seed": 99, "ckpt.keep_last_n": 2, "run.device": "auto"},
        overrides=["run.max_train_steps=5", "run.device=cpu"],
    )
    assert config.run.seed == 1  # the file beats the default
    assert config.ckpt.keep_last_n == 2  # a default fills a missing key
    assert config.run.max_train_steps == 5 and config.run.device == "cpu"  # overrides beat both
    assert config.optimizer.lr == pytest.approx(1e-4)
    with pytest.raises(ReadonlyConfigError):
        config.run.seed = 3


@pytest.mark.parametrize("override", ["run.max_train_step=5", "run.seed", "data.batch_size=2"])
def test_unknown_or_malformed_override_names_itself(config_file, override):
    with pytest.raises(ConfigError, match=f"bad override '{override}'"):
        load_training_config(config_file, optional={"ckpt.keep_last_n": 0}, overrides=[override])


def test_missing_required_key(config_file):
    with pytest.raises(ConfigError, match="lacks required key 'data.batch_size'"):
        load_training_config(config_file, required=("data.batch_size",))


def test_loop_settings_from_a_config():
    from omegaconf import OmegaConf

    from latentsync.training.run import LoopSettings

    config = OmegaConf.create({"run": {"max_train_steps": 7, "validation_steps": 2}, "ckpt": {"save_ckpt_steps": 3},
                               "optimizer": {"max_grad_norm": 0.5}})
    settings = LoopSettings.from_config(config, best_metric="sync_confidence")
    assert (settings.max_train_steps, settings.validation_steps, settings.save_ckpt_steps) == (7, 2, 3)
    assert (settings.max_grad_norm, settings.keep_last_n, settings.max_nonfinite_in_a_row) == (0.5, 0, 10)
    assert settings.best_metric == "sync_confidence" and settings.best_mode == "max"
    assert LoopSettings.from_config(OmegaConf.create({"run": {"max_train_steps": 7}, "ckpt": {"save_ckpt_steps": 3}}),
                                    validation_steps=5).validation_steps == 5  # a key the config lacks, given here
    with pytest.raises(ConfigError, match="lacks 'run.validation_steps'"):
        LoopSettings.from_config(OmegaConf.create({"run": {"max_train_steps": 7}, "ckpt": {"save_ckpt_steps": 3}}))
