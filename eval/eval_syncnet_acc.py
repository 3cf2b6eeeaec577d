"""Accuracy of a SyncNet checkpoint on a folder (or file list) of face videos.

Each video gives in-sync and shifted pairs drawn by the training data set's rule, scored by
:mod:`latentsync.metrics.syncnet_accuracy` (cosine similarity above 0.5 = "in sync").

    python -m eval.eval_syncnet_acc --config_path configs/syncnet/syncnet_16_pixel_attn.yaml \
        --checkpoint checkpoints/stable_syncnet.pt --data_dir data/val [--num_samples 2048]

The last line printed is ``syncnet_val_accuracy=0.NN``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from torch.utils.data import DataLoader

from latentsync import paths
from latentsync.cli import ArgumentParser, number
from latentsync.config import load_config, to_container
from latentsync.data.syncnet_dataset import SyncNetDataset
from latentsync.data.video_dataset import read_video_paths, validation_keys
from latentsync.errors import CheckpointError, LatentSyncError
from latentsync.metrics.report import error_line
from latentsync.metrics.syncnet_accuracy import SYNC_THRESHOLD, SyncScore, evaluate
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.syncnet_input import load_frozen_vae
from latentsync.utils.device import DEVICE_CHOICES, pick_device
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)

# Keys of the config's data section that name files or folders (relative: see latentsync.paths.from_config).
DATA_PATH_KEYS = ("val_fileslist", "val_data_dir", "audio_mel_cache_dir", "vae_path")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="python -m eval.eval_syncnet_acc",
                            description="Accuracy of a SyncNet checkpoint on in-sync and shifted pairs")
    parser.add_argument("--config_path", required=True, help="SyncNet config: model, data and run sections")
    parser.add_argument("--checkpoint", help="weights file (default: ckpt.inference_ckpt_path)")
    parser.add_argument("--data_dir", help="folder of videos (default: data.val_fileslist, else data.val_data_dir)")
    parser.add_argument("--fileslist", help="file list of videos, instead of --data_dir")
    parser.add_argument("--num_samples", type=number(int, 1), help="pairs to judge (default: data.num_val_samples)")
    parser.add_argument("--batch_size", type=number(int, 1), help="default: data.batch_size")
    parser.add_argument("--seed", type=int, help="seed of the pair draws (default: run.seed)")
    parser.add_argument("--device", default="auto", help=" | ".join(DEVICE_CHOICES))
    parser.add_argument("--threshold", type=number(float, -1, 1), default=SYNC_THRESHOLD,
                        help="cosine similarity above which a pair counts as in sync")
    return parser.parse_args(argv)


def run_evaluation(args: argparse.Namespace) -> SyncScore:
    config = load_config(args.config_path, required=("model", "data", "run.seed"))
    data = to_container(config.data)
    data.setdefault("vae_path", os.fspath(paths.DEFAULT_VAE_DIR))
    data.update({key: paths.from_config(data[key], args.config_path) for key in DATA_PATH_KEYS if data.get(key)})
    device = pick_device(args.device)
    checkpoint = args.checkpoint or config.ckpt.get("inference_ckpt_path") or None
    if checkpoint is None:
        raise CheckpointError(f"no --checkpoint given and ckpt.inference_ckpt_path of {args.config_path} is empty")
    if not args.checkpoint:
        checkpoint = paths.from_config(checkpoint, args.config_path)
    missing = [] if os.path.isfile(checkpoint) else [f"SyncNet checkpoint not found: {checkpoint}"]
    if data["latent_space"] and not os.path.isdir(data["vae_path"]):
        missing.append(f"VAE folder not found: {data['vae_path']} (run `bash setup_env.sh` or set data.vae_path)")
    if missing:  # all at once
        raise CheckpointError("; ".join(missing))
    model = StableSyncNet.from_checkpoint(config, checkpoint, device=device)
    if args.data_dir or args.fileslist:
        videos = read_video_paths(args.fileslist, args.data_dir)
    else:
        videos = read_video_paths(data.get("val_fileslist"), data.get("val_data_dir"))
    seed = config.run.seed if args.seed is None else args.seed
    dataset = SyncNetDataset.from_config(data, "val", seed=seed, video_paths=videos)
    keys = validation_keys(len(dataset), args.num_samples or data["num_val_samples"])
    loader = DataLoader(dataset, batch_size=args.batch_size or data["batch_size"], sampler=keys,
                        num_workers=data.get("num_workers", 0))
    vae = load_frozen_vae(data["vae_path"], device) if data["latent_space"] else None
    score = evaluate(model, loader, vae, data["lower_half"], device, args.threshold)
    logger.info("%d videos, %d pairs: loss %.4f, accuracy %.4f", len(videos), score.count, score.loss, score.accuracy)
    return score


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    try:
        score = run_evaluation(parse_args(argv))
    except LatentSyncError as err:
        print(error_line(err), file=sys.stderr)
        return 1
    print(f"syncnet_val_accuracy={score.accuracy:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
