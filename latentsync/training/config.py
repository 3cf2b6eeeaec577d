"""Training configs: the YAML file, defaults for the keys it may leave out, and CLI overrides."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError


def load_training_config(
    path: str | os.PathLike,
    required: Iterable[str] = (),
    optional: Mapping[str, Any] | None = None,
    overrides: Iterable[str] = (),
) -> DictConfig:
    """The config at ``path`` with ``optional`` defaults filled in and ``key=value`` overrides applied; read-only.

    Every override must name a key of the file or of ``optional``: a typo is an error, not a new key.
    """
    optional = dict(optional or {})
    base = load_config(path, required=required)
    overrides = list(overrides)
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or (OmegaConf.select(base, key, default=None) is None and key not in optional):
            raise ConfigError(f"bad override '{item}': expected key=value with a key of {os.fspath(path)}")
    defaults = OmegaConf.create({})
    for key, value in optional.items():
        OmegaConf.update(defaults, key, value)
    config = OmegaConf.merge(defaults, to_container(base), OmegaConf.from_dotlist(overrides))
    OmegaConf.set_readonly(config, True)
    return config
