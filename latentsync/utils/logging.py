"""Logging set-up for the command-line entry points (library modules only call getLogger)."""

from __future__ import annotations

import logging


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once: INFO (or DEBUG) to stderr, one line per record."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
