"""Write a file list (one video path per line) from one or more data set folders.

The SyncNet and U-Net configs name such lists in ``data.train_fileslist``/``val_fileslist``;
a list is faster to open than walking a large tree, and fixes the training set's order.

    python -m tools.write_fileslist --output data/fileslist/train.txt data/VoxCeleb2/high_visual_quality/train ...
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from latentsync.data.video_dataset import gather_video_paths
from latentsync.utils.files import atomic_output
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)


def write_fileslist(output_path: str | os.PathLike, dataset_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Write the absolute paths of every ``.mp4`` under ``dataset_dirs`` (sorted per folder) to ``output_path``."""
    paths: list[str] = []
    for folder in dataset_dirs:
        found = [os.path.abspath(p) for p in gather_video_paths(folder)]
        logger.info("%s: %d videos", folder, len(found))
        paths += found
    with atomic_output(output_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in paths)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="file list to (over)write")
    parser.add_argument("dataset_dirs", nargs="+", help="folders searched recursively for .mp4 files")
    args = parser.parse_args(argv)
    configure_logging()
    paths = write_fileslist(args.output, args.dataset_dirs)
    logger.info("wrote %d paths to %s", len(paths), args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
