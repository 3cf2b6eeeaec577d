"""What every training script's command line shares: the flags, their config keys, and ``main``'s body.

A script adds its own flags to :func:`training_parser`, maps flags to config keys in one table
(:func:`flag_overrides`), and its ``main`` is :func:`run_training_main` over its schema and its
``build``, loss and validation functions. ``key=value`` overrides may come anywhere on the line.

Every failure a user can act on ends the run with one ``error:`` line last on stderr and exit status
1. Under the launcher (``latentsync.training.launch``, which ``train_*.sh`` use) each process writes
that line to ``$LATENTSYNC_ERROR_DIR/rank<R>.txt`` instead, and the launcher prints it once, after
torchrun's own messages.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Mapping, Sequence

from omegaconf import DictConfig

from latentsync.errors import ConfigError, LatentSyncError, error_line
from latentsync.paths import shown_path
from latentsync.training.config import Schema, load_training_config
from latentsync.training.launch import ERROR_DIR_ENV
from latentsync.training.loop import LossFn, ValidateFn, train_loop
from latentsync.training.resume import start_checkpoint
from latentsync.training.run import TrainingRun
from latentsync.utils.files import atomic_output
from latentsync.utils.device import DEVICE_CHOICES
from latentsync.utils.logging import configure_logging

DEBUG_DUMP_ENV = "LATENTSYNC_DEBUG_DUMP_DIR"
# Flags every training script has, and the config key each one overrides.
COMMON_FLAGS = {"output_dir": "data.train_output_dir", "resume_ckpt_path": "ckpt.resume_ckpt_path", "device": "run.device"}
Build = Callable[..., TrainingRun]  # build(config, debug_dump_dir=None, resume=None)


class TrainingParser(argparse.ArgumentParser):
    """Usage mistakes are a ConfigError (one ``error:`` line), not argparse's usage block and exit status 2."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see --help)")


def training_parser(description: str, default_config: str) -> argparse.ArgumentParser:
    """``--config_path``, the common override flags, the safety valves, ``--verbose`` and ``key=value`` overrides."""
    parser = TrainingParser(description=description)
    parser.add_argument("--config_path", default=default_config, help="the training config (default: %(default)s)")
    parser.add_argument("--output_dir", help="overrides data.train_output_dir")
    parser.add_argument("--resume_ckpt_path",
                        help="overrides ckpt.resume_ckpt_path: 'latest' (default) = newest in output_dir, '' = none")
    parser.add_argument("--device", help=f"overrides run.device: {' | '.join(DEVICE_CHOICES)}")
    parser.add_argument("--allow_unknown_keys", action="store_true",
                        help="keep config keys this script does not know (logged) instead of stopping")
    parser.add_argument("--allow_config_change", action="store_true",
                        help="resume the run in output_dir although its saved config differs (logged)")
    parser.add_argument(
        "--debug_dump_dir", default=os.environ.get(DEBUG_DUMP_ENV),
        help=f"each rank writes rank<R>.json (data seen, weight digests, files written); also ${DEBUG_DUMP_ENV}",
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. run.max_train_steps=100")
    return parser


def parse_training_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Flags and ``key=value`` overrides in any order."""
    return parser.parse_intermixed_args(argv)


def flag_overrides(args: argparse.Namespace, flags: Mapping[str, str] = COMMON_FLAGS) -> list[str]:
    """The ``key=value`` overrides: the positional ones, then one per given flag of ``flags`` (flag -> config key)."""
    overrides = list(args.overrides)
    for flag, key in flags.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def config_from_args(args: argparse.Namespace, schema: Schema, flags: Mapping[str, str] = COMMON_FLAGS) -> DictConfig:
    """The checked, read-only config the arguments describe."""
    return load_training_config(args.config_path, schema, flag_overrides(args, flags), args.allow_unknown_keys)


def report_error(message: str) -> None:
    """The run's one ``error:`` line: to stderr, or for the launcher to print (see the module docstring)."""
    folder = os.environ.get(ERROR_DIR_ENV)
    if folder and os.path.isdir(folder):
        with atomic_output(os.path.join(folder, f"rank{os.environ.get('RANK', '0')}.txt")) as tmp:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(message + "\n")
        return
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_training_main(
    argv: Sequence[str] | None,
    parser: argparse.ArgumentParser,
    schema: Schema,
    build: Build,
    compute_loss: LossFn,
    validate: ValidateFn | None,
    flags: Mapping[str, str] = COMMON_FLAGS,
) -> int:
    """Parse, check the config and the output folder, build, train; a user-facing error is one line and exit 1."""
    resume = None
    try:
        args = parse_training_args(parser, argv)
        configure_logging(args.verbose)
        config = config_from_args(args, schema, flags)
        resume = start_checkpoint(config, schema, args.allow_config_change)
        run = build(config, args.debug_dump_dir, resume)
        train_loop(run, compute_loss, validate)
        if run.debug is not None:
            run.debug.dump()
        run.accelerator.end_training()
    except LatentSyncError as err:
        line = error_line(err)
        report_error(f"{line} (this run resumed from {shown_path(resume)})" if resume else line)
        return 1
    except KeyboardInterrupt:
        report_error("error: interrupted; rerun the same command to resume from the last checkpoint")
        return 130
    return 0
