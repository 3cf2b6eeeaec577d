"""User-facing failures, one type each.

Every message names the offending file or key and says how to fix it. The CLIs in
``scripts/`` catch :class:`LatentSyncError` once and print a single line.
"""


class LatentSyncError(Exception):
    """Base class for failures a user can act on (as opposed to bugs)."""


class MediaError(LatentSyncError):
    """A video or audio file is missing, unreadable, empty or in an unusable format."""


class NoFaceError(LatentSyncError):
    """No face was found in any frame of the input video."""


class CheckpointError(LatentSyncError):
    """A checkpoint is missing, corrupt, or does not match the model's keys and shapes."""


class ConfigError(LatentSyncError):
    """A configuration file is missing, malformed, or lacks a required key."""


class OutputError(LatentSyncError):
    """The output cannot be written where asked, or would overwrite one of the inputs."""
