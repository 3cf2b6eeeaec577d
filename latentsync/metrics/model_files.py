"""Where the evaluation models live (``checkpoints/auxiliary/``) and the command that fetches each.

Nothing here downloads: a missing file is a :class:`CheckpointError` naming it and the fetch command.
"""

from __future__ import annotations

import os
import shlex
from typing import Iterable, Sequence

from latentsync.config import load_config
from latentsync.errors import CheckpointError
from latentsync.paths import AUXILIARY_DIR, CHECKPOINTS_DIR, CHECKPOINTS_MANIFEST, hf_download_command, shown_path


def fetch_commands(names: Sequence[str]) -> str:
    """One command (two when the FID network is among them) that puts model files ``names`` into ``checkpoints/auxiliary/``."""
    manifest = load_config(CHECKPOINTS_MANIFEST)
    hub = [f"auxiliary/{name}" for name in names if name != manifest.fid_inception.file]
    commands = [f"`{hf_download_command(manifest.auxiliary_repo_id, hub, CHECKPOINTS_DIR)}`"] if hub else []
    if len(hub) < len(names):
        name = manifest.fid_inception.file
        commands.append(f"`{shlex.join(['curl', '-L', '-o', shown_path(AUXILIARY_DIR / name), manifest.fid_inception.url])}`")
    return " and ".join(commands)


def require_model_files(paths: Iterable[str | os.PathLike], advice: str = "") -> None:
    """A CheckpointError naming every one of ``paths`` that is not a file, with the command that fetches
    them all, so one run shows everything that is missing; ``advice`` is appended (e.g. a flag that
    runs without them)."""
    missing = [os.fspath(path) for path in paths if not os.path.isfile(path)]
    if not missing:
        return
    names = list(dict.fromkeys(os.path.basename(path) for path in missing))
    what = f"model file not found: {missing[0]}; fetch it" if len(missing) == 1 else (
        f"{len(missing)} model files not found: {', '.join(missing)}; fetch them")
    paths_word = "its path" if len(missing) == 1 else "their paths"
    raise CheckpointError(
        f"{what} with {fetch_commands(names)} (or `bash setup_env.sh --with-training`) and pass {paths_word}{advice}"
    )


def require_model_file(path: str | os.PathLike) -> str:
    """``path`` if it is a file, else a CheckpointError with the command that fetches it."""
    require_model_files([path])
    return os.fspath(path)


def default_path(name: str) -> str:
    """``<project>/checkpoints/auxiliary/<name>``, as a user would type it here."""
    return shown_path(AUXILIARY_DIR / name)
