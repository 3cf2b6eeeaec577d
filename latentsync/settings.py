"""The inference settings: every option of a lip-sync run, declared once.

:class:`InferenceSettings` names each option once, and that name is the key in
``configs/inference.yaml``, the command-line flag (``--name``), the Python keyword and the web
page's API parameter. Each field says its type, its allowed range or choices, its help text and
where the web page offers it (:data:`WEB_FLAG`: a server flag, :data:`WEB_CONTROL`: a control and
API parameter per request, :data:`WEB_UPLOAD`: the request's files). The defaults live only in
``configs/inference.yaml``. A value is checked once, when a settings object is made, and a bad one
is a :class:`~latentsync.errors.ConfigError` naming ``--name`` and the range.

The CLI (``scripts/inference.py``) builds its flags with :func:`add_setting_flags` and reads them
with :func:`parse_settings`; the Gradio app builds its server flags the same way and its controls
from :data:`SETTINGS`; batch rows change only the file settings of one object, and ``eval_all``
checks the flags it passes on with :func:`check_setting_flags`.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Sequence

from latentsync import paths
from latentsync.cli import ArgumentParser
from latentsync.config import load_config, to_container
from latentsync.errors import ConfigError
from latentsync.face.detection import DETECTOR_NAMES
from latentsync.pipelines.sampling import SCHEDULERS, Sampling, max_inference_steps
from latentsync.utils.device import DEVICE_CHOICES
from latentsync.whisper.audio2feature import WINDOW_MODES

WEB_FLAG, WEB_CONTROL, WEB_UPLOAD = "flag", "control", "upload"
MAX_SEED = 2**63 - 1
MAX_STEPS = max_inference_steps()


@dataclass(frozen=True)
class Rule:
    """A range check: ``ok(value)`` or the error ``--name {says}, got {value}``."""

    ok: Callable[[Any], bool]
    says: str


def _setting(
    help: str,
    web: str,
    *,
    label: str = "",
    rule: Rule | None = None,
    choices: Sequence[str] = (),
    path: bool = False,
    form: tuple[float, float, float] | None = None,
    allowed: str = "",
) -> Any:
    """A field of :class:`InferenceSettings`: ``help`` (flag help and README), ``web`` (where the page has it),
    ``label`` (the control's), ``form`` (a slider's min, max, step), ``path`` (relative values in a config
    file are resolved against it), ``allowed`` (the README's wording of the range, if not the rule's)."""
    return field(metadata=dict(help=help, web=web, label=label, rule=rule, choices=tuple(choices), path=path,
                               form=form, allowed=allowed))


@dataclass(frozen=True)
class InferenceSettings:
    """Every option of a run (see the module docstring); make one with :meth:`from_config` or :func:`parse_settings`."""

    unet_config_path: str = _setting(
        "UNet config: configs/unet/stage2_512.yaml (1.6) or stage2.yaml (1.5)", WEB_FLAG, path=True)
    inference_ckpt_path: str = _setting("UNet weights, {'state_dict', 'global_step'} .pt", WEB_FLAG, path=True)
    whisper_path: str | None = _setting(
        "Whisper checkpoint; none: checkpoints/whisper/tiny.pt or small.pt by the UNet's audio width", WEB_FLAG,
        path=True)
    vae_path: str = _setting("folder of a diffusers AutoencoderKL (config.json + weights)", WEB_FLAG, path=True)
    video_path: str | None = _setting("input video or still image", WEB_UPLOAD, path=True)
    audio_path: str | None = _setting("input audio (any format ffmpeg reads, or a video's audio track)", WEB_UPLOAD,
                                      path=True)
    video_out_path: str | None = _setting("output .mp4/.mov/.m4v/.mkv (lasts as long as the audio)", WEB_UPLOAD,
                                          path=True)
    inference_steps: int = _setting(
        "denoising steps: DDIM 20-50 (more is slower, slightly sharper); dpm++ 10-20", WEB_CONTROL,
        label="Inference steps", rule=Rule(lambda v: 1 <= v <= MAX_STEPS, f"must be between 1 and {MAX_STEPS}"),
        form=(1, 100, 1))
    guidance_scale: float = _setting(
        "classifier-free guidance strength; 1.0 turns it off, 1.5-2.0 syncs harder", WEB_CONTROL,
        label="Guidance scale (1.0: off)",
        rule=Rule(lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0 (1.0 = off)"),
        form=(1.0, 3.0, 0.1))
    seed: int = _setting(
        "random seed of the initial noise; -1 picks a fresh one", WEB_CONTROL, label="Seed (-1: random)",
        rule=Rule(lambda v: -1 <= v <= MAX_SEED, "must be -1 (a fresh seed) or between 0 and 2**63 - 1"))
    enable_deepcache: bool = _setting("reuse deep UNet features between steps (faster)", WEB_CONTROL,
                                      label="Deep cache (faster)")
    deepcache_interval: int = _setting(
        "with deep caching, recompute deep features every N steps", WEB_CONTROL,
        label="Deep cache: recompute deep features every N steps",
        rule=Rule(lambda v: v >= 1, "must be >= 1 (1 = no reuse)"), form=(1, 10, 1))
    face_index: int | None = _setting(
        "which face to sync: k-th from the left where faces first appear (none: the largest)", WEB_CONTROL,
        label="Face to sync (-1: largest; 0: leftmost, 1: next...)",
        rule=Rule(lambda v: v >= 0, "counts faces from 0 (left to right)"), allowed=">= 0")
    audio_windows: str = _setting(
        "Whisper windowing: overlap (no 30 s seams), upstream (the reference's hard 30 s windows) or stream "
        "(a window sliding with the audio, 200 ms look-ahead: what live streaming computes)", WEB_CONTROL,
        label="Audio windows (upstream: the reference's 30 s windows)", choices=WINDOW_MODES)
    scheduler: str = _setting(
        "sampler: ddim, or dpm++ (DPM-Solver++: close to DDIM in half the steps)", WEB_CONTROL,
        label="Sampler (dpm++: about as good at 10 steps as ddim at 20)", choices=tuple(SCHEDULERS))
    detect_every: int = _setting(
        "run the face detector on every N-th frame, interpolating in between (1: all)", WEB_CONTROL,
        label="Face detection on every N-th frame (1: all)",
        rule=Rule(lambda v: v >= 1, "must be >= 1 (1 = every frame)"), form=(1, 25, 1))
    detect_max_side: int = _setting(
        "shrink frames to at most N pixels for face detection (0: full size)", WEB_CONTROL,
        label="Face detection on frames shrunk to N pixels (0: full size)",
        rule=Rule(lambda v: v >= 0, "must be >= 0 (0 = full size)"))
    archival: bool = _setting(
        "encode the output slowly at high quality (libx264 slow, CRF 18) instead of for throughput", WEB_CONTROL,
        label="Archival encoding (slower, smaller file)")
    device: str = _setting("where to run; auto = cuda, then mps, then cpu", WEB_FLAG, choices=DEVICE_CHOICES)
    face_detector: str = _setting(
        "face detector: insightface (upstream's, if installed with its models), mediapipe, or auto", WEB_FLAG,
        choices=DETECTOR_NAMES)
    audio_cache_dir: str | None = _setting("cache Whisper features here, keyed by audio content (none: no cache)",
                                           WEB_FLAG, path=True)
    temp_dir: str | None = _setting(
        "parent folder of the private working folder (created if missing; removed afterwards)", WEB_FLAG, path=True)

    def __post_init__(self) -> None:
        for spec in SETTINGS:
            object.__setattr__(self, spec.name, spec.check(getattr(self, spec.name)))

    @classmethod
    def from_config(cls, config: str | os.PathLike = paths.INFERENCE_CONFIG, **changes: Any) -> "InferenceSettings":
        """The settings of a YAML file (configs/inference.yaml by default), with ``changes`` applied."""
        return from_values({**config_values(config), **changes}, config)

    def replace(self, **changes: Any) -> "InferenceSettings":
        """A copy with ``changes`` (checked like every settings object)."""
        return replace(self, **changes)

    def sampling(self, eta: float = 0.0) -> Sampling:
        """The per-call options of :class:`~latentsync.pipelines.lipsync_pipeline.LipsyncPipeline`."""
        return Sampling(self.inference_steps, self.scheduler, self.guidance_scale, self.enable_deepcache,
                        self.deepcache_interval, eta)


def draw_seed() -> int:
    """A fresh random seed (what -1 means)."""
    return secrets.randbelow(2**31)


@dataclass(frozen=True)
class SettingSpec:
    """One setting, as read from :class:`InferenceSettings`: its type, whether none is allowed, and its metadata."""

    name: str
    kind: type  # int, float, bool or str
    optional: bool  # None allowed (e.g. face_index none = the largest face)
    help: str
    web: str
    label: str
    rule: Rule | None
    choices: tuple[str, ...]
    path: bool
    form: tuple[float, float, float] | None
    allowed: str

    def check(self, value: Any) -> Any:
        """``value`` converted to the setting's type and checked: a ConfigError naming ``--name`` if it is wrong."""
        flag = f"--{self.name}"
        if value is None:
            if self.optional:
                return None
            raise ConfigError(f"{flag} needs a value")
        value = _converted(self.kind, value, flag)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{flag} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.rule is not None and not self.rule.ok(value):
            raise ConfigError(f"{flag} {self.rule.says}, got {value}")
        return value


def _converted(kind: type, value: Any, flag: str) -> Any:
    """``value`` as ``kind`` (bool, str, int or float): YAML, flags and web forms give the right type or its text."""
    if kind is bool and isinstance(value, bool):
        return value
    if kind is str and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    if kind in (int, float) and not isinstance(value, bool):
        if kind is float and isinstance(value, (int, float)):
            return float(value)
        if kind is int and isinstance(value, int):
            return value
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    what = {bool: "true or false", str: "text", int: "a whole number", float: "a number"}[kind]
    raise ConfigError(f"{flag} must be {what}, got {value!r}")


def _specs() -> tuple[SettingSpec, ...]:
    hints = typing.get_type_hints(InferenceSettings)
    specs = []
    for f in fields(InferenceSettings):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        kind = args[0] if args else hints[f.name]
        specs.append(SettingSpec(f.name, kind, len(args) > 0, **f.metadata))
    return tuple(specs)


SETTINGS: tuple[SettingSpec, ...] = _specs()
SPECS = {spec.name: spec for spec in SETTINGS}


# --------------------------------------------------------------------------- configs


def config_values(config: str | os.PathLike) -> dict[str, Any]:
    """A config file's values, its keys checked and its relative paths resolved: against the project
    for a config inside it, else against the file's folder."""
    if not os.fspath(config):
        raise ConfigError("--config is empty; pass a YAML file such as configs/inference.yaml")
    values = to_container(load_config(config))
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ConfigError(f"config {os.fspath(config)} has unknown keys: {', '.join(unknown)}")
    for name, value in values.items():
        if SPECS[name].path and isinstance(value, str) and value:
            values[name] = paths.from_config(value, config)
    return values


def from_values(values: dict[str, Any], config: str | os.PathLike) -> InferenceSettings:
    """Settings from a complete set of values; the ones missing are named in one error."""
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(unknown)}")
    missing = [spec.name for spec in SETTINGS if not spec.optional and values.get(spec.name) is None]
    if missing:
        one = len(missing) == 1
        raise ConfigError(
            f"no value for {', '.join('--' + name for name in missing)}: config {os.fspath(config)} does not set "
            f"{'it' if one else 'them'}; pass {'it' if one else 'them'} as flags "
            f"or use {paths.shown_path(paths.INFERENCE_CONFIG)}"
        )
    return InferenceSettings(**{spec.name: values.get(spec.name) for spec in SETTINGS})


# --------------------------------------------------------------------------- command lines


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the description's line breaks and show each option's default (from the config)."""


def add_setting_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """``--config`` and one flag per setting (all, or ``names``), typed and with their choices and help."""
    parser.add_argument("--config", default=str(paths.INFERENCE_CONFIG),
                        help="YAML file with the defaults of the settings below")
    wanted = set(SPECS if names is None else names)
    for spec in SETTINGS:
        if spec.name not in wanted:
            continue
        options: dict[str, Any] = {"help": spec.help}
        if spec.kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif spec.choices:
            options["choices"] = spec.choices
        elif spec.kind in (int, float):
            options["type"] = spec.kind
        parser.add_argument(f"--{spec.name}", **options)


def parse_settings(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> tuple[argparse.Namespace, InferenceSettings]:
    """Parse ``argv`` with a parser that has :func:`add_setting_flags`: the ``--config`` file gives the
    defaults (of the flags, and of the settings the parser has no flag for), flags override them."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=str(paths.INFERENCE_CONFIG))
    known, _ = pre.parse_known_args(argv)
    values = config_values(known.config)
    flags = {action.dest for action in parser._actions} & set(SPECS)
    parser.set_defaults(**{name: value for name, value in values.items() if name in flags})
    args = parser.parse_args(argv)
    values.update({name: getattr(args, name) for name in flags})
    return args, from_values(values, known.config)


def check_setting_flags(argv: Sequence[str]) -> InferenceSettings:
    """Flags passed on to the inference CLI by another command (``eval_all``), checked as the CLI will read
    them: an unknown flag or a bad value is a ConfigError now, not a failed run later."""
    parser = ArgumentParser(add_help=False)
    add_setting_flags(parser)
    return parse_settings(parser, argv)[1]


def markdown_table() -> str:
    """The README's table of settings: flag, default (configs/inference.yaml), allowed values, meaning, web page."""
    defaults = to_container(load_config(paths.INFERENCE_CONFIG))
    where = {WEB_FLAG: "server flag", WEB_CONTROL: "control, API", WEB_UPLOAD: "upload"}
    lines = ["| option | default | allowed | meaning | web page |", "| --- | --- | --- | --- | --- |"]
    for spec in SETTINGS:
        default = defaults.get(spec.name)
        shown = "none" if default is None else str(default).lower() if spec.kind is bool else str(default)
        if spec.allowed or spec.choices:
            allowed = spec.allowed or ", ".join(spec.choices)
        elif spec.kind is bool:
            allowed = "true, false"
        elif spec.rule is not None:
            allowed = spec.rule.says.removeprefix("must be ")
        else:
            allowed = "a path" if spec.path else spec.kind.__name__
        if spec.optional:
            allowed += ", or none"
        lines.append(f"| `--{spec.name}` | {shown} | {allowed} | {spec.help} | {where[spec.web]} |")
    return "\n".join(lines)
