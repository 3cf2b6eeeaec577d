"""A tiny U-Net training setup made inside the tests: synthetic talking-head clips and random-weight models.

Clips are 64x64, 1.4 s (35 frames: three 5-frame windows fit with room to move); the VAE, Whisper and
SyncNet are random but in their official file formats, so the real loading code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from latentsync.config import load_config, to_container
from latentsync.models.checkpoint import save_checkpoint
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.unet import UNet3DConditionModel
from tests.data.synthetic_clips import make_clip_set
from tools.tiny_models import write_vae, write_whisper
from tools.write_fileslist import write_fileslist

STAGE1 = "configs/unet/stage1_tiny_cpu.yaml"
STAGE2 = "configs/unet/stage2_tiny_cpu.yaml"
SYNCNET_CONFIG = "configs/syncnet/syncnet_tiny_cpu.yaml"


@dataclass(frozen=True)
class TinySetup:
    train_list: str
    val_list: str
    cache: Path
    vae: Path
    whisper: Path
    syncnet: Path
    stage1_init: Path  # random stage-1 weights with non-zero conv_in/conv_out (a fresh UNet outputs zeros)

    def args(self, config: str, output_dir: Path, *extra: str) -> list[str]:
        """Command-line arguments of a 2-step run of ``config`` on this setup (``extra`` overrides win)."""
        return [
            "--config_path", config,
            "--output_dir", str(output_dir),
            f"data.train_fileslist={self.train_list}",
            f"data.val_fileslist={self.val_list}",
            f"data.audio_embeds_cache_dir={self.cache / 'embeds'}",
            f"data.audio_mel_cache_dir={self.cache / 'mel'}",
            f"data.vae_path={self.vae}",
            f"data.whisper_path={self.whisper}",
            f"ckpt.syncnet_ckpt_path={self.syncnet}",
            "ckpt.init_ckpt_path=",
            "data.batch_size=2",
            "data.num_val_samples=2",
            "data.frame_cache_size=8",
            "run.max_train_steps=2",
            "run.validation_steps=2",
            "ckpt.save_ckpt_steps=2",
            "ckpt.keep_last_n=0",
            "run.max_train_minutes=0",
            *extra,
        ]


def make_tiny_setup(root: Path) -> TinySetup:
    make_clip_set(root / "train", 3, seconds=1.4, seed=30)
    make_clip_set(root / "val", 1, seconds=1.4, seed=40)
    lists = {}
    for split in ("train", "val"):
        lists[split] = str(root / f"{split}.txt")
        write_fileslist(lists[split], [root / split])
    torch.manual_seed(0)
    syncnet = StableSyncNet(load_config(SYNCNET_CONFIG).model)
    syncnet_path = root / "syncnet.pt"
    save_checkpoint(syncnet_path, syncnet, 7)
    unet = UNet3DConditionModel.from_config(to_container(load_config(STAGE1).model))
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if name.startswith(("conv_in.", "conv_out.")):
                param.normal_(0.0, 0.05)
    init_path = root / "stage1_init.pt"
    save_checkpoint(init_path, unet, 100)
    return TinySetup(
        lists["train"], lists["val"], root / "cache", write_vae(root / "vae"), write_whisper(root / "whisper"),
        syncnet_path, init_path,
    )


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> TinySetup:
    return make_tiny_setup(tmp_path_factory.mktemp("unet_training"))
