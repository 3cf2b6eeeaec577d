"""Stand-ins for the evaluation model files, in their official formats, for tests and ``tools/gpu_check.py``.

* ``syncnet_v2.model``, ``sfd_face.pth``, ``koniq_pretrained.pkl``: the golden manifests (each
  official file's ordered key list, ``tests/fixtures/golden/eval_models.pt``) filled by the golden
  weight procedure below, so the real loading code and the real-size networks run.
* ``i3d_torchscript.pt``: the field's I3D ships only as TorchScript and cannot be fetched here; a
  network with its call signature (``x, rescale, resize, return_features`` -> (B, 400)) stands in:
  tiny (:class:`TinyI3D`) for tests, or torchvision's S3D (8.3M parameters, 36 GFLOP per 16-frame
  224 px clip, the I3D's order of cost) for throughput checks.
* ``pt_inception-2015-12-05-6726825d.pth``: torch-fidelity's Inception-v3 key list, golden weights.

The golden procedure: tensor i draws from ``torch.Generator().manual_seed(i)``: running_var 0.5 + U[0,1),
running_mean 0.1 N, num_batches_tracked unchanged, >= 2-D N / sqrt(fan_in), 1-D "...weight" 1 + 0.1 N,
other 1-D 0.1 N.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence
from unittest import mock

import torch
from torch import nn

from latentsync.metrics.fid import INCEPTION_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
EVAL_MANIFESTS = PROJECT_ROOT / "tests" / "fixtures" / "golden" / "eval_models.pt"
OFFICIAL_FILES = {"syncnet_v2": "syncnet_v2.model", "s3fd": "sfd_face.pth", "hyperiqa": "koniq_pretrained.pkl"}
I3D_FILE = "i3d_torchscript.pt"


def golden_tensor(index: int, name: str, shape: Sequence[int], dtype: str = "float32") -> torch.Tensor:
    """Tensor ``index`` of a state dict filled by the golden procedure."""
    shape = tuple(shape)
    if name.endswith("num_batches_tracked") or dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    gen = torch.Generator().manual_seed(index)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=gen)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=gen)
    if len(shape) >= 2:
        fan_in = math.prod(shape) / shape[0]
        return torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    if name.endswith("weight"):
        return 1 + 0.1 * torch.randn(shape, generator=gen)
    return 0.1 * torch.randn(shape, generator=gen)


def golden_state_dict(manifest: Iterable[Sequence]) -> dict[str, torch.Tensor]:
    """A state dict in manifest order ``[key, shape, dtype]`` filled by the golden procedure."""
    return {key: golden_tensor(i, key, shape, *rest) for i, (key, shape, *rest) in enumerate(manifest)}


def write_official_file(path: str | os.PathLike, manifest_name: str) -> None:
    """Write ``path`` as the official model file of ``manifest_name`` (a bare state dict) with golden weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifests = torch.load(EVAL_MANIFESTS, map_location="cpu", weights_only=True)
    torch.save(golden_state_dict(manifests[manifest_name]["manifest"]), path)


class TinyI3D(nn.Module):
    """(B, 3, T, H, W) -> (B, 400): pooled 3-D convolution features, deterministic weights."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.conv = nn.Conv3d(3, 16, (3, 7, 7), stride=(1, 4, 4))
        self.head = nn.Linear(16 * 4, 400)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x * 2 - 1
        h = torch.relu(self.conv(x))
        pooled = torch.nn.functional.adaptive_avg_pool3d(h, (1, 2, 2)).flatten(1)
        out = self.head(pooled)
        return out if return_features else out.softmax(-1)


class S3DAsI3D(nn.Module):
    """torchvision's S3D (random weights) behind the I3D TorchScript's call signature."""

    def __init__(self):
        super().__init__()
        import torchvision

        torch.manual_seed(0)
        self.net = torchvision.models.video.s3d(weights=None)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x * 2 - 1
        out = self.net(x)
        return out if return_features else out.softmax(-1)


def write_tiny_i3d(path: Path, real_size: bool = False) -> Path:
    """The I3D stand-in as TorchScript at ``path``: :class:`TinyI3D`, or :class:`S3DAsI3D` if ``real_size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = S3DAsI3D() if real_size else TinyI3D()
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


def write_inception(path: Path) -> Path:
    """torch-fidelity's Inception-v3 state dict (its key order) with golden-procedure weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch("torch.load", return_value={}), mock.patch.object(nn.Module, "load_state_dict"):
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")
    manifest = [[key, list(value.shape), str(value.dtype).replace("torch.", "")] for key, value in model.state_dict().items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden_state_dict(manifest), path)
    return path


WHOLE_FRAME_BOX = 0.8  # side of the stand-in S3FD's one face box, relative to a frame of 256 px or less


def whole_frame_s3fd() -> nn.Module:
    """An S3FD whose one confident box is the middle of the frame, whatever it shows: a random detector finds
    no face, so the evaluation's sync metric would have nothing to score.

    Every head but the one of the 256 px anchors (one anchor, at the centre of a 64 px input: the metric's
    0.25 scale of a 256 px frame) says background; that anchor says face, its box shrunk to
    ``WHOLE_FRAME_BOX`` of the input by the regression bias.
    """
    from latentsync.models.s3fd import MIN_SIZES, VARIANCE, S3FD

    model = S3FD()
    layer = MIN_SIZES.index(256)
    with torch.no_grad():
        for index, (loc, conf) in enumerate(zip(model.loc, model.conf)):
            for head in (loc, conf):
                head.weight.zero_()
                head.bias.zero_()
            face = index == layer
            conf.bias[:-1] = -10.0 if face else 10.0  # background logit(s), then the face logit
            conf.bias[-1] = 10.0 if face else -10.0
            if face:  # size = anchor * exp(bias * VARIANCE[1]); the anchor is 256 / 64 = 4 inputs wide
                loc.bias[2:] = math.log(WHOLE_FRAME_BOX / 4) / VARIANCE[1]
    return model


def write_auxiliary(
    folder: Path, with_inception: bool = True, real_size_i3d: bool = False, face_everywhere: bool = False
) -> Path:
    """Every evaluation model file under ``folder`` (the checkpoints/auxiliary layout); ``face_everywhere``
    writes :func:`whole_frame_s3fd` as the face detector, so the sync metric has a face to score."""
    folder = Path(folder)
    for name, filename in OFFICIAL_FILES.items():
        write_official_file(folder / filename, name)
    if face_everywhere:
        torch.save(whole_frame_s3fd().state_dict(), folder / OFFICIAL_FILES["s3fd"])
    write_tiny_i3d(folder / I3D_FILE, real_size=real_size_i3d)
    if with_inception:
        write_inception(folder / INCEPTION_FILE)
    return folder
