"""S3FD face detector (Zhang et al. 2017) as the SyncNet evaluation uses it, file ``sfd_face.pth``.

``face-alignment`` ships an S3FD too, but its module names (``conv1_1``, ``fc6`` ...) do not
match the ``vgg.N`` / ``L2Norm3_3`` / ``extras`` / ``loc`` / ``conf`` layout of ``sfd_face.pth``,
so the network is defined here with the official names and loads that file strictly.
:meth:`S3FD.forward` returns the detection table ``(B, 2, top_k, 5)`` (score, x1, y1, x2, y2
in [0, 1]) sorted by score; :class:`S3FDDetector` turns it into pixel boxes.
"""

from __future__ import annotations

import os
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import nms

from latentsync.models.checkpoint import load_model_file

BGR_MEAN = (104.0, 117.0, 123.0)  # subtracted from B, G, R before the network
MIN_SIZES = (16, 32, 64, 128, 256, 512)  # anchor side (px) per source layer
STEPS = (4, 8, 16, 32, 64, 128)  # stride (px) per source layer
VARIANCE = (0.1, 0.2)  # box-regression scales of centre and size
CONF_THRESH = 0.05  # candidate boxes below this face score are dropped before NMS
NMS_THRESH = 0.3  # IoU above which the network's NMS drops a box
NMS_TOP_K = 5000  # candidates considered by the network's NMS
TOP_K = 750  # rows of the detection table
MERGE_NMS_THRESH = 0.1  # IoU of the detector's final NMS across scales


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learned per-channel scale (``weight``)."""

    def __init__(self, channels: int, scale: float):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10
        return x / norm * self.weight.view(1, -1, 1, 1)


def _vgg() -> nn.ModuleList:
    """VGG-16 trunk plus fc6/fc7 as convolutions; ReLU and pooling keep their official indices."""
    layers: list[nn.Module] = []
    channels = 3
    for width, convs, ceil in ((64, 2, False), (128, 2, False), (256, 3, True), (512, 3, False), (512, 3, False)):
        for _ in range(convs):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil))
    layers += [nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


# vgg indices after which a source feature map is taken (conv3_3, conv4_3, conv5_3 relus)
_SOURCE_ENDS = (16, 23, 30)


def prior_boxes(image_size: tuple[int, int], feature_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(P, 4) anchors (cx, cy, w, h) relative to the image, row-major per source layer."""
    height, width = image_size
    rows = []
    for (fh, fw), step, size in zip(feature_sizes, STEPS, MIN_SIZES):
        ys, xs = torch.meshgrid(torch.arange(fh, dtype=torch.float64), torch.arange(fw, dtype=torch.float64), indexing="ij")
        cx = (xs.flatten() + 0.5) * step / width
        cy = (ys.flatten() + 0.5) * step / height
        rows.append(torch.stack([cx, cy, torch.full_like(cx, size / width), torch.full_like(cy, size / height)], 1))
    return torch.cat(rows).float()


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Regression offsets (P, 4) on anchors -> corner boxes (x1, y1, x2, y2)."""
    centre = priors[:, :2] + loc[:, :2] * VARIANCE[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * VARIANCE[1])
    return torch.cat([centre - size / 2, centre + size / 2], 1)


class S3FD(nn.Module):
    """The S3FD network with its detection head; names match ``sfd_face.pth``."""

    def __init__(self):
        super().__init__()
        self.vgg = _vgg()
        self.L2Norm3_3 = L2Norm(256, 10)
        self.L2Norm4_3 = L2Norm(512, 8)
        self.L2Norm5_3 = L2Norm(512, 5)
        self.extras = nn.ModuleList(
            [nn.Conv2d(1024, 256, 1), nn.Conv2d(256, 512, 3, 2, 1), nn.Conv2d(512, 128, 1), nn.Conv2d(128, 256, 3, 2, 1)]
        )
        source_channels = (256, 512, 512, 1024, 512, 256)
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, padding=1) for c in source_channels])
        # The first layer predicts 3 background scores (max-out) and 1 face score.
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, padding=1) for i, c in enumerate(source_channels)])

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """(B, 3, H, W) mean-subtracted image -> loc (B, P, 4), face-vs-background logits (B, P, 2), map sizes."""
        sources = []
        norms = (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)
        start = 0
        for end, norm in zip(_SOURCE_ENDS, norms):
            for layer in self.vgg[start:end]:
                x = layer(x)
            sources.append(norm(x))
            start = end
        for layer in self.vgg[start:]:
            x = layer(x)
        sources.append(x)
        for index, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if index % 2 == 1:
                sources.append(x)

        locs, confs = [], []
        for index, source in enumerate(sources):
            conf = self.conf[index](source)
            if index == 0:
                conf = torch.cat([conf[:, :3].amax(dim=1, keepdim=True), conf[:, 3:]], 1)
            locs.append(self.loc[index](source).permute(0, 2, 3, 1).flatten(1))
            confs.append(conf.permute(0, 2, 3, 1).flatten(1))
        sizes = [tuple(source.shape[2:]) for source in sources]
        batch = x.shape[0]
        return torch.cat(locs, 1).view(batch, -1, 4), torch.cat(confs, 1).view(batch, -1, 2), sizes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> detection table (B, 2, TOP_K, 5); class 0 (background) rows stay zero."""
        loc, logits, sizes = self.heads(x)
        priors = prior_boxes(tuple(x.shape[2:]), sizes).to(loc.device, loc.dtype)
        scores = logits.softmax(-1)[..., 1]
        table = torch.zeros(x.shape[0], 2, TOP_K, 5, dtype=loc.dtype, device=loc.device)
        for b in range(x.shape[0]):
            keep = scores[b] > CONF_THRESH
            boxes, face_scores = decode_boxes(loc[b][keep], priors[keep]), scores[b][keep]
            top = face_scores.argsort(descending=True)[:NMS_TOP_K]
            boxes, face_scores = boxes[top], face_scores[top]
            kept = nms(boxes, face_scores, NMS_THRESH)[:TOP_K]
            table[b, 1, : len(kept)] = torch.cat([face_scores[kept, None], boxes[kept]], 1)
        return table

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "S3FD":
        """Load ``sfd_face.pth`` (a bare state dict) strictly, in eval mode."""
        return load_model_file(cls(), path, device)


def nms_indices(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS on pixel boxes (N, 4): indices kept, best score first."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    kept = nms(torch.as_tensor(boxes, dtype=torch.float64), torch.as_tensor(scores, dtype=torch.float64), threshold)
    return kept.numpy()


class S3FDDetector:
    """Pixel face boxes from RGB frames with the reference's pre-processing (resize by ``scale``, BGR mean)."""

    def __init__(self, model: S3FD, device: torch.device):
        self.model = model
        self.device = device

    @torch.no_grad()
    def detect(self, frame: np.ndarray, conf_threshold: float = 0.9, scale: float = 0.25) -> np.ndarray:
        """(N, 5) rows of x1, y1, x2, y2, score in pixels of ``frame`` (H, W, 3 uint8 RGB)."""
        height, width = frame.shape[:2]
        small = cv2.resize(frame, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        # The network sees RGB planes minus their channel means (the reference flips to BGR and back).
        x = small.astype(np.float32).transpose(2, 0, 1) - np.array(BGR_MEAN[::-1], np.float32)[:, None, None]
        table = self.model(torch.from_numpy(x)[None].to(self.device))[0, 1].float().cpu().numpy()
        rows = table[table[:, 0] > conf_threshold]
        boxes = rows[:, 1:] * np.array([width, height, width, height], np.float32)
        found = np.concatenate([boxes, rows[:, :1]], 1).astype(np.float64)
        return found[nms_indices(found[:, :4], found[:, 4], MERGE_NMS_THRESH)]
