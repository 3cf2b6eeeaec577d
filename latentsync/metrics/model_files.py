"""Where the evaluation models live (``checkpoints/auxiliary/``) and the command that fetches each.

Nothing here downloads: a missing file is a :class:`CheckpointError` naming it and the fetch command.
"""

from __future__ import annotations

import os
import shlex

from latentsync.config import load_config
from latentsync.errors import CheckpointError
from latentsync.paths import AUXILIARY_DIR, CHECKPOINTS_DIR, CHECKPOINTS_MANIFEST, hf_download_command, shown_path


def fetch_command(name: str) -> str:
    """The shell command that puts model file ``name`` into ``checkpoints/auxiliary/``."""
    manifest = load_config(CHECKPOINTS_MANIFEST)
    if name == manifest.fid_inception.file:
        return shlex.join(["curl", "-L", "-o", shown_path(AUXILIARY_DIR / name), manifest.fid_inception.url])
    return hf_download_command(manifest.auxiliary_repo_id, [f"auxiliary/{name}"], CHECKPOINTS_DIR)


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
    """``<project>/checkpoints/auxiliary/<name>``, as a user would type it here."""
    return shown_path(AUXILIARY_DIR / name)
