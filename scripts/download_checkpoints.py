"""Download the official LatentSync checkpoints listed in configs/checkpoints.yaml.

Run by ``setup_env.sh``. When the hub cannot be reached it lists exactly which files are
missing and how to fetch them by hand, and still exits 0 so offline machines can run tests.
``--check`` downloads nothing: it lists what is missing and exits 1 if anything is.
Local folders in the manifest are relative to the project root.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.error
import urllib.request

from latentsync.config import load_config
from latentsync.errors import LatentSyncError
from latentsync.paths import CHECKPOINTS_MANIFEST, hf_download_command, project_path
from latentsync.utils.logging import configure_logging

logger = logging.getLogger("download_checkpoints")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CHECKPOINTS_MANIFEST), help="checkpoint manifest (default: %(default)s)")
    parser.add_argument("--release", default="1.6", help="LatentSync release to fetch: 1.6 (default) or 1.5")
    parser.add_argument("--with-training", action="store_true", help="also fetch stable_syncnet.pt and auxiliary/ models")
    parser.add_argument("--check", action="store_true", help="download nothing; exit 1 if a file is missing")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the hub before giving up")
    return parser.parse_args(argv)


def planned_downloads(config, release: str, with_training: bool) -> list[tuple[str, str, str]]:
    """``(repo_id, filename, local_dir)`` for every file the chosen release needs."""
    releases = config.releases
    if release not in releases:
        raise LatentSyncError(f"unknown release '{release}', choose one of {', '.join(releases)}")
    chosen = releases[release]
    local_dir, vae_dir = str(project_path(config.local_dir)), str(project_path(config.vae.local_dir))
    plan = [(chosen.repo_id, name, local_dir) for name in chosen.files]
    plan += [(config.vae.repo_id, name, vae_dir) for name in config.vae.files]
    if with_training:
        plan += [(chosen.repo_id, name, local_dir) for name in config.training_files]
    return plan


def hub_reachable(timeout: float) -> bool:
    """One quick request, so an offline machine does not sit through the client's retries per file."""
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=timeout)
    except urllib.error.HTTPError:
        return True  # the server answered
    except (urllib.error.URLError, OSError):
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        config = load_config(args.config)
        plan = planned_downloads(config, args.release, args.with_training)
    except LatentSyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    missing = [item for item in plan if not os.path.isfile(os.path.join(item[2], item[1]))]
    if not missing:
        logger.info("all %d checkpoint files for release %s are present", len(plan), args.release)
    elif args.check:
        _list_missing(missing, f"{len(missing)} checkpoint files are missing:")
        return 1
    elif hub_reachable(args.timeout):
        from huggingface_hub import hf_hub_download, snapshot_download

        for repo_id, filename, local_dir in missing:
            logger.info("downloading %s/%s -> %s", repo_id, filename, local_dir)
            hf_hub_download(repo_id, filename, local_dir=local_dir)
        if args.with_training:
            repo_id = config.releases[args.release].repo_id
            snapshot_download(
                repo_id, allow_patterns=list(config.training_patterns), local_dir=str(project_path(config.local_dir))
            )
        missing = []
    if missing:
        _list_missing(missing, f"the Hugging Face hub is unreachable; {len(missing)} checkpoint files are missing:")
    return 0


def _list_missing(missing: list[tuple[str, str, str]], headline: str) -> None:
    logger.warning(headline)
    for repo_id, filename, local_dir in missing:
        logger.warning("  %s  <- %s", os.path.join(local_dir, filename), hf_download_command(repo_id, [filename], local_dir))
    logger.warning("inference needs them; tests do not (they build tiny models)")


if __name__ == "__main__":
    sys.exit(main())
