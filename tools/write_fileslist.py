"""Write a file list (one video path per line) from data set folders or other lists, optionally with a validation split.

The SyncNet and U-Net configs name such lists in ``data.train_fileslist``/``val_fileslist``;
a list is faster to open than walking a large tree, and fixes the training set's order.

    python -m tools.write_fileslist --output data/fileslist/train.txt data/processed/high_visual_quality
    python -m tools.write_fileslist --output train.txt --val_output val.txt --val_count 2 data/processed/high_visual_quality

A source is a folder (searched recursively for .mp4 files) or a file list (relative lines are relative
to the list). With ``--val_output`` the clips are split by source video: the preprocessing pipeline
names the clips of one video ``<name>_000.mp4``, ``<name>_001.mp4``, ..., and they all go to the same
side, so no validation clip has a sibling in training. ``--seed`` picks which videos are held out.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
from typing import Sequence

from latentsync.data.video_dataset import gather_video_paths
from latentsync.errors import ConfigError, LatentSyncError, error_line
from latentsync.utils.files import atomic_output
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)

_CLIP_SUFFIX = re.compile(r"_\d+$")  # the pipeline's segment number


def gather_sources(sources: Sequence[str | os.PathLike]) -> list[str]:
    """Absolute paths of the videos in ``sources`` (folders or file lists), in order, each once."""
    paths: list[str] = []
    seen: set[str] = set()
    for source in map(os.fspath, sources):
        if os.path.isdir(source):
            found = [os.path.abspath(p) for p in gather_video_paths(source)]
        elif os.path.isfile(source):
            found = _read_list(source)
        else:
            raise ConfigError(f"not found: {source} (give folders of .mp4 clips or file lists)")
        logger.info("%s: %d videos", source, len(found))
        paths += [p for p in found if p not in seen]
        seen.update(found)
    if not paths:
        raise ConfigError(f"no .mp4 videos in {', '.join(map(os.fspath, sources))}")
    return paths


def split_by_source(
    paths: Sequence[str], val_count: int = 0, val_fraction: float = 0.0, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(train, val): whole source videos held out, in a ``seed``-drawn order, until val has
    ``val_count`` clips (or ``val_fraction`` of them, at least one); both keep the input order."""
    target = max(val_count, round(val_fraction * len(paths)), 1 if val_fraction > 0 else 0)
    groups: dict[str, list[str]] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        groups.setdefault(os.path.join(os.path.dirname(path), _CLIP_SUFFIX.sub("", stem)), []).append(path)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    held: set[str] = set()
    for name in order:
        if len(held) >= target:
            break
        held.update(groups[name])
    train = [p for p in paths if p not in held]
    if not train:
        raise ConfigError(f"holding out {target} of {len(paths)} clips ({len(groups)} source videos) leaves no "
                          "training clips: ask for fewer")
    return train, [p for p in paths if p in held]


def write_fileslist(output_path: str | os.PathLike, sources: Sequence[str | os.PathLike]) -> list[str]:
    """Write the absolute paths of every ``.mp4`` in ``sources`` (folders, sorted, or file lists) to ``output_path``."""
    paths = gather_sources(sources)
    write_list(output_path, paths)
    return paths


def write_list(output_path: str | os.PathLike, paths: Sequence[str]) -> None:
    """``paths``, one per line, written atomically."""
    if os.path.isdir(output_path):
        raise ConfigError(f"{os.fspath(output_path)} is a folder: name the list file to write")
    with atomic_output(output_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(p + "\n" for p in paths)


def _read_list(path: str) -> list[str]:
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8", errors="replace") as f:
        found = [os.path.normpath(os.path.join(base, line.strip())) for line in f if line.strip()]
    missing = [p for p in found if not os.path.isfile(p)]
    if missing:
        raise ConfigError(f"{path} lists {len(missing)} videos that do not exist (first: {missing[0]})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="file list to (over)write: the training clips")
    parser.add_argument("--val_output", help="also hold out whole source videos into this list")
    parser.add_argument("--val_count", type=int, default=0, help="with --val_output: at least this many clips")
    parser.add_argument("--val_fraction", type=float, default=0.0, help="with --val_output: this share of the clips")
    parser.add_argument("--seed", type=int, default=0, help="which source videos are held out")
    parser.add_argument("sources", nargs="+", help="folders searched recursively for .mp4 files, or file lists")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.val_output and args.val_count <= 0 and not 0 < args.val_fraction < 1:
            raise ConfigError("--val_output needs --val_count N (>= 1) or --val_fraction F (between 0 and 1)")
        outputs = [args.output, *([args.val_output] if args.val_output else [])]
        for output in outputs:
            if any(os.path.exists(s) and os.path.samefile(output, s) for s in args.sources if os.path.exists(output)):
                raise ConfigError(f"{output} is one of the sources; write the list elsewhere")
        paths = gather_sources(args.sources)
        train, val = split_by_source(paths, args.val_count, args.val_fraction, args.seed) if args.val_output else (paths, [])
        write_list(args.output, train)
        logger.info("wrote %d paths to %s", len(train), args.output)
        if args.val_output:
            write_list(args.val_output, val)
            logger.info("wrote %d held-out paths to %s", len(val), args.val_output)
    except (LatentSyncError, OSError) as err:
        print(error_line(err), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
