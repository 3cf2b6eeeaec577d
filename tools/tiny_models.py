"""Tiny random-weight models written in the official on-disk formats, for CPU tests, benchmarks and the
README's walked example.

Each builder writes what :func:`latentsync.pipelines.loading.load_pipeline` reads in production,
so tests and tools exercise the real loading code: a UNet ``{"state_dict", "global_step"}``
checkpoint plus its YAML config, an openai-whisper checkpoint, and a diffusers ``AutoencoderKL``
folder (``save_pretrained``); :func:`tools.eval_models.write_auxiliary` adds the evaluation's model files
(``checkpoints/auxiliary`` layout). The tests' session fixture lives in ``tests/tiny_models.py``.

    python -m tools.tiny_models --out debug/example/models    # unet/ whisper/tiny.pt vae/ auxiliary/
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tools.eval_models import write_auxiliary

WHISPER_WIDTH = 64  # n_audio_state of the tiny whisper (and of the tests' golden random checkpoint)
# A whisper "tiny" with a 64-wide, 4-block encoder and a vestigial decoder (never used here).
TINY_WHISPER_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": WHISPER_WIDTH, "n_audio_head": 4, "n_audio_layer": 4,
    "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 4, "n_text_head": 1, "n_text_layer": 1,
}
# openai-whisper's "tiny" (what LatentSync's stage2 configs read: 384-wide features), for real-size checks.
WHISPER_TINY_DIMS = {
    "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4,
    "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
}
SD_VAE_WIDTHS = (128, 256, 512, 512)  # block_out_channels of Stable Diffusion's VAE (sd-vae-ft-mse)
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


def write_whisper(
    folder: Path, source: Path | None = None, seed: int = 0, transparent: bool = False, dims: dict | None = None
) -> Path:
    """An openai-whisper checkpoint (dims + model_state_dict, fp16) at ``folder/tiny.pt``: a copy of
    ``source`` if given, else random weights of ``dims`` (default: 64 wide; :data:`WHISPER_TINY_DIMS`
    is the real "tiny").

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

    dims = dict(dims or TINY_WHISPER_DIMS)
    torch.manual_seed(seed)
    model = Whisper(ModelDimensions(**dims))
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
    torch.save({"dims": dims, "model_state_dict": state}, target)
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


def write_sd_vae(folder: Path, seed: int = 0) -> Path:
    """A diffusers ``AutoencoderKL`` folder of Stable Diffusion's size (84M parameters), random weights."""
    from tools.train_tiny_vae import build_vae

    torch.manual_seed(seed)
    build_vae(512, SD_VAE_WIDTHS, layers_per_block=2, groups=32).save_pretrained(folder)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write tiny random-weight models in the official formats.")
    parser.add_argument("--out", required=True, type=Path, help="folder for unet/, whisper/tiny.pt, vae/ and auxiliary/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The transparent Whisper: features that follow the local speech, as a trained one's do (see write_whisper).
    models = write_all(args.out, args.seed, transparent_whisper=True)
    write_auxiliary(args.out / "auxiliary", face_everywhere=True)
    print(f"wrote {models.unet_ckpt}, {models.whisper}, {models.vae} and {args.out / 'auxiliary'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
