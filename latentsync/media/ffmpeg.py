"""The ffmpeg binary, run as an argument list (never a shell string), its failures as MediaError."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

from latentsync.errors import MediaError, StoppedBySignal

logger = logging.getLogger(__name__)

_STDERR_TAIL = 2000  # characters of ffmpeg's stderr kept in error messages
_SIGNALLED = 255  # ffmpeg's exit status after SIGINT or SIGTERM (it stops cleanly, then exits with this)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: the system one if on PATH, else the one bundled with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise MediaError("ffmpeg not found: install it (apt install ffmpeg) or `pip install imageio-ffmpeg`") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_path(path: str | os.PathLike) -> str:
    """``path`` as an ffmpeg input or output argument."""
    # An absolute path behind the file: protocol cannot be mistaken for an option ("-x.wav")
    # or for another protocol ("http:..."), whatever characters the name holds.
    return "file:" + os.path.abspath(os.fspath(path))


def run_ffmpeg(args: list[str], path: str | os.PathLike, action: str) -> bytes:
    """Run ffmpeg with ``args`` and return stdout; a failure becomes a MediaError with its stderr."""
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", *args]
    logger.debug("running %s", cmd)
    try:
        done = subprocess.run(cmd, capture_output=True, check=True)
    except subprocess.CalledProcessError as err:
        raise_if_signalled(err.returncode, path)
        stderr = err.stderr.decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        if "matches no streams" in stderr:  # a "-map 0:a:0" on a file without audio
            raise MediaError(f"file has no audio stream: {os.fspath(path)!r}") from err
        raise MediaError(f"ffmpeg could not {action} {os.fspath(path)!r}:\n{stderr}") from err
    return done.stdout


def raise_if_signalled(returncode: int, path: str | os.PathLike) -> None:
    """StoppedBySignal when ffmpeg ended because of a signal (killed, or its own exit after SIGINT/SIGTERM):
    the run is being interrupted, so the file it read must not be judged broken."""
    if returncode < 0 or returncode == _SIGNALLED:
        raise StoppedBySignal(f"ffmpeg was stopped by a signal while it read {os.fspath(path)!r}")
