"""Logging set-up for the command-line entry points (library modules only call getLogger)."""

from __future__ import annotations

import logging
import warnings


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once: INFO (or DEBUG) to stderr, one line per record."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # mediapipe 0.10.14 calls a protobuf API that protobuf 4.x marks deprecated, once per graph;
    # the warning says nothing a user can act on.
    warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)
