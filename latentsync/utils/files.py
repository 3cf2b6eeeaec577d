"""Safe files: outputs written under a temporary name in their final folder, then renamed into place,
and the checks that refuse, before any work, a path that cannot be read or written as asked.

Temporary names carry a distinctive prefix and the writer's process id
(``.tmp-latentsync-<pid>-<name>-<random>``), so a later run can tell a leftover of a killed
process (its pid is gone) from a file being written right now, and remove only the former.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from typing import Iterator

from latentsync.errors import MediaError, OutputError

logger = logging.getLogger(__name__)

TEMP_PREFIX = ".tmp-latentsync-"  # + "<pid>-": temporary outputs beside their target
WORK_PREFIX = "latentsync-work-"  # + "<pid>-": private working folders


def owned_prefix(prefix: str, pid: int | None = None) -> str:
    """``prefix`` + this process's (or ``pid``'s) id: the start of every temporary name it makes."""
    return f"{prefix}{os.getpid() if pid is None else pid}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale(folder: str | os.PathLike, prefix: str = TEMP_PREFIX) -> list[str]:
    """Remove the files or folders in ``folder`` named ``prefix<pid>-...`` whose process is gone.

    They are what a killed run (SIGKILL, power loss) left behind; names of live processes and
    names without a pid are never touched. Returns the removed paths.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0] if name.startswith(prefix) else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError as err:
            logger.debug("could not remove stale %s: %s", path, err)
            continue
        logger.info("removed %s, left by an earlier run that was killed", path)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on failure it is removed.

    A crash while writing therefore leaves any previous file at ``path`` intact.
    ``suffix`` defaults to the target's extension so tools that sniff it (ffmpeg) still work.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    prefix = owned_prefix(TEMP_PREFIX) + os.path.basename(path) + "-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- checks before writing

OUTPUT_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv")  # containers that hold H.264 + AAC


def require_file(path: str | os.PathLike, what: str) -> str:
    """``path`` if it is a regular file; else a MediaError saying what it is instead (missing, a folder, a device)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MediaError(f"{what} path is a folder, not a file: {path!r}")
    if os.path.exists(path) and not os.path.isfile(path):
        # A device (/dev/zero), a pipe or a socket: ffmpeg would read it forever or block.
        raise MediaError(f"{what} path is not a regular file: {path!r}")
    if not os.path.isfile(path):
        raise MediaError(f"{what} file not found: {path!r}")
    return path


def _same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def check_output_path(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                      extensions: tuple[str, ...] = OUTPUT_EXTENSIONS) -> str:
    """Refuse, before any work, an output that would replace an input, does not end in one of ``extensions``,
    or cannot be written: the folder must exist or be creatable, and accept a new file."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in extensions:
        raise OutputError(f"output {path!r} must end in {', '.join(extensions)} (the extension picks the container)")
    for source in inputs:
        if _same_file(path, os.fspath(source)):
            raise OutputError(f"output {path!r} is the input file {os.fspath(source)!r}; choose another output path")
    if os.path.isdir(path):
        raise OutputError(f"output {path!r} is an existing folder; name a file inside it")
    if os.path.lexists(path) and not os.path.isfile(path) and not os.path.islink(path):
        raise OutputError(f"output {path!r} exists and is not a regular file")
    check_writable_folder(os.path.dirname(os.path.abspath(path)), f"output {path!r}")
    return path


def check_writable_folder(folder: str | os.PathLike, what: str) -> None:
    """Refuse a folder that is a file, or that (or its nearest existing parent) does not accept new files.

    Nothing is created: a missing folder is made later, when something is written into it.
    """
    folder = os.path.abspath(os.fspath(folder))
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is a file" if existing == folder else f"is under {existing!r}, which is a file"
        raise OutputError(f"{what}: folder {folder!r} {where}")
    try:  # the real test: read-only mounts, immutable folders and /proc refuse it whatever the mode bits say
        fd, probe = tempfile.mkstemp(prefix=owned_prefix(TEMP_PREFIX) + "probe-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise OutputError(f"{what}: folder {existing!r} does not accept new files ({err.strerror})") from err
