"""The classic SyncNet of Chung & Zisserman (2016), the scorer behind LSE-C / LSE-D.

Two towers map 5 RGB face crops (224 px, BGR 0-255 as the official weights expect) and 13x20
MFCC windows (0.2 s of audio) to 1024-d embeddings whose Euclidean distance is small when the
lips match the speech. Module names are those of the official ``syncnet_v2.model`` state dict
(``netcnnaud.0.weight`` ...), so that file loads strictly and unchanged.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from latentsync.models.checkpoint import load_model_file

EMBED_DIM = 1024  # width of both embeddings
LIP_FRAMES = 5  # video frames per visual window (0.2 s at 25 fps)
MFCC_STEPS = 20  # MFCC steps per audio window (0.2 s at 100 Hz)


def _conv_block(conv: nn.Module, norm: nn.Module) -> list[nn.Module]:
    return [conv, norm, nn.ReLU(inplace=True)]


def _audio_tower() -> nn.Sequential:
    """13 x 20 MFCC window -> 512 x 1 x 1; index positions match the official keys."""
    layers: list[nn.Module] = []
    layers += _conv_block(nn.Conv2d(1, 64, 3, padding=1), nn.BatchNorm2d(64))  # 0-2
    layers += [nn.MaxPool2d(1, 1)]  # 3
    layers += _conv_block(nn.Conv2d(64, 192, 3, padding=1), nn.BatchNorm2d(192))  # 4-6
    layers += [nn.MaxPool2d(3, (1, 2))]  # 7
    layers += _conv_block(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384))  # 8-10
    layers += _conv_block(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256))  # 11-13
    layers += _conv_block(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256))  # 14-16
    layers += [nn.MaxPool2d(3, 2)]  # 17
    layers += _conv_block(nn.Conv2d(256, 512, (5, 4)), nn.BatchNorm2d(512))  # 18-20
    return nn.Sequential(*layers)


def _lip_tower() -> nn.Sequential:
    """3 x 5 x 224 x 224 frames -> 512 x 1 x 1 x 1; index positions match the official keys."""
    layers: list[nn.Module] = []
    layers += _conv_block(nn.Conv3d(3, 96, (5, 7, 7), stride=(1, 2, 2)), nn.BatchNorm3d(96))  # 0-2
    layers += [nn.MaxPool3d((1, 3, 3), (1, 2, 2))]  # 3
    layers += _conv_block(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256))  # 4-6
    layers += [nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))]  # 7
    layers += _conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256))  # 8-10
    layers += _conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256))  # 11-13
    layers += _conv_block(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256))  # 14-16
    layers += [nn.MaxPool3d((1, 3, 3), (1, 2, 2))]  # 17
    layers += _conv_block(nn.Conv3d(256, 512, (1, 6, 6)), nn.BatchNorm3d(512))  # 18-20
    return nn.Sequential(*layers)


def _head(embed_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))


class ClassicSyncNet(nn.Module):
    """Audio and lip towers of SyncNet v2; the state dict order follows the official file."""

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.netcnnaud = _audio_tower()
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = _lip_tower()

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, 1024) audio embeddings."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lipfeat(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 frames -> (B, 512) conv features before the FC head."""
        return self.netcnnlip(frames).flatten(1)

    def forward_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 frames -> (B, 1024) visual embeddings."""
        return self.netfclip(self.forward_lipfeat(frames))

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(frames), self.forward_aud(mfcc)

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "ClassicSyncNet":
        """Load ``syncnet_v2.model`` (a bare state dict) strictly, in eval mode."""
        return load_model_file(cls(), path, device)
