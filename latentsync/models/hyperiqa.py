"""hyperIQA (Su et al. 2020), the blind image-quality model of the data filter and the evaluation.

A ResNet-50 backbone with local-distortion-aware taps (``res.``) feeds a hyper network that
predicts, per image, the weights of a small target MLP; the MLP maps the multi-scale content
vector to a quality score (KonIQ-10k MOS scale, about 0-100 for the official weights).
Module names match ``koniq_pretrained.pkl`` so it loads strictly and unchanged. The backbone is
torchvision's ResNet-50 built without weights: nothing is downloaded, ever.
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

from latentsync.models.checkpoint import load_model_file

# The official configuration: HyperNet(16, 112, 224, 112, 56, 28, 14, 7).
LDA_OUT = 16  # width of each of the first three local-distortion vectors
HYPER_IN = 112  # channels of the hyper network's input features
TARGET_IN = 224  # length of the target network's input vector
TARGET_FC = (112, 56, 28, 14)  # widths of the target network's hidden layers
FEATURE_SIZE = 7  # side of the backbone's last feature map for 224 px input


class HyperIQABackbone(ResNet):
    """ResNet-50 (no classifier) that also returns the concatenated local-distortion vector."""

    def __init__(self, lda_out: int = LDA_OUT, target_in: int = TARGET_IN):
        super().__init__(Bottleneck, [3, 4, 6, 3])
        del self.fc, self.avgpool
        self.lda1_pool = nn.Sequential(nn.Conv2d(256, 16, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda1_fc = nn.Linear(16 * 64, lda_out)
        self.lda2_pool = nn.Sequential(nn.Conv2d(512, 32, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda2_fc = nn.Linear(32 * 16, lda_out)
        self.lda3_pool = nn.Sequential(nn.Conv2d(1024, 64, 1, bias=False), nn.AvgPool2d(7, 7))
        self.lda3_fc = nn.Linear(64 * 4, lda_out)
        self.lda4_pool = nn.AvgPool2d(7, 7)
        self.lda4_fc = nn.Linear(2048, target_in - lda_out * 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 224, 224) -> (last feature map (B, 2048, 7, 7), content vector (B, target_in))."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        taps = [self.lda1_fc(self.lda1_pool(x).flatten(1))]
        x = self.layer2(x)
        taps.append(self.lda2_fc(self.lda2_pool(x).flatten(1)))
        x = self.layer3(x)
        taps.append(self.lda3_fc(self.lda3_pool(x).flatten(1)))
        x = self.layer4(x)
        taps.append(self.lda4_fc(self.lda4_pool(x).flatten(1)))
        return x, torch.cat(taps, 1)


class HyperNet(nn.Module):
    """Predicts the target network's weights (``fcNw``) and biases (``fcNb``) for each image."""

    def __init__(self, hyper_in: int = HYPER_IN, target_in: int = TARGET_IN, target_fc: tuple[int, ...] = TARGET_FC,
                 feature_size: int = FEATURE_SIZE, lda_out: int = LDA_OUT):
        super().__init__()
        self.hyper_in, self.target_in, self.feature_size = hyper_in, target_in, feature_size
        self.widths = (target_in, *target_fc)
        self.res = HyperIQABackbone(lda_out, target_in)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = nn.Sequential(
            nn.Conv2d(2048, 1024, 1), nn.ReLU(inplace=True),
            nn.Conv2d(1024, 512, 1), nn.ReLU(inplace=True),
            nn.Conv2d(512, hyper_in, 1), nn.ReLU(inplace=True),
        )
        area = feature_size**2
        for n, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:]), start=1):
            setattr(self, f"fc{n}w_conv", nn.Conv2d(hyper_in, fan_in * fan_out // area, 3, padding=1))
            setattr(self, f"fc{n}b_fc", nn.Linear(hyper_in, fan_out))
        self.fc5w_fc = nn.Linear(hyper_in, target_fc[-1])
        self.fc5b_fc = nn.Linear(hyper_in, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """ImageNet-normalised (B, 3, 224, 224) -> ``target_in_vec`` (B, 224, 1, 1) and per-image layer weights."""
        features, vector = self.res(images)
        hyper = self.conv1(features).reshape(-1, self.hyper_in, self.feature_size, self.feature_size)
        pooled = self.pool(hyper).flatten(1)
        out = {"target_in_vec": vector.reshape(-1, self.target_in, 1, 1)}
        for n, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:]), start=1):
            out[f"target_fc{n}w"] = getattr(self, f"fc{n}w_conv")(hyper).reshape(-1, fan_out, fan_in, 1, 1)
            out[f"target_fc{n}b"] = getattr(self, f"fc{n}b_fc")(pooled).reshape(-1, fan_out)
        out["target_fc5w"] = self.fc5w_fc(pooled).reshape(-1, 1, self.widths[-1], 1, 1)
        out["target_fc5b"] = self.fc5b_fc(pooled).reshape(-1, 1)
        return out

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "HyperNet":
        """Load ``koniq_pretrained.pkl`` (a bare state dict) strictly, in eval mode."""
        return load_model_file(cls(), path, device)


def _per_image_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Each image b through its own layer: x (B, in), weight (B, out, in, 1, 1), bias (B, out) -> (B, out)."""
    return torch.einsum("boi,bi->bo", weight.flatten(2), x) + bias


def target_network(params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run the per-image target MLP on ``target_in_vec``: (B,) quality scores."""
    x = params["target_in_vec"].flatten(1)
    for n in range(1, 5):
        x = torch.sigmoid(_per_image_linear(x, params[f"target_fc{n}w"], params[f"target_fc{n}b"]))
    return _per_image_linear(x, params["target_fc5w"], params["target_fc5b"])[:, 0]


def quality_scores(model: HyperNet, images: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (B, 3, 224, 224) -> (B,) hyperIQA scores."""
    return target_network(model(images))

