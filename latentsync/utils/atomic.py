"""Write a file under a temporary name in its final folder, then rename it into place.

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
