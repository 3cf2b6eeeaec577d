"""Tiny random-weight models written in the official on-disk formats, for CPU tests, benchmarks and the
README's walked example.

Each builder writes what :func:`latentsync.pipelines.loading.load_pipeline` reads in production,
so tests and tools exercise the real loading code: a UNet ``{"state_dict", "global_step"}``
checkpoint plus its YAML config, an openai-whisper checkpoint, and a diffusers ``AutoencoderKL``
folder (``save_pretrained``); :func:`write_auxiliary` adds the evaluation's model files
(``checkpoints/auxiliary`` layout). The tests' session fixture lives in ``tests/tiny_models.py``.

    python -m tools.tiny_models --out debug/example/models    # unet/ whisper/tiny.pt vae/ auxiliary/
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
import yaml
from torch import nn

WHISPER_WIDTH = 64  # n_audio_state of the tiny whisper (and of the tests' golden random checkpoint)
# A whisper "tiny" with a 64-wide, 4-block encoder and a vestigial decoder (never used here).
TINY_WHISPER_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": WHISPER_WIDTH, "n_audio_head": 4, "n_audio_layer": 4,
    "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 4, "n_text_head": 1, "n_text_layer": 1,
}
TRANSPARENT_WHISPER_GAIN = 10.0  # random conv features are ~0.05 in size; real Whisper's are O(1)
TINY_RESOLUTION = 64  # face crop side in pixels; latents are 8x8 with the VAE's factor 8


def tiny_unet_config(resolution: int = TINY_RESOLUTION, num_frames: int = 16) -> dict:
    """A stage2-like config: motion modules on, audio cross-attention of the whisper width, tiny channels.

    Motion-module GroupNorms use 32 groups, so every level keeps 32 channels.
    """
    model = {
        "act_fn": "silu",
        "add_audio_layer": True,
        "attention_head_dim": 8,
        "block_out_channels": [32, 32, 32, 32],
        "center_input_sample": False,
        "cross_attention_dim": WHISPER_WIDTH,
        "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
        "mid_block_type": "UNetMidBlock3DCrossAttn",
        "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 13,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "norm_num_groups": 8,
        "out_channels": 4,
        "sample_size": resolution // 8,
        "resnet_time_scale_shift": "default",
        "use_motion_module": True,
        "motion_module_resolutions": [2, 8],
        "motion_module_mid_block": False,
        "motion_module_decoder_only": False,
        "motion_module_type": "Vanilla",
        "motion_module_kwargs": {
            "num_attention_heads": 8,
            "num_transformer_block": 1,
            "attention_block_types": ["Temporal_Self", "Temporal_Self"],
            "temporal_position_encoding": True,
            "temporal_position_encoding_max_len": 24,
            "temporal_attention_dim_div": 1,
            # Random (not zero) output projections, so the temporal path really runs in tests.
            "zero_initialize": False,
        },
    }
    data = {
        "num_frames": num_frames,
        "resolution": resolution,
        "mask_image_path": "latentsync/face/mask.png",
        "audio_sample_rate": 16000,
        "video_fps": 25,
        "audio_feat_length": [2, 2],
    }
    return {"data": data, "model": model}


def write_unet(folder: Path, seed: int = 0, resolution: int = TINY_RESOLUTION) -> tuple[Path, Path]:
    """Write ``unet.yaml`` and ``unet.pt`` (``{"state_dict", "global_step"}``); return (config, checkpoint)."""
    from latentsync.models.unet import UNet3DConditionModel

    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_unet_config(resolution)
    config_path = folder / "unet.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    torch.manual_seed(seed)
    unet = UNet3DConditionModel.from_config(config["model"])
    # A fresh model zero-initialises conv_in/conv_out (it would ignore its input and predict zero
    # noise); random values there make the output depend on faces, audio and timestep.
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if name.startswith(("conv_in.", "conv_out.")) and not param.abs().any():
                param.normal_(0.0, 0.05)
    ckpt_path = folder / "unet.pt"
    torch.save({"state_dict": unet.state_dict(), "global_step": 1}, ckpt_path)
    return config_path, ckpt_path


def write_whisper(folder: Path, source: Path | None = None, seed: int = 0, transparent: bool = False) -> Path:
    """An openai-whisper checkpoint (dims + model_state_dict, fp16) of width 64 at ``folder/tiny.pt``:
    a copy of ``source`` if given, else random weights.

    ``transparent`` stands in for a trained Whisper where learning is measured (tools/prove_unet.sh):
    a random encoder's features vary over time mostly through its sinusoidal positional embedding,
    the same for every clip, and its random attention smears the speech over 30 s. Here the
    positional embedding is zero and every block an identity (zero output projections), so each
    layer's features are the convolutional front end's view of the local mel frames, scaled to
    about unit size: a linear probe reads the mouth opening of an unseen clip from them (R^2 ~0.9).
    """
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "tiny.pt"
    if source is not None:
        shutil.copyfile(source, target)
        return target
    from whisper.model import ModelDimensions, Whisper

    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**TINY_WHISPER_DIMS))
    if transparent:
        encoder = model.encoder
        with torch.no_grad():
            encoder.positional_embedding.zero_()
            for block in encoder.blocks:
                for layer in (block.attn.out, block.mlp[2]):
                    layer.weight.zero_()
                    layer.bias.zero_()
            encoder.conv2.weight.mul_(TRANSPARENT_WHISPER_GAIN)
            encoder.conv2.bias.mul_(TRANSPARENT_WHISPER_GAIN)
    state = model.half().state_dict()
    torch.save({"dims": dict(TINY_WHISPER_DIMS), "model_state_dict": state}, target)
    return target


def write_vae(folder: Path, seed: int = 0) -> Path:
    """A diffusers ``AutoencoderKL`` folder with four levels (scale factor 8, like SD) and 4 latent channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=TINY_RESOLUTION,
        scaling_factor=0.18215,
    )
    vae.save_pretrained(folder)
    return folder


@dataclass(frozen=True)
class TinyModels:
    """Paths of a complete tiny model set, laid out like ``checkpoints/``."""

    unet_config: Path
    unet_ckpt: Path
    whisper: Path
    vae: Path

    def flags(self) -> list[str]:
        """The command-line flags (scripts/inference.py, gradio_app.py) that point at these files."""
        return [
            "--unet_config_path", str(self.unet_config),
            "--inference_ckpt_path", str(self.unet_ckpt),
            "--whisper_path", str(self.whisper),
            "--vae_path", str(self.vae),
        ]


def write_all(
    folder: Path, seed: int = 0, whisper_source: Path | None = None, transparent_whisper: bool = False
) -> TinyModels:
    """A complete tiny model set under ``folder``; ``whisper_source`` is copied as the Whisper checkpoint."""
    unet_config, unet_ckpt = write_unet(folder / "unet", seed)
    whisper_path = write_whisper(folder / "whisper", whisper_source, seed, transparent=transparent_whisper)
    return TinyModels(unet_config, unet_ckpt, whisper_path, write_vae(folder / "vae", seed))


# --------------------------------------------------------------------------- evaluation model files


class TinyI3D(nn.Module):
    """(B, 3, T, H, W) -> (B, 400): pooled 3-D convolution features with the I3D TorchScript's call signature."""

    def __init__(self, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
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


def write_tiny_i3d(path: Path) -> Path:
    """``i3d_torchscript.pt``: a TinyI3D as TorchScript (the real file is a 3-D Inception of 400 classes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, but it is the real file's format
        torch.jit.save(torch.jit.script(TinyI3D().eval()), str(path))
    return path


def empty_inception() -> nn.Module:
    """torch-fidelity's FID Inception-v3 with fresh weights (its constructor insists on reading a weights file)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with mock.patch("torch.load", return_value={}), mock.patch.object(nn.Module, "load_state_dict"):
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="unused")


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


def write_auxiliary(folder: Path, seed: int = 0) -> Path:
    """The evaluation's model files under ``folder`` (``checkpoints/auxiliary`` names and formats): random
    weights, except an S3FD that always finds one face (:func:`whole_frame_s3fd`)."""
    from latentsync.metrics.fid import INCEPTION_FILE
    from latentsync.models.hyperiqa import HyperNet
    from latentsync.models.syncnet_classic import ClassicSyncNet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for model, name in ((ClassicSyncNet(), "syncnet_v2.model"), (whole_frame_s3fd(), "sfd_face.pth"),
                        (HyperNet(), "koniq_pretrained.pkl"), (empty_inception(), INCEPTION_FILE)):
        torch.save(model.state_dict(), folder / name)
    write_tiny_i3d(folder / "i3d_torchscript.pt")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random-weight models in the official formats.")
    parser.add_argument("--out", required=True, type=Path, help="folder for unet/, whisper/tiny.pt, vae/ and auxiliary/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The transparent Whisper: features that follow the local speech, as a trained one's do (see write_whisper).
    models = write_all(args.out, args.seed, transparent_whisper=True)
    write_auxiliary(args.out / "auxiliary", args.seed)
    print(f"wrote {models.unet_ckpt}, {models.whisper}, {models.vae} and {args.out / 'auxiliary'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
