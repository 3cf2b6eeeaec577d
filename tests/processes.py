"""Run a command line in its own process group, so a timeout or an interrupt kills every descendant.

``subprocess.run(timeout=...)`` kills only the direct child: the workers that ``torchrun`` or a
shell script start would live on (a gloo worker then waits on its socket forever).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Sequence


def run_group(cmd: Sequence[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` whose whole process group dies on timeout or error."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:  # timeout, KeyboardInterrupt, pytest's own timeout: leave no orphan behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            _kill_leftovers(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _kill_leftovers(group: int) -> None:
    """Descendants still running after the leader exited (e.g. a worker whose rank 0 crashed)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
