"""User-facing failures, one type each.

Every message names the offending file or key and says how to fix it. The CLIs in
``scripts/`` catch :class:`LatentSyncError` once and print a single line (:func:`one_line`).
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


class DeviceError(LatentSyncError, ValueError):
    """An unknown device name, or an accelerator that is not available on this machine."""


class FaceDetectorUnavailableError(LatentSyncError):
    """The requested face detector's package or model files are missing."""


class SkipVideo(LatentSyncError):
    """A video cannot give a sample (unreadable, too short, no audio); the data set draws another."""


class TrainingDivergedError(LatentSyncError):
    """Too many optimisation steps in a row had a non-finite loss or gradient."""


class OutputError(LatentSyncError):
    """The output cannot be written where asked, or would overwrite one of the inputs."""


class StreamError(LatentSyncError, ValueError):
    """A streaming session was given audio it cannot read, or used after it was closed or finished."""


class StoppedBySignal(LatentSyncError):
    """A helper process (ffmpeg) was stopped by a signal: the run is being interrupted, the input is not at fault."""


def error_line(err: BaseException) -> str:
    """A CLI's one ``error:`` line for a failure that stops the whole run (the message on one line)."""
    return "error: " + (" ".join(str(err).split()) or type(err).__name__)


def one_line(err: BaseException) -> str:
    """An error as one line: its first line plus its last detail line (ffmpeg's stderr tails run long).

    The inference CLI and the web page show this; :func:`error_line` keeps every line of the message.
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1]}"
