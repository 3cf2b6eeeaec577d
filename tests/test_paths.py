"""Every default path of the library goes through ``latentsync/paths.py``, so it holds from any folder.

A path literal such as ``"configs/audio.yaml"`` in ``latentsync/`` resolves against the caller's
current folder and breaks as soon as a user runs a command from elsewhere; the first test finds
such literals in the source, the others use the defaults from a folder outside the project.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from latentsync import paths
from latentsync.audio.mel import load_audio_config
from latentsync.face.detection import make_face_detector
from latentsync.face.insightface_detector import InsightFaceDetector, insightface_available
from latentsync.face.mask import load_fixed_mask
from latentsync.whisper.audio2feature import Audio2Feature
from tests.conftest import REPO_ROOT

# A string that starts with one of the project's own folders is a project path written relative
# to wherever the process happens to run.
PROJECT_RELATIVE = re.compile(r"^(\./)?(configs|checkpoints|latentsync|assets)/")


def cwd_relative_literals(root: Path) -> list[str]:
    """``file:line 'literal'`` for every string constant under ``root/latentsync`` that names a project path."""
    found = []
    for path in sorted((root / "latentsync").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and PROJECT_RELATIVE.match(node.value):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.value!r}")
    return found


def test_the_library_has_no_cwd_relative_paths():
    assert cwd_relative_literals(Path(REPO_ROOT)) == []


@pytest.mark.parametrize(
    "source, bad",
    [
        ('DEFAULT = "configs/audio.yaml"\n', True),
        ('def f(model_dir="checkpoints/auxiliary"):\n    pass\n', True),
        ('x = "./latentsync/face/mask.png"\n', True),
        ('x = paths.CONFIGS_DIR / "audio.yaml"\n"""See ``configs/audio.yaml``."""\n', False),
        ('message = "run setup_env.sh, it fetches checkpoints/auxiliary"\n', False),
    ],
)
def test_the_scan_finds_what_it_should(tmp_path, source, bad):
    (tmp_path / "latentsync" / "sub").mkdir(parents=True)
    (tmp_path / "latentsync" / "sub" / "module.py").write_text(source)
    found = cwd_relative_literals(tmp_path)
    assert bool(found) == bad, found
    if bad:
        assert found[0].startswith("latentsync/sub/module.py:")


def test_library_defaults_work_outside_the_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: nothing project-relative resolves here
    config = load_audio_config()
    assert (config.num_mels, config.sample_rate, config.hop_size) == (80, 16000, 200)
    mask = load_fixed_mask(256)
    assert tuple(mask.shape) == (1, 256, 256) and mask.min() == 0 and mask.max() == 1
    assert insightface_available() == insightface_available(paths.AUXILIARY_DIR)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "function, parameter, expected",
    [
        (load_audio_config, "path", paths.AUDIO_CONFIG),
        (load_fixed_mask, "path", paths.DEFAULT_MASK_PATH),
        (make_face_detector, "model_dir", paths.AUXILIARY_DIR),
        (insightface_available, "model_dir", paths.AUXILIARY_DIR),
        (InsightFaceDetector, "model_dir", paths.AUXILIARY_DIR),
        (Audio2Feature, "model_path", paths.DEFAULT_WHISPER),
    ],
)
def test_default_paths_are_the_project_ones(function, parameter, expected):
    default = inspect.signature(function).parameters[parameter].default
    assert default == expected and Path(default).is_absolute()
    assert Path(default).is_relative_to(paths.PROJECT_ROOT)
