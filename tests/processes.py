"""Run a command line in its own process group, so a timeout or an interrupt kills every descendant.

``subprocess.run(timeout=...)`` kills only the direct child: the workers that ``torchrun`` or a
shell script start would live on (a gloo worker then waits on its socket forever).
"""

from __future__ import annotations

import contextlib
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
            _kill_group(proc.pid)
            proc.communicate()
            raise
        finally:
            _kill_group(proc.pid)  # also descendants left after the leader exited (a worker whose rank 0 crashed)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def start_group(cmd: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start a long-running command (a server) in its own process group; end it with :func:`stop_group`."""
    return subprocess.Popen(cmd, start_new_session=True, **kwargs)


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM the group (the command may clean up), SIGKILL it after ``timeout`` s; the leader's exit code
    (None when it had to be killed)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    _kill_group(proc.pid)  # also anything the leader left behind
    proc.wait()
    return code


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)


def run_torchrun(module: str, args: Sequence[str], nproc: int = 2, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m <module> args`` under ``torchrun --nproc_per_node nproc`` on a free port, one thread per process."""
    import socket
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port),
               "-m", module, *args]
    return run_group(command, timeout, env=env, **kwargs)
