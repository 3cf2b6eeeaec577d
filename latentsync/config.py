"""YAML configuration: read once, validated, never mutated."""

from __future__ import annotations

import os
from typing import Iterable

from omegaconf import DictConfig, OmegaConf

from latentsync.errors import ConfigError


def load_config(path: str | os.PathLike, required: Iterable[str] = ()) -> DictConfig:
    """Load a YAML config as a read-only ``DictConfig``.

    ``required`` lists dotted keys (``"model.in_channels"``) that must be present.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        config = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends: re-raise with the file name
        raise ConfigError(f"cannot parse config {path}: {exc}") from exc
    if not isinstance(config, DictConfig):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    for key in required:
        if OmegaConf.select(config, key, default=None) is None:
            raise ConfigError(f"config {path} lacks required key '{key}'")
    OmegaConf.set_readonly(config, True)
    return config


def to_container(config: DictConfig) -> dict:
    """A plain-dict copy (for constructors and for saving inside checkpoints)."""
    return OmegaConf.to_container(config, resolve=True)
