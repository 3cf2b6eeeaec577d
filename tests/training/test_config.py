"""Training configs against a schema: defaults, overrides, unknown keys with the closest known one, kinds and
ranges named in one line, relative paths made absolute, a read-only result."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf, ReadonlyConfigError

from latentsync.errors import ConfigError
from latentsync.paths import PROJECT_ROOT
from latentsync.training.config import Key, keys_from_signature, load_training_config

SCHEMA = {
    "run.seed": Key("int"),
    "run.max_train_steps": Key("int", low=1),
    "run.device": Key("str", "auto", choices=("auto", "cpu")),
    "run.audio_dropout_prob": Key("float", 0.0, low=0, high=1),
    "run.trainable_modules": Key("list", None, nullable=True),
    "optimizer.lr": Key("float", low=0),
    "ckpt.keep_last_n": Key("int", 2),
    "ckpt.resume_ckpt_path": Key("path", "latest", keep=("latest",)),
    "data.fileslist": Key("path", "data/list.txt"),
    "run.trepa_dims": Key("mapping", None, nullable=True),
}


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("run:\n  seed: 1\n  max_train_steps: 10\noptimizer:\n  lr: 5e-5\n")
    return str(path)


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "custom.yaml"
    path.write_text(text)
    return str(path)


def test_defaults_then_file_then_overrides(config_file):
    config = load_training_config(config_file, SCHEMA, overrides=["run.max_train_steps=5", "run.device=cpu"])
    assert config.run.seed == 1  # from the file
    assert config.ckpt.keep_last_n == 2  # a default fills a missing key
    assert config.run.max_train_steps == 5 and config.run.device == "cpu"  # overrides beat both
    assert config.optimizer.lr == pytest.approx(5e-5) and isinstance(config.optimizer.lr, float)
    assert config.ckpt.resume_ckpt_path == "latest" and config.run.trainable_modules is None
    with pytest.raises(ReadonlyConfigError):
        config.run.seed = 3


def test_an_override_inside_a_mapping_changes_that_entry_only(tmp_path):
    path = _write(tmp_path, "run:\n  seed: 1\n  max_train_steps: 3\n  trepa_dims: {depth: 1, embed_dim: 24}\n"
                            "optimizer:\n  lr: 1.0\n")
    config = load_training_config(path, SCHEMA, overrides=["run.trepa_dims.depth=2"])
    assert dict(config.run.trepa_dims) == {"depth": 2, "embed_dim": 24}


def test_a_misspelled_key_names_the_closest_known_one(config_file, tmp_path):
    path = _write(tmp_path, "run:\n  seed: 1\n  max_train_steps: 3\n  audio_dropout_prb: 0.5\noptimizer:\n  lr: 1.0\n")
    with pytest.raises(ConfigError) as err:
        load_training_config(path, SCHEMA)
    message = str(err.value)
    assert message.startswith(f"unknown key 'run.audio_dropout_prb' in {path} (did you mean 'run.audio_dropout_prob'?)")
    assert "--allow_unknown_keys" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"unknown key 'optimiser' on the command line \(did you mean 'optimizer'\?\)"):
        load_training_config(config_file, SCHEMA, overrides=["optimiser.lr=1"])
    kept = load_training_config(path, SCHEMA, allow_unknown=True)  # the escape hatch keeps the key as given
    assert kept.run.audio_dropout_prb == 0.5 and kept.run.audio_dropout_prob == 0.0


@pytest.mark.parametrize("override, needle", [
    (["run.max_train_steps=abc"], "run.max_train_steps must be an integer >= 1, got 'abc' (on the command line)"),
    (["optimizer.lr=fast"], "optimizer.lr must be a number >= 0, got 'fast' (on the command line)"),
    (["run.max_train_steps=0"], "run.max_train_steps must be an integer >= 1, got 0"),
    (["run.audio_dropout_prob=1.5"], "run.audio_dropout_prob must be a number from 0 to 1, got 1.5"),
    (["run.device=tpu"], "run.device must be one of auto, cpu, got 'tpu'"),
    (["run.trainable_modules=attn"], "run.trainable_modules must be a list (or null), got 'attn'"),
    (["optimizer.lr=.nan"], "optimizer.lr must be a number >= 0, got nan"),
    (["run.seed=true"], "run.seed must be an integer, got True"),
])
def test_wrong_kinds_and_ranges_name_key_expectation_and_value(tmp_path, override, needle):
    base = "run:\n  seed: 1\n  max_train_steps: 3\noptimizer:\n  lr: 1.0\n"
    with pytest.raises(ConfigError) as err:
        load_training_config(_write(tmp_path, base), SCHEMA, overrides=override)
    assert needle in str(err.value)


def test_a_wrong_kind_in_the_file_says_where(tmp_path):
    path = _write(tmp_path, "run:\n  seed: 1\n  max_train_steps: four\noptimizer:\n  lr: fast\n")
    with pytest.raises(ConfigError) as err:
        load_training_config(path, SCHEMA)
    assert str(err.value) == (f"run.max_train_steps must be an integer >= 1, got 'four' (in {path}); "
                              f"optimizer.lr must be a number >= 0, got 'fast' (in {path})")


@pytest.mark.parametrize("override", ["run.seed", "=3", "run"])
def test_malformed_override_names_itself(config_file, override):
    with pytest.raises(ConfigError, match=f"bad argument '{override}': expected a --flag or key=value"):
        load_training_config(config_file, SCHEMA, overrides=[override])


def test_missing_required_keys_and_a_section_given_a_value(config_file, tmp_path):
    with pytest.raises(ConfigError, match="lacks required key 'optimizer.lr'"):
        load_training_config(_write(tmp_path, "run:\n  seed: 1\n  max_train_steps: 3\n"), SCHEMA)
    with pytest.raises(ConfigError, match="'run' must be a section of keys such as 'run.seed', got 5"):
        load_training_config(_write(tmp_path, "run: 5\noptimizer:\n  lr: 1.0\n"), SCHEMA)


def test_relative_paths_follow_where_they_were_written(config_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    config = load_training_config(config_file, SCHEMA)
    assert config.data.fileslist == str(PROJECT_ROOT / "data" / "list.txt")  # a default: the project's
    path = _write(tmp_path, "run:\n  seed: 1\n  max_train_steps: 3\noptimizer:\n  lr: 1.0\ndata:\n  fileslist: lists/a.txt\n")
    assert load_training_config(path, SCHEMA).data.fileslist == str(tmp_path / "lists" / "a.txt")  # beside the file
    override = load_training_config(path, SCHEMA, overrides=["data.fileslist=b.txt", "ckpt.resume_ckpt_path=~/x.pt"])
    assert override.data.fileslist == str(tmp_path / "cwd" / "b.txt")  # typed here: relative to this folder
    assert override.ckpt.resume_ckpt_path == os.path.expanduser("~/x.pt")
    inside = load_training_config(str(PROJECT_ROOT / "configs" / "unet" / "stage1.yaml"), {
        "data.mask_image_path": Key("path")}, allow_unknown=True)
    assert inside.data.mask_image_path == str(PROJECT_ROOT / "latentsync" / "face" / "mask.png")  # project configs


def test_environment_interpolation_is_resolved(tmp_path, monkeypatch):
    path = _write(tmp_path, "run:\n  seed: 1\n  max_train_steps: 3\noptimizer:\n  lr: 1.0\n"
                            "data:\n  fileslist: ${oc.env:TEST_LISTS,lists}/train.txt\n")
    assert load_training_config(path, SCHEMA).data.fileslist == str(tmp_path / "lists" / "train.txt")
    monkeypatch.setenv("TEST_LISTS", str(tmp_path / "elsewhere"))
    assert load_training_config(path, SCHEMA).data.fileslist == str(tmp_path / "elsewhere" / "train.txt")


def test_keys_from_a_constructor_signature():
    def make(width: int, depth: int = 2, eps: float = 1e-5, kinds: tuple = ("a", "b"), extra=None, flag: bool = False):
        pass

    keys = keys_from_signature(make, "model.", required=("depth",))
    assert keys["model.width"].required and keys["model.depth"].required
    assert (keys["model.eps"].kind, keys["model.kinds"].kind, keys["model.flag"].kind) == ("float", "list", "bool")
    assert keys["model.kinds"].default == ["a", "b"] and keys["model.extra"].nullable


def test_loop_settings_from_a_config():
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
