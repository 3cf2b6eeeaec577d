"""latentsync/settings.py: one declaration per inference setting, and every entry point built from it.

A setting that exists in one place and not the others fails here: a key of configs/inference.yaml,
a flag of the CLI, a server flag or a control/API parameter of the Gradio page, a row of the
README's table. Values are checked once, with one error style.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import gradio_app
from latentsync import paths
from latentsync.errors import ConfigError
from latentsync.settings import (
    SETTINGS, SPECS, WEB_CONTROL, WEB_FLAG, WEB_UPLOAD, InferenceSettings, add_setting_flags, markdown_table,
    parse_settings,
)
from latentsync.utils.device import DEVICE_CHOICES
from latentsync.whisper.audio2feature import WINDOW_MODES
from scripts import inference as inference_cli
from tools.settings_table import README, readme_table

NAMES = [spec.name for spec in SETTINGS]
CLI_ONLY = {"help", "config", "batch", "output_dir", "verbose"}  # the CLI's own flags, not settings
GRADIO_ONLY = {"help", "config", "host", "port", "share", "auth", "concurrency", "max_queue", "max_seconds", "verbose",
               "live_sessions"}  # the app's own flags, not inference settings
# gradio_client callers of the previous page passed these positionally after the three files: still valid.
OLD_API_ORDER = ["inference_steps", "guidance_scale", "seed", "enable_deepcache", "deepcache_interval", "face_index",
                 "audio_windows", "scheduler"]


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions}


# --------------------------------------------------------------------------- one name everywhere


def test_every_yaml_key_is_a_setting_and_every_setting_a_yaml_key():
    keys = list(yaml.safe_load(paths.INFERENCE_CONFIG.read_text()))
    assert keys == NAMES  # same names, same order (the README's and the API's)


def test_the_cli_has_one_flag_per_setting_and_nothing_else_but_its_own():
    flags = _flags(inference_cli.build_parser())
    assert flags - CLI_ONLY == set(NAMES)
    assert CLI_ONLY <= flags


def test_the_web_page_has_every_setting_as_a_server_flag_a_control_or_an_upload():
    flags = _flags(gradio_app.build_parser())
    assert flags - GRADIO_ONLY == {spec.name for spec in SETTINGS if spec.web == WEB_FLAG}
    controls = [spec.name for spec in gradio_app.CONTROLS]
    assert controls == [spec.name for spec in SETTINGS if spec.web == WEB_CONTROL]
    uploads = {spec.name for spec in SETTINGS if spec.web == WEB_UPLOAD}
    assert uploads == {"video_path", "audio_path", "video_out_path"}  # the uploads and the result
    assert set(controls) | uploads | (flags - GRADIO_ONLY) == set(NAMES)


def test_the_web_api_parameters_are_the_files_then_the_controls_by_their_setting_names(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    settings = InferenceSettings.from_config()
    service = SimpleNamespace(problem="no models in this test", settings=settings, slots=1, summary="")
    workspace = gradio_app.Workspace(str(tmp_path))
    try:
        demo = gradio_app.build_demo(service, workspace, argparse.Namespace(max_seconds=10, max_queue=2))
        parameters = demo.get_api_info()["named_endpoints"]["/lipsync"]["parameters"]
    finally:
        workspace.close()
    names = [p["parameter_name"] for p in parameters]
    assert names == ["video", "photo", "audio", *[spec.name for spec in gradio_app.CONTROLS]]
    assert names[3 : 3 + len(OLD_API_ORDER)] == OLD_API_ORDER
    # Each control starts at the config's value (the page's none is -1), so callers may leave it out.
    defaults = {p["parameter_name"]: p["parameter_default"] for p in parameters[3:]}
    assert all(p["parameter_has_default"] for p in parameters[3:])
    for spec in gradio_app.CONTROLS:
        expected = getattr(settings, spec.name)
        assert defaults[spec.name] == (-1 if expected is None else expected), spec.name


def test_the_readme_table_is_the_settings_table():
    table = readme_table(README.read_text(encoding="utf-8"))
    assert table == markdown_table(), "README.md is stale: run `python -m tools.settings_table --write`"
    for name in NAMES:
        assert f"| `--{name}` |" in table


def test_choices_are_the_library_s_own_lists():
    assert SPECS["device"].choices == DEVICE_CHOICES
    assert SPECS["audio_windows"].choices == WINDOW_MODES


# --------------------------------------------------------------------------- values


def test_the_config_gives_every_value_and_paths_are_the_project_s():
    settings = InferenceSettings.from_config()
    assert settings.inference_steps == 20 and settings.scheduler == "ddim" and settings.face_index is None
    assert Path(settings.unet_config_path) == paths.PROJECT_ROOT / "configs/unet/stage2_512.yaml"
    assert settings.sampling().enable_deepcache is True and settings.sampling(0.3).eta == 0.3


@pytest.mark.parametrize("name, value, message", [
    ("inference_steps", 0, "--inference_steps must be between 1 and 999, got 0"),
    ("inference_steps", 2.5, "--inference_steps must be a whole number, got 2.5"),
    ("inference_steps", "x", "--inference_steps must be a whole number, got 'x'"),
    ("guidance_scale", math.nan, "--guidance_scale must be a finite number >= 0 (1.0 = off), got nan"),
    ("seed", -5, "--seed must be -1 (a fresh seed) or between 0 and 2**63 - 1, got -5"),
    ("deepcache_interval", 0, "--deepcache_interval must be >= 1 (1 = no reuse), got 0"),
    ("face_index", -1, "--face_index counts faces from 0 (left to right), got -1"),
    ("detect_every", 0, "--detect_every must be >= 1 (1 = every frame), got 0"),
    ("detect_max_side", -1, "--detect_max_side must be >= 0 (0 = full size), got -1"),
    ("scheduler", "euler", "--scheduler must be one of ddim, dpm++, got 'euler'"),
    ("device", "tpu", "--device must be one of auto, cuda, mps, cpu, got 'tpu'"),
    ("enable_deepcache", "yes", "--enable_deepcache must be true or false, got 'yes'"),
    ("seed", True, "--seed must be a whole number, got True"),
    ("scheduler", None, "--scheduler needs a value"),
])
def test_a_bad_value_is_one_error_naming_the_flag(name, value, message):
    settings = InferenceSettings.from_config()
    with pytest.raises(ConfigError) as caught:
        settings.replace(**{name: value})
    assert str(caught.value) == message


def test_values_of_web_forms_and_text_are_converted():
    settings = InferenceSettings.from_config().replace(inference_steps=12.0, guidance_scale=2, seed="7",
                                                       face_index=None, temp_dir=Path("/tmp"))
    assert (settings.inference_steps, settings.guidance_scale, settings.seed) == (12, 2.0, 7)
    assert type(settings.guidance_scale) is float and settings.temp_dir == "/tmp"


def test_config_files_unknown_keys_missing_keys_and_relative_paths(tmp_path):
    config = yaml.safe_load(paths.INFERENCE_CONFIG.read_text())
    with_typo = tmp_path / "typo.yaml"
    with_typo.write_text(yaml.safe_dump({**config, "inference_step": 3}))
    with pytest.raises(ConfigError, match="has unknown keys: inference_step"):
        InferenceSettings.from_config(with_typo)
    partial = tmp_path / "partial.yaml"
    partial.write_text(yaml.safe_dump({k: v for k, v in config.items() if k not in ("seed", "scheduler")}))
    with pytest.raises(ConfigError, match=r"no value for --seed, --scheduler: config .* does not set them"):
        InferenceSettings.from_config(partial)
    # A config outside the project: its relative paths are relative to its own folder.
    outside = tmp_path / "mine.yaml"
    outside.write_text(yaml.safe_dump({**config, "vae_path": "models/vae"}))
    assert InferenceSettings.from_config(outside).vae_path == str(tmp_path / "models/vae")
    with pytest.raises(ConfigError, match="unknown settings: steps"):
        InferenceSettings.from_config(steps=3)


def test_flags_override_the_config_and_settings_without_a_flag_keep_its_value(tmp_path):
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, ["inference_steps", "enable_deepcache"])
    config = yaml.safe_load(paths.INFERENCE_CONFIG.read_text())
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({**config, "inference_steps": 7, "seed": 3}))
    args, settings = parse_settings(parser, ["--config", str(mine), "--no-enable_deepcache"])
    assert (settings.inference_steps, settings.seed, settings.enable_deepcache) == (7, 3, False)
    assert args.inference_steps == 7  # the flag's default is the config's
    _, settings = parse_settings(parser, ["--config", str(mine), "--inference_steps", "4"])
    assert settings.inference_steps == 4


@pytest.mark.parametrize("flags, message", [
    (["--inference_steps", "0"], "error: --inference_steps must be between 1 and 999, got 0\n"),
    (["--inference_stepz", "3"], "error: unrecognized arguments: --inference_stepz 3 (see --help)\n"),
])
def test_eval_all_checks_the_settings_it_passes_on_before_anything_runs(tmp_path, capsys, flags, message):
    from eval import eval_all

    code = eval_all.main(["--eval_list", str(tmp_path / "list.csv"), "--checkpoint", str(tmp_path / "c.pt"),
                          "--output_dir", str(tmp_path / "out"), *flags])
    assert code == 1 and capsys.readouterr().err == message
    assert list(tmp_path.iterdir()) == []
