"""Stand-ins for the evaluation model files, in their official formats, and small media for tests.

* ``i3d_torchscript.pt``: a tiny TorchScript video network with the I3D's call signature
  (``x, rescale, resize, return_features`` -> (B, 400)); the real file cannot be fetched here.
* ``pt_inception-2015-12-05-6726825d.pth``: torch-fidelity's Inception-v3 key list filled by the
  golden weight procedure.
* ``syncnet_v2.model``, ``sfd_face.pth``, ``koniq_pretrained.pkl``: the golden manifests filled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.golden_weights import golden_state_dict, write_official_file
from tools.tiny_models import empty_inception, write_tiny_i3d  # noqa: F401  (write_tiny_i3d: for the metric tests)

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
