"""Accuracy of a SyncNet checkpoint on a folder (or file list) of face videos.

Each video gives in-sync and shifted pairs drawn by the training data set's rule; a pair is
judged "in sync" when the cosine similarity of its embeddings exceeds 0.5, as in the reference.

    python -m eval.eval_syncnet_acc --config_path configs/syncnet/syncnet_16_pixel_attn.yaml \
        --checkpoint checkpoints/stable_syncnet.pt --data_dir data/val [--num_samples 2048]

The last line printed is ``syncnet_val_accuracy=0.NN``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from latentsync.config import load_config
from latentsync.data.syncnet_dataset import SyncNetDataset, read_video_paths, syncnet_visual_input
from latentsync.errors import CheckpointError, LatentSyncError
from latentsync.losses import cosine_loss
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.utils.device import pick_device
from latentsync.utils.logging import configure_logging

logger = logging.getLogger(__name__)

SYNC_THRESHOLD = 0.5  # cosine similarity above which a pair counts as in sync


@dataclass(frozen=True)
class SyncScore:
    """Summed BCE loss, correct decisions and pair count; additive over batches and ranks."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    def as_list(self) -> list[float]:
        return [self.loss_sum, self.correct, self.count]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "SyncScore":
        return cls(*values)


def validation_keys(dataset_size: int, num_samples: int) -> list[tuple[int, int]]:
    """Fixed ``(epoch, index)`` draws covering every video in turn: the same pairs at every evaluation."""
    return [divmod(i, dataset_size) for i in range(num_samples)]


def forward_pair(
    model: torch.nn.Module, batch: Mapping[str, torch.Tensor], vae: torch.nn.Module | None, lower_half: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """(vision_embeds, audio_embeds) of a data-set batch: frames stacked (or VAE-encoded) for the visual encoder."""
    frames = syncnet_visual_input(batch["frames"].to(device, non_blocking=True), lower_half, vae)
    return model(frames, batch["audio_samples"].to(device, non_blocking=True))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    vae: torch.nn.Module | None,
    lower_half: bool,
    device: torch.device,
    threshold: float = SYNC_THRESHOLD,
    progress: bool = True,
) -> SyncScore:
    """Sum of losses and of correct in-sync/shifted decisions over ``batches``."""
    loss_sum = correct = count = 0.0
    for batch in tqdm(batches, desc="SyncNet accuracy", disable=not progress):
        vision, audio = forward_pair(model, batch, vae, lower_half, device)
        y = batch["y"].to(device).flatten()
        loss_sum += cosine_loss(vision, audio, y).sum().item()
        similarity = F.cosine_similarity(vision.float(), audio.float(), dim=1)
        correct += ((similarity > threshold).float() == y).sum().item()
        count += len(y)
    return SyncScore(loss_sum, correct, count)


def load_vae(path: str, device: torch.device) -> torch.nn.Module:
    """The frozen Stable Diffusion VAE (a local diffusers folder) for latent-space SyncNets."""
    from diffusers import AutoencoderKL

    if not os.path.isdir(path):
        raise CheckpointError(f"VAE folder not found: {path} (run `bash setup_env.sh` or set data.vae_path)")
    vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
    vae.requires_grad_(False)
    return vae.eval().to(device)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Accuracy of a SyncNet checkpoint on in-sync and shifted pairs")
    parser.add_argument("--config_path", required=True, help="SyncNet config: model, data and run sections")
    parser.add_argument("--checkpoint", help="weights file (default: ckpt.inference_ckpt_path)")
    parser.add_argument("--data_dir", help="folder of videos (default: data.val_fileslist, else data.val_data_dir)")
    parser.add_argument("--fileslist", help="file list of videos, instead of --data_dir")
    parser.add_argument("--num_samples", type=int, help="pairs to judge (default: data.num_val_samples)")
    parser.add_argument("--batch_size", type=int, help="default: data.batch_size")
    parser.add_argument("--seed", type=int, help="seed of the pair draws (default: run.seed)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--threshold", type=float, default=SYNC_THRESHOLD)
    return parser.parse_args(argv)


def run_evaluation(args: argparse.Namespace) -> SyncScore:
    config = load_config(args.config_path, required=("model", "data", "run.seed"))
    data = config.data
    device = pick_device(args.device)
    checkpoint = args.checkpoint or config.ckpt.get("inference_ckpt_path") or None
    if checkpoint is None:
        raise CheckpointError(f"no --checkpoint given and ckpt.inference_ckpt_path of {args.config_path} is empty")
    model = StableSyncNet.from_checkpoint(config, checkpoint, device=device)
    if args.data_dir or args.fileslist:
        paths = read_video_paths(args.fileslist, args.data_dir)
    else:
        paths = read_video_paths(data.get("val_fileslist"), data.get("val_data_dir"))
    seed = config.run.seed if args.seed is None else args.seed
    dataset = SyncNetDataset.from_config(data, "val", seed=seed, video_paths=paths)
    keys = validation_keys(len(dataset), args.num_samples or data.num_val_samples)
    loader = DataLoader(dataset, batch_size=args.batch_size or data.batch_size, sampler=keys,
                        num_workers=data.get("num_workers", 0))
    vae = load_vae(data.get("vae_path", "checkpoints/sd-vae-ft-mse"), device) if data.latent_space else None
    score = evaluate(model, loader, vae, data.lower_half, device, args.threshold)
    logger.info("%d videos, %d pairs: loss %.4f, accuracy %.4f", len(paths), score.count, score.loss, score.accuracy)
    return score


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        score = run_evaluation(args)
    except LatentSyncError as err:
        logger.error("%s", err)
        return 1
    print(f"syncnet_val_accuracy={score.accuracy:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
