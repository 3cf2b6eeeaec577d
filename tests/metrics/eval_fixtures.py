"""Stand-ins for the evaluation model files, in their official formats, and small media for tests.

* ``i3d_torchscript.pt``: a tiny TorchScript video network with the I3D's call signature
  (``x, rescale, resize, return_features`` -> (B, 400)); the real file cannot be fetched here.
* ``pt_inception-2015-12-05-6726825d.pth``: torch-fidelity's Inception-v3 key list filled by the
  golden weight procedure.
* ``syncnet_v2.model``, ``sfd_face.pth``, ``koniq_pretrained.pkl``: the golden manifests filled.

And videos whose frames say their own index (to check which frames a metric takes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentsync.media.writer import VideoWriter
from tests.golden_weights import golden_state_dict, write_official_file
from tools.tiny_models import empty_inception, write_tiny_i3d  # noqa: F401  (write_tiny_i3d: for the metric tests)

INDEX_BITS = 8  # vertical stripes of an index-coded frame

OFFICIAL_FILES = {"syncnet_v2": "syncnet_v2.model", "s3fd": "sfd_face.pth", "hyperiqa": "koniq_pretrained.pkl"}
INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


def write_inception(path: Path) -> Path:
    """torch-fidelity's Inception-v3 state dict (its key order) with golden-procedure weights."""
    model = empty_inception()
    manifest = [[key, list(value.shape), str(value.dtype).replace("torch.", "")] for key, value in model.state_dict().items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden_state_dict(manifest), path)
    return path


def write_auxiliary(folder: Path, with_inception: bool = True) -> Path:
    """Every evaluation model file under ``folder`` (the checkpoints/auxiliary layout)."""
    for name, filename in OFFICIAL_FILES.items():
        write_official_file(folder / filename, name)
    write_tiny_i3d(folder / "i3d_torchscript.pt")
    if with_inception:
        write_inception(folder / INCEPTION_FILE)
    return folder


def write_index_coded_video(path: Path, count: int, fps: float, size: int = 256) -> Path:
    """``count`` frames at ``fps``; frame k is k in binary: stripe b (of 8, left to right) white when bit b is set."""
    stripe = size // INDEX_BITS
    with VideoWriter(path, fps, size, size) as writer:
        for k in range(count):
            frame = np.zeros((size, size, 3), np.uint8)
            for bit in range(INDEX_BITS):
                if k >> bit & 1:
                    frame[:, bit * stripe : (bit + 1) * stripe] = 255
            writer.write(frame)
    return path


def coded_indices(frames: np.ndarray) -> list[int]:
    """The index each (H, W, 3) frame of an index-coded video shows (read at the stripes' centres, any size)."""
    width = frames.shape[2]
    centres = [(2 * bit + 1) * width // (2 * INDEX_BITS) for bit in range(INDEX_BITS)]
    return [sum(1 << bit for bit, x in enumerate(centres) if frame[:, x].mean() > 127) for frame in frames]
