"""Training configs: one schema per script, checked once: YAML file, defaults, ``key=value`` overrides.

A schema maps each dotted key (``run.max_train_steps``) to a :class:`Key`: its kind, default (or
required), allowed values and whether it may change when a run resumes. Loading a config
(:func:`load_training_config`) fills the defaults, applies the overrides, and refuses in one
``ConfigError`` line: an unknown key (naming the closest known one; ``allow_unknown`` keeps it with a
warning instead), a missing required key, or a value of the wrong kind or out of range (naming the
key, what it must be, the value and where it came from). Relative paths are made absolute: those in
the file against :func:`latentsync.paths.config_base_dir` (the project for its own configs), those on
the command line against the current folder, defaults against the project. The result is read-only.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from omegaconf import DictConfig, OmegaConf

from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError
from latentsync.paths import AUDIO_CONFIG, DEFAULT_VAE_DIR, PROJECT_ROOT, config_base_dir
from latentsync.utils.device import DEVICE_CHOICES

logger = logging.getLogger(__name__)

REQUIRED = object()  # a Key's default when the config must give the value
_LISTED = 6  # missing keys named in one error line
KINDS = {  # kind -> how an error message says it
    "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "path": "a path",
    "list": "a list", "mapping": "a mapping", "any": "a value",
}
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
                 "piecewise_constant")  # diffusers' get_scheduler names


@dataclass(frozen=True)
class Key:
    """One config key: its kind (see KINDS), default, allowed values, and whether a resumed run may change it."""

    kind: str
    default: Any = REQUIRED
    nullable: bool = False  # null is allowed (and is the default when default is None)
    choices: tuple | None = None
    low: float | None = None  # numbers: the smallest allowed value
    high: float | None = None  # numbers: the largest allowed value
    changeable: bool = False  # may differ from the resumed run's value (schedule, logging, hardware)
    keep: tuple = ()  # path values taken literally ("latest")

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def expected(self) -> str:
        """What a value must be, as an error message says it."""
        text = KINDS[self.kind]
        if self.choices:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.low is not None and self.high is not None:
            text += f" from {self.low} to {self.high}"
        elif self.low is not None:
            text += f" >= {self.low}"
        return text + (" (or null)" if self.nullable else "")


Schema = Mapping[str, Key]

# Keys of every training script (loop, optimizer, checkpoints, data loading); each script adds its own.
TOOLKIT_KEYS: dict[str, Key] = {
    "run.seed": Key("int"),
    "run.device": Key("str", "auto", choices=tuple(DEVICE_CHOICES), changeable=True),
    "run.mixed_precision_training": Key("bool", False, changeable=True),
    "run.max_train_minutes": Key("float", 0, low=0, changeable=True),
    "run.max_nonfinite_in_a_row": Key("int", 10, low=1, changeable=True),
    "ckpt.save_ckpt_steps": Key("int", low=1, changeable=True),
    "ckpt.resume_ckpt_path": Key("path", "latest", keep=("latest",), changeable=True),
    "ckpt.keep_last_n": Key("int", 0, low=0, changeable=True),
    "data.train_output_dir": Key("path", changeable=True),
    "data.batch_size": Key("int", low=1),
    "data.num_frames": Key("int", low=1),
    "data.resolution": Key("int", low=1),
    "data.video_fps": Key("int", low=1),
    "data.audio_sample_rate": Key("int", low=1),
    "data.gradient_accumulation_steps": Key("int", 1, low=1),
    "data.num_workers": Key("int", 0, low=0, changeable=True),
    "data.frame_cache_size": Key("int", 0, low=0, changeable=True),
    "data.train_fileslist": Key("path", ""),
    "data.train_data_dir": Key("path", ""),
    "data.val_fileslist": Key("path", ""),
    "data.val_data_dir": Key("path", ""),
    "data.audio_config": Key("path", str(AUDIO_CONFIG)),
    "data.audio_mel_cache_dir": Key("path", "", changeable=True),
    "data.vae_path": Key("path", str(DEFAULT_VAE_DIR)),
    "optimizer.lr": Key("float", low=0),
    "optimizer.max_grad_norm": Key("float", 1.0, nullable=True, changeable=True),
    "optimizer.weight_decay": Key("float", 1e-2, low=0),
    "optimizer.lr_scheduler": Key("str", "constant", choices=LR_SCHEDULERS),
    "optimizer.lr_warmup_steps": Key("int", 0, low=0),
}


def keys_from_signature(function: Callable, prefix: str, required: Iterable[str] = ()) -> dict[str, Key]:
    """Schema keys for a constructor's keyword arguments (a model section): kinds from their defaults."""
    kinds = {bool: "bool", int: "int", float: "float", str: "str", tuple: "list", list: "list", dict: "mapping"}
    keys = {}
    for name, param in inspect.signature(function).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = param.default
        kind = "any" if default is None or default is param.empty else kinds.get(type(default), "any")
        value = REQUIRED if name in required or default is param.empty else default
        keys[prefix + name] = Key(kind, list(value) if isinstance(value, tuple) else value, nullable=default is None)
    return keys


# --------------------------------------------------------------------------- loading


def load_training_config(
    path: str | os.PathLike,
    schema: Schema,
    overrides: Iterable[str] = (),
    allow_unknown: bool = False,
) -> DictConfig:
    """The config at ``path`` checked against ``schema``, defaults filled, ``key=value`` overrides applied; read-only."""
    path = os.fspath(path)
    file_values, file_unknown = _flatten(_plain(load_config(path), path), schema)
    override_values, override_unknown = _flatten(_parse_overrides(overrides), schema)
    unknown = [(key, f"in {path}") for key in file_unknown] + [(key, "on the command line") for key in override_unknown]
    if unknown:
        listing = "; ".join(f"unknown key '{key}' {where}{_closest(key, schema)}" for key, where in unknown)
        if not allow_unknown:
            raise ConfigError(f"{listing}; --allow_unknown_keys keeps keys this script does not know")
        logger.warning("%s: kept as given (--allow_unknown_keys)", listing)

    sources = {key: ("default", str(PROJECT_ROOT)) for key, spec in schema.items() if not spec.required}
    sources.update({key: (f"in {path}", str(config_base_dir(path))) for key in file_values})
    sources.update({key: ("on the command line", os.getcwd()) for key in override_values})
    given = {key: spec.default for key, spec in schema.items() if not spec.required}
    given.update(file_values)
    for key, value in override_values.items():  # `run.trepa_dims.depth=2` changes one entry of a mapping
        old = given.get(key)
        both = isinstance(old, Mapping) and isinstance(value, Mapping)
        given[key] = to_container(OmegaConf.merge(old, value)) if both else value
    missing = [key for key, spec in schema.items() if spec.required and key not in given]
    if missing:
        more = f" and {len(missing) - _LISTED} more" if len(missing) > _LISTED else ""
        raise ConfigError(f"config {path} lacks required key{'s' if len(missing) > 1 else ''} "
                          + ", ".join(f"'{key}'" for key in missing[:_LISTED]) + more)
    problems, values = [], {}
    for key, value in given.items():
        if key not in schema:
            values[key] = value  # an unknown key the caller allowed
            continue
        where, base = sources[key]
        try:
            values[key] = _checked(key, schema[key], value, base)
        except ValueError as err:
            problems.append(f"{err} ({where})")
    if problems:
        raise ConfigError("; ".join(problems))
    config = OmegaConf.create({})
    for key in sorted(values):
        OmegaConf.update(config, key, values[key], force_add=True)
    OmegaConf.set_readonly(config, True)
    return config


def flat_values(config: DictConfig | Mapping, schema: Schema) -> dict[str, Any]:
    """The values of ``schema``'s keys in ``config`` (a loaded or saved config), by dotted key."""
    values, _ = _flatten(to_container(config) if isinstance(config, DictConfig) else config, schema)
    return values


def _plain(config: DictConfig, path: str) -> dict:
    try:
        return to_container(config)  # resolves ${oc.env:...} interpolations
    except Exception as exc:  # omegaconf's interpolation errors
        raise ConfigError(f"config {path}: {' '.join(str(exc).split())}") from exc


def _parse_overrides(overrides: Iterable[str]) -> dict:
    items = list(overrides)
    for item in items:
        if "=" not in item or not item.split("=", 1)[0]:
            raise ConfigError(f"bad argument '{item}': expected a --flag or key=value (e.g. run.max_train_steps=100)")
    try:
        return to_container(OmegaConf.from_dotlist(items))
    except Exception as exc:
        raise ConfigError(f"bad override in {items}: {' '.join(str(exc).split())}") from exc


def _flatten(tree: Mapping, schema: Schema, prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """(values of the schema's keys, unknown keys) of a nested mapping; a schema key's value may be a mapping."""
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if key in schema:
            values[key] = value
        elif any(k.startswith(key + ".") for k in schema):
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{key}' must be a section of keys such as "
                                  f"'{next(k for k in schema if k.startswith(key + '.'))}', got {value!r}")
            inner, more = _flatten(value, schema, key + ".")
            values.update(inner)
            unknown += more
        else:
            values[key] = value
            unknown.append(key)
    return values, unknown


def _closest(key: str, schema: Schema) -> str:
    sections = {k.rsplit(".", 1)[0] for k in schema}
    match = difflib.get_close_matches(key, [*schema, *sections], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _checked(key: str, spec: Key, value: Any, base: str) -> Any:
    """``value`` as ``spec`` wants it (ints as floats, integral floats as ints, relative paths made absolute)."""
    if value is None and spec.kind in ("str", "path") and not spec.nullable:
        value = ""  # `key=` on the command line
    if value is None:
        if spec.nullable:
            return None
        raise ValueError(f"{key} must be {spec.expected()}, got null")
    kind, ok = spec.kind, True
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
        value = int(value) if ok else value
    elif kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind in ("str", "path"):
        ok = isinstance(value, str)
    elif kind == "list":
        ok = isinstance(value, (list, tuple))
    elif kind == "mapping":
        ok = isinstance(value, Mapping)
    bad_choice = ok and spec.choices is not None and value not in spec.choices
    out_of_range = ok and kind in ("int", "float") and (
        spec.low is not None and value < spec.low or spec.high is not None and value > spec.high)
    if not ok or bad_choice or out_of_range:
        raise ValueError(f"{key} must be {spec.expected()}, got {value!r}")
    if kind == "path" and value and value not in spec.keep:
        value = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
    return value
