"""The one home of the project's default paths, resolved against the project, not the caller's folder.

Paths written in the project's own configs (``configs/*.yaml``: checkpoints, the mask, the demo
files) are relative to the project root; :func:`project_path` makes them absolute. Paths a user
types on a command line stay relative to the folder the command was run from.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = PROJECT_ROOT / "configs"
INFERENCE_CONFIG = CONFIGS_DIR / "inference.yaml"
CHECKPOINTS_MANIFEST = CONFIGS_DIR / "checkpoints.yaml"  # what setup_env.sh downloads, and from where
SCHEDULER_DIR = CONFIGS_DIR  # holds scheduler_config.json (diffusers DDIMScheduler.from_pretrained)
AUDIO_CONFIG = CONFIGS_DIR / "audio.yaml"  # the Wav2Lip-style mel spectrogram of SyncNet and the data sets
DEFAULT_MASK_PATH = PROJECT_ROOT / "latentsync" / "face" / "mask.png"
CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
DEFAULT_VAE_DIR = CHECKPOINTS_DIR / "sd-vae-ft-mse"
AUXILIARY_DIR = CHECKPOINTS_DIR / "auxiliary"  # InsightFace buffalo_l and other helper models
HF_CLI = PROJECT_ROOT / ".venv" / "bin" / "hf"  # installed by setup_env.sh; not on PATH

# The Whisper checkpoint (relative to the checkpoints folder) that gives a UNet's audio width.
WHISPER_BY_WIDTH = {384: "whisper/tiny.pt", 768: "whisper/small.pt"}
DEFAULT_WHISPER = CHECKPOINTS_DIR / WHISPER_BY_WIDTH[384]


def avatar_cache_dir() -> Path:
    """Where streaming sessions keep prepared avatars: ``$XDG_CACHE_HOME/latentsync/avatars``
    (``~/.cache/latentsync/avatars`` when it is not set)."""
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "latentsync" / "avatars"


def project_path(path: str | os.PathLike) -> Path:
    """A path from one of the project's configs: relative ones are taken from the project root."""
    path = Path(os.path.expanduser(os.fspath(path)))
    return path if path.is_absolute() else PROJECT_ROOT / path


def config_base_dir(config_path: str | os.PathLike) -> Path:
    """What relative paths inside the config file ``config_path`` are relative to: the project root for a
    file inside the project (its own configs, as upstream runs them), else the file's own folder."""
    folder = Path(os.path.realpath(config_path)).parent
    return PROJECT_ROOT if folder == PROJECT_ROOT or PROJECT_ROOT in folder.parents else folder


def from_config(value: str | os.PathLike, config_file: str | os.PathLike) -> str:
    """A path written in ``config_file``, made absolute against :func:`config_base_dir`."""
    return os.path.join(config_base_dir(config_file), os.path.expanduser(os.fspath(value)))


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a user should type it here: relative when under the current folder, else absolute."""
    absolute = os.path.abspath(os.fspath(path))
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith(os.pardir) else relative


def hf_download_command(repo_id: str, files: list[str] | tuple[str, ...], local_dir: str | os.PathLike) -> str:
    """The ``hf download`` command line that fetches ``files`` of ``repo_id``, runnable from the current folder."""
    words = [shown_path(HF_CLI), "download", repo_id, *files, "--local-dir", shown_path(project_path(local_dir))]
    return shlex.join(words)
