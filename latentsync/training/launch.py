"""torchrun for the training scripts, ending with the run's one ``error:`` line instead of torchrun's traceback.

    python -m latentsync.training.launch [torchrun options] -m scripts.train_unet [script arguments]

It takes torchrun's own options (``torch.distributed.run``) and runs the workers in-process the same
way, with ``$LATENTSYNC_ERROR_DIR`` naming a private folder where a worker that stops on an error a
user can act on leaves its ``error:`` line (see :mod:`latentsync.training.cli`). Workers keep
writing to this terminal as they go; nothing of theirs is captured or filtered. When a worker fails,
torchrun stops the others and the launcher prints, last, that line (or, for a crash or a signal,
which rank ended how) and exits with status 1 (130 on Ctrl-C). Workers never take the current
folder's ``scripts``/``latentsync`` for the project's (``PYTHONSAFEPATH``).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Any, Mapping, Sequence

from latentsync.errors import error_line
from latentsync.utils.files import WORK_PREFIX, owned_prefix

ERROR_DIR_ENV = "LATENTSYNC_ERROR_DIR"  # where each worker leaves its error line (rank<R>.txt)


def worker_errors(folder: str) -> list[str]:
    """The error lines the workers left in ``folder``, lowest rank first, each once; others prefixed by their rank."""
    found = []
    for name in sorted(os.listdir(folder), key=lambda n: (len(n), n)):
        if name.startswith("rank") and name.endswith(".txt"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                line = f.read().strip()
            if line and line not in [text for _, text in found]:
                found.append((name[4:-4], line))
    return [line if i == 0 else f"rank {rank}: {line}" for i, (rank, line) in enumerate(found)]


def failure_line(failures: Mapping[int, Any]) -> str:
    """What ended the first failed worker, when it left no line: an exit status (traceback above) or a signal."""
    rank, failure = min(failures.items(), key=lambda item: item[1].timestamp)
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"error: training process {rank} was killed by {name}{hint}"
    return f"error: training process {rank} failed with exit status {code} (its messages are above)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with ``argv`` (its options, then the script and its arguments); the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    # The launcher reports failed workers itself, in one line; torchrun's own ERROR record would say it twice.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    folder = tempfile.mkdtemp(prefix=owned_prefix(WORK_PREFIX) + "train-errors-")
    if args.log_dir is None:  # torchrun's own (empty) log folders, otherwise left in the temp folder for good
        args.log_dir = os.path.join(folder, "torchrun")
    environment = {ERROR_DIR_ENV: folder, "PYTHONSAFEPATH": "1"}
    previous = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        run(args)
        return 0
    except ChildFailedError as failed:
        # A worker that was killed or crashed may have left a progress bar without its line end.
        lines = worker_errors(folder) or ["", failure_line(failed.failures)]
        code = 1
    except (KeyboardInterrupt, SignalException) as stop:
        lines = worker_errors(folder)
        signum = getattr(stop, "sigval", signal.SIGINT)
        lines = [line for line in lines if "interrupted" not in line]
        lines.append(f"error: interrupted by {signal.Signals(signum).name}; rerun the same command to resume "
                     "from the last checkpoint")
        code = 128 + int(signum)
    except Exception as err:  # torchrun itself could not start (a port in use, a bad option value)
        lines, code = [error_line(err)], 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    sys.stdout.flush()
    sys.stderr.write("".join(line + "\n" for line in lines))
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
