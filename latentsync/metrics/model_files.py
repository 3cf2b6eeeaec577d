"""Where the evaluation models live (``checkpoints/auxiliary/``) and the command that fetches each.

Nothing here downloads: a missing file is a :class:`CheckpointError` naming it and the fetch command.
"""

from __future__ import annotations

import os
from pathlib import Path

from latentsync.config import load_config
from latentsync.errors import CheckpointError

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
MANIFEST = PROJECT_ROOT / "configs" / "checkpoints.yaml"
AUXILIARY_DIR = os.path.join("checkpoints", "auxiliary")


def fetch_command(name: str) -> str:
    """The shell command that puts model file ``name`` into ``checkpoints/auxiliary/``."""
    manifest = load_config(MANIFEST)
    if name == manifest.fid_inception.file:
        return f"curl -L -o {AUXILIARY_DIR}/{name} {manifest.fid_inception.url}"
    return f"hf download {manifest.auxiliary_repo_id} auxiliary/{name} --local-dir checkpoints"


def require_model_file(path: str | os.PathLike) -> str:
    """``path`` if it is a file, else a CheckpointError with the command that fetches it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        name = os.path.basename(path)
        raise CheckpointError(
            f"model file not found: {path}; fetch it with `{fetch_command(name)}` "
            f"(or `bash setup_env.sh --with-training`) and pass its path"
        )
    return path


def default_path(name: str) -> str:
    """``checkpoints/auxiliary/<name>``."""
    return os.path.join(AUXILIARY_DIR, name)
