"""FID features: torch-fidelity's Inception-v3 (the TensorFlow FID network), loaded from a local file.

torch-fidelity downloads its weights when given no path; here the path is required, so a missing
``pt_inception-2015-12-05-6726825d.pth`` is an error with the command that fetches it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from latentsync.errors import CheckpointError
from latentsync.metrics.model_files import require_model_file
from latentsync.models.checkpoint import read_checkpoint

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_DIM = 2048  # pool3 features


def load_inception(path: str | os.PathLike, device: torch.device) -> torch.nn.Module:
    """torch-fidelity's FeatureExtractorInceptionV3 with the 2048-d pool features, from ``path``."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = require_model_file(path)
    read_checkpoint(path)  # a plain tensor dict (safe loading) before torch-fidelity reads it again
    try:
        model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    except RuntimeError as exc:
        raise CheckpointError(f"{path} does not match the FID Inception-v3: {str(exc).splitlines()[0]} "
                              f"{' '.join(str(exc).split()[-12:])}") from exc
    return model.to(device)


@torch.no_grad()
def inception_features(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """(N, 2048) float64 features of (N, H, W, 3) uint8 RGB images (resized to 299 inside)."""
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(device)
    return model(x)[0].double().cpu().numpy()
