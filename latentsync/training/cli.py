"""What every training script's command line shares: the flags, their config keys, and ``main``'s body.

A script adds its own flags after :func:`training_parser`, maps flags to config keys in one
table (:func:`flag_overrides`), and its ``main`` is :func:`run_training_main` over its
``build``, loss and validation functions.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Callable, Mapping, Sequence

from latentsync.errors import LatentSyncError
from latentsync.training.loop import LossFn, ValidateFn, train_loop
from latentsync.training.run import TrainingRun
from latentsync.utils.device import DEVICE_CHOICES
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)

DEBUG_DUMP_ENV = "LATENTSYNC_DEBUG_DUMP_DIR"
# Flags every training script has, and the config key each one overrides.
COMMON_FLAGS = {"output_dir": "data.train_output_dir", "resume_ckpt_path": "ckpt.resume_ckpt_path", "device": "run.device"}


def training_parser(description: str, default_config: str) -> argparse.ArgumentParser:
    """``--config_path``, the common override flags, ``--debug_dump_dir``, ``--verbose`` and ``key=value`` overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config_path", default=default_config)
    parser.add_argument("--output_dir", help="overrides data.train_output_dir")
    parser.add_argument("--resume_ckpt_path", help="overrides ckpt.resume_ckpt_path; 'latest' = newest in output_dir")
    parser.add_argument("--device", help=f"overrides run.device: {' | '.join(DEVICE_CHOICES)}")
    parser.add_argument(
        "--debug_dump_dir", default=os.environ.get(DEBUG_DUMP_ENV),
        help=f"each rank writes rank<R>.json (data seen, weight digests, files written); also ${DEBUG_DUMP_ENV}",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.max_train_steps=100")
    return parser


def flag_overrides(args: argparse.Namespace, flags: Mapping[str, str] = COMMON_FLAGS) -> list[str]:
    """The ``key=value`` overrides: the positional ones, then one per given flag of ``flags`` (flag -> config key)."""
    overrides = list(args.overrides)
    for flag, key in flags.items():
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    return overrides


def run_training_main(
    argv: Sequence[str] | None,
    parse_args: Callable[[Sequence[str] | None], argparse.Namespace],
    load_config: Callable[[argparse.Namespace], object],
    build: Callable[[object, str | None], TrainingRun],
    compute_loss: LossFn,
    validate: ValidateFn | None,
) -> int:
    """Parse, configure logging, build, train, dump debug records; a user-facing error is one line and exit code 1."""
    args = parse_args(argv)
    configure_logging(args.verbose)
    try:
        run = build(load_config(args), args.debug_dump_dir)
        train_loop(run, compute_loss, validate)
        if run.debug is not None:
            run.debug.dump()
        run.accelerator.end_training()
    except LatentSyncError as err:
        logger.error("%s", err)
        return 1
    return 0
