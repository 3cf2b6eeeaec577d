"""Inputs of ``tools/gpu_check.py``: random-weight models in the official file formats, a talking head, data.

Real sizes (default): the stage2/stage2_512 UNet (their model sections are the same, so one
``{"state_dict", "global_step"}`` file serves both), openai-whisper "tiny" dimensions, Stable
Diffusion's VAE as a diffusers folder, the VGG16 of LPIPS (torchvision's file), VideoMAE-v2 ViT-g
for TREPA (``{"module": ...}`` like the official ``.pth``), the stage-2 StableSyncNet, the evaluation
models (``tools/eval_models.py``), a 1080x1920 25 fps talking head (``tools/synthetic_media.py``) and
a few 256x256 training clips. ``tiny``: the CPU test models and clips of a few frames.

Each item is made once per work folder (written under a temporary name, then renamed), so a
second run in the same ``--workdir`` reuses them; :func:`prepare` returns their paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from latentsync.utils.files import atomic_output
from tools.synthetic_media import SAMPLE_RATE, burst_audio, speak, write_talking_video, write_wav

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A talking head reads the news on a quiet evening.",
    "Seven silver spoons sat beside the purple bowl.",
)
STAGE2_CONFIG = "configs/unet/stage2.yaml"
SYNCNET_CONFIG = "configs/syncnet/syncnet_16_pixel_attn.yaml"
TINY_STAGE2_CONFIG = "configs/unet/stage2_tiny_cpu.yaml"
VIDEO_SECONDS, TINY_VIDEO_SECONDS = 10.0, 1.2
VIDEO_SIZE, TINY_VIDEO_SIZE = (1080, 1920), (256, 256)
SHORT_SECONDS, TINY_SHORT_SECONDS = 2.0, 0.8  # the determinism check's audio
COMPARE_SECONDS = 4.0  # the upstream comparison's audio (the tiny run compares the whole clip)
TRAIN_CLIPS, TRAIN_SECONDS = 2, 2.4  # two clips of 60 frames: a 16-frame window and its reference fit


def make_speech(path: str | os.PathLike, seconds: float, source: str | os.PathLike | None = None) -> np.ndarray:
    """``seconds`` of speech at 16 kHz: ``source`` looped, else espeak-ng sentences, else noise bursts.

    The GPU machine has no espeak-ng: ``tools/gpu_check_bundle.py`` carries a wav made here.
    """
    if source is not None:
        from latentsync.media.audio import load_audio

        audio = load_audio(source, SAMPLE_RATE)
    elif shutil.which("espeak-ng"):
        parts = []
        for index, sentence in enumerate(SENTENCES):
            parts.append(speak(sentence, Path(path).with_name(f".sentence{index}.wav")))
            Path(path).with_name(f".sentence{index}.wav").unlink()
        audio = np.concatenate(parts)
    else:
        audio = burst_audio(seconds, seed=0)
    audio = np.resize(audio, int(round(seconds * SAMPLE_RATE))).astype(np.float32)
    write_wav(path, audio)
    return audio


def _once(path: Path, make: Callable[[Path], object]) -> str:
    """Make ``path`` (a file or a folder) unless it exists, under a temporary name renamed when complete."""
    if path.exists():
        return os.fspath(path)
    partial = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")  # the suffix names the format
    shutil.rmtree(partial, ignore_errors=True)
    make(partial)
    os.replace(partial, path)
    return os.fspath(path)


def _real_unet(target: Path, device: torch.device) -> None:
    from tools.benchmark_unet import random_weights_file

    target.mkdir()
    os.replace(random_weights_file(STAGE2_CONFIG, os.fspath(target), seed=0, device=device), target / "unet.pt")


def _videomae_file(target: Path, device: torch.device) -> None:
    """Random ViT-g weights in the official layout (``{"module": state_dict}``), drawn on ``device``."""
    from latentsync.trepa.videomae import VideoMAEDimensions, VideoMAEv2

    with torch.device("meta"):
        model = VideoMAEv2(VideoMAEDimensions())
    model.to_empty(device=device)
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=generator, device=device) / param[0].numel() ** 0.5)
            else:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    with atomic_output(target) as tmp:
        torch.save({"module": state}, tmp)


def _vgg_file(target: Path) -> None:
    """torchvision's VGG16 state dict (``vgg16-397923af.pth``'s layout) with its random initialisation."""
    import torchvision

    torch.manual_seed(0)
    with atomic_output(target) as tmp:
        torch.save(torchvision.models.vgg16(weights=None).state_dict(), tmp)


def _syncnet_file(target: Path) -> None:
    from latentsync.config import load_config
    from latentsync.models.checkpoint import save_checkpoint
    from latentsync.models.stable_syncnet import StableSyncNet

    torch.manual_seed(0)
    save_checkpoint(target, StableSyncNet(load_config(PROJECT_ROOT / SYNCNET_CONFIG).model), 1)


def _tiny_stage2_init(target: Path) -> None:
    from tools.benchmark_unet import random_weights_file

    folder = target.with_suffix("")
    folder.mkdir()
    os.replace(random_weights_file(os.fspath(PROJECT_ROOT / TINY_STAGE2_CONFIG), os.fspath(folder), seed=0), target)
    folder.rmdir()


def _dataset(target: Path, speech: np.ndarray, size: int, count: int, seconds: float) -> None:
    """Talking-head clips with their audio in ``target/train`` and ``target/val`` (one)."""
    for split in ("train", "val"):
        folder = target / split
        folder.mkdir(parents=True)
        for k in range(count if split == "train" else 1):
            start = int((k * 0.7 + (split == "val") * 3.1) * SAMPLE_RATE) % max(1, len(speech) - 1)
            clip = np.resize(np.roll(speech, -start), int(seconds * SAMPLE_RATE))
            write_talking_video(folder / f"clip_{k:03d}_000.mp4", clip, size=(size, size), seed=k)


def prepare(workdir: str | os.PathLike, needs: set[str], tiny: bool, device: torch.device,
            speech_source: str | None = None) -> dict[str, str]:
    """Make what ``needs`` names ("models", "clip", "training", "dataset", "eval") under ``workdir``."""
    from tools import tiny_models

    root = Path(workdir) / ("tiny" if tiny else "real")
    root.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if needs & {"models", "dataset"}:
        if tiny:
            unet_dir = Path(_once(root / "unet", lambda p: tiny_models.write_unet(p)))
            made["unet_config"], made["unet_ckpt"] = os.fspath(unet_dir / "unet.yaml"), os.fspath(unet_dir / "unet.pt")
            made["whisper"] = os.fspath(Path(_once(root / "whisper", lambda p: tiny_models.write_whisper(p))) / "tiny.pt")
            made["vae"] = _once(root / "vae", lambda p: tiny_models.write_vae(p))
        else:
            made["unet_ckpt"] = os.fspath(Path(_once(root / "unet", lambda p: _real_unet(p, device))) / "unet.pt")
            whisper = _once(root / "whisper", lambda p: tiny_models.write_whisper(p, dims=tiny_models.WHISPER_TINY_DIMS))
            made["whisper"] = os.fspath(Path(whisper) / "tiny.pt")
            made["vae"] = _once(root / "vae", lambda p: tiny_models.write_sd_vae(p))
    speech: np.ndarray | None = None
    if needs & {"clip", "dataset"}:
        seconds = TINY_VIDEO_SECONDS if tiny else VIDEO_SECONDS
        made["speech"] = _once(root / "speech.wav", lambda p: make_speech(p, seconds, speech_source))
        from latentsync.media.audio import load_audio

        speech = load_audio(made["speech"])
        short = TINY_SHORT_SECONDS if tiny else SHORT_SECONDS
        made["short_speech"] = _once(root / "short_speech.wav", lambda p: write_wav(p, speech[: int(short * SAMPLE_RATE)]))
        compare = TINY_VIDEO_SECONDS if tiny else COMPARE_SECONDS
        made["compare_speech"] = _once(root / "compare_speech.wav",
                                       lambda p: write_wav(p, speech[: int(compare * SAMPLE_RATE)]))
        size = TINY_VIDEO_SIZE if tiny else VIDEO_SIZE
        made["video"] = _once(root / f"talking_{size[0]}x{size[1]}.mp4",
                              lambda p: write_talking_video(p, speech, size=size))
    if "training" in needs and not tiny:
        made["vgg"] = _once(root / "vgg16-397923af.pth", lambda p: _vgg_file(p))
        made["videomae"] = _once(root / "vit_g_hybrid_pt_1200e_ssv2_ft.pth", lambda p: _videomae_file(p, device))
        made["syncnet"] = _once(root / "stable_syncnet.pt", lambda p: _syncnet_file(p))
    if "dataset" in needs:
        size, count = (64, 3) if tiny else (256, TRAIN_CLIPS)
        from tools.write_fileslist import write_fileslist

        data = Path(_once(root / "dataset", lambda p: _dataset(p, speech, size, count, 1.4 if tiny else TRAIN_SECONDS)))
        for split in ("train", "val"):  # listed once the clips are in their final folder
            made[f"{split}_list"] = _once(root / f"{split}.txt", lambda p: write_fileslist(p, [data / split]))
        # Initial weights with non-zero conv_in/conv_out (a fresh UNet outputs zeros and gets no gradients).
        made["train_init"] = made["unet_ckpt"] if not tiny else _once(root / "stage2_tiny_init.pt", _tiny_stage2_init)
    if "eval" in needs:
        from tools.eval_models import write_auxiliary

        made["auxiliary"] = _once(root / "auxiliary", lambda p: write_auxiliary(p, real_size_i3d=not tiny))
    return made

