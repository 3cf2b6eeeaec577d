"""Build a ready :class:`LipsyncPipeline` from checkpoint files: the one way every entry point does it.

The CLI, the benchmarks, the tests, training validation and the Gradio app call
:func:`load_pipeline`; code that already holds modules (random-weight benchmarks, training)
calls :func:`assemble_pipeline`. Nothing here touches the network: a missing file is a
:class:`~latentsync.errors.CheckpointError` naming the command that downloads it.
"""

from __future__ import annotations

import logging
import os

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DPMSolverMultistepScheduler, SchedulerMixin

from latentsync import paths
from latentsync.config import load_config
from latentsync.errors import CheckpointError, ConfigError
from latentsync.face.alignment import FaceStageOptions
from latentsync.face.detection import make_face_detector
from latentsync.models.unet import UNet3DConditionModel
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.utils.device import pick_device, pick_dtype
from latentsync.whisper.audio2feature import Audio2Feature

logger = logging.getLogger(__name__)

UNET_REQUIRED_KEYS = ("data.resolution", "data.num_frames", "model.cross_attention_dim")
# Samplers, all built from the one noise schedule in configs/scheduler_config.json. DDIM at 20
# steps is the reference; DPM-Solver++ (2nd-order multistep) gets close in about half the steps.
SCHEDULERS = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}
DEFAULT_SCHEDULER = "ddim"


def download_hint(unet_config_path: str | os.PathLike, filename: str) -> str:
    """How to fetch ``filename`` (relative to the checkpoints folder, or "vae") for this UNet config."""
    manifest = load_config(paths.CHECKPOINTS_MANIFEST)
    config = paths.project_path(unet_config_path)
    release = next(
        (name for name, r in manifest.releases.items() if paths.project_path(r.unet_config) == config), "1.6"
    )
    setup = "bash " + paths.shown_path(paths.PROJECT_ROOT / "setup_env.sh") + ("" if release == "1.6" else f" --release {release}")
    if filename == "vae":
        command = paths.hf_download_command(manifest.vae.repo_id, list(manifest.vae.files), manifest.vae.local_dir)
    else:
        command = paths.hf_download_command(manifest.releases[release].repo_id, [filename], manifest.local_dir)
    return f"run `{setup}` or `{command}`"


def _require(path: str | os.PathLike, what: str, unet_config_path, filename: str, folder: bool = False) -> str:
    path = os.fspath(path)
    if not (os.path.isdir(path) if folder else os.path.isfile(path)):
        kind = "a folder" if os.path.isfile(path) and folder else "not found"
        raise CheckpointError(f"{what} {kind} at {path!r}: {download_hint(unet_config_path, filename)}")
    return path


def max_inference_steps() -> int:
    """The most DDIM steps the project's scheduler can take (its training timesteps less its offset)."""
    config = DDIMScheduler.load_config(paths.SCHEDULER_DIR)
    return config["num_train_timesteps"] - config.get("steps_offset", 0)


def make_scheduler(name: str = DEFAULT_SCHEDULER) -> SchedulerMixin:
    """A fresh sampler of the project's noise schedule: "ddim" or "dpm++" (DPM-Solver++ multistep)."""
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}, choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name].from_config(DDIMScheduler.load_config(paths.SCHEDULER_DIR))


def default_whisper_path(audio_width: int) -> str:
    """The Whisper checkpoint in the checkpoints folder whose features are ``audio_width`` wide."""
    if audio_width not in paths.WHISPER_BY_WIDTH:
        raise ConfigError(f"no default Whisper model for audio width {audio_width}; pass --whisper_path")
    return os.fspath(paths.CHECKPOINTS_DIR / paths.WHISPER_BY_WIDTH[audio_width])


def assemble_pipeline(
    vae: AutoencoderKL,
    unet: UNet3DConditionModel,
    audio_encoder: Audio2Feature | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    scheduler: str = DEFAULT_SCHEDULER,
) -> LipsyncPipeline:
    """A pipeline of modules already built, with the project's ``scheduler``, moved to ``device``/``dtype``."""
    pipeline = LipsyncPipeline(vae=vae, audio_encoder=audio_encoder, unet=unet, scheduler=make_scheduler(scheduler))
    if device is not None:
        pipeline.to(device)
    if dtype is not None:
        pipeline.to(dtype=dtype)
    return pipeline


def load_pipeline(
    unet_config_path: str | os.PathLike,
    inference_ckpt_path: str | os.PathLike,
    *,
    whisper_path: str | os.PathLike | None = None,
    vae_path: str | os.PathLike = paths.DEFAULT_VAE_DIR,
    device: str | torch.device = "auto",
    dtype: torch.dtype | None = None,
    face_detector: str | None = "auto",
    audio_windows: str = "overlap",
    audio_cache_dir: str | os.PathLike | None = None,
    deepcache_interval: int | None = None,
    show_native_logs: bool = False,
    scheduler: str = DEFAULT_SCHEDULER,
) -> LipsyncPipeline:
    """Load UNet, VAE and Whisper from their files into a ready pipeline.

    ``whisper_path`` None picks ``checkpoints/whisper/tiny.pt`` or ``small.pt`` by the UNet's audio
    width; ``dtype`` None picks fp16 where the device runs it fast, else fp32; ``face_detector`` is
    "auto", "insightface", "mediapipe" or None (no detector: pass one to each call), its native
    libraries' stderr chatter silenced unless ``show_native_logs``; ``scheduler`` is "ddim" or
    "dpm++" (:data:`SCHEDULERS`). The pipeline keeps the UNet config's clip length, resolution
    and mask as its call defaults.
    """
    config = load_config(unet_config_path, required=UNET_REQUIRED_KEYS)
    make_scheduler(scheduler)  # a bad name fails before any file is read
    width = config.model.cross_attention_dim
    if whisper_path is None:
        whisper_path = default_whisper_path(width)
    whisper_file = paths.WHISPER_BY_WIDTH.get(width, "whisper/tiny.pt")
    _require(inference_ckpt_path, "UNet checkpoint", unet_config_path, "latentsync_unet.pt")
    _require(whisper_path, "Whisper checkpoint", unet_config_path, whisper_file)
    _require(vae_path, "VAE folder", unet_config_path, "vae", folder=True)
    mask_path = paths.project_path(config.data.get("mask_image_path") or paths.DEFAULT_MASK_PATH)
    if not mask_path.is_file():
        raise ConfigError(f"{os.fspath(unet_config_path)}: data.mask_image_path {os.fspath(mask_path)!r} does not exist")

    try:
        device = pick_device(str(device))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    dtype = dtype or pick_dtype(device)
    logger.info("device %s, dtype %s", device, dtype)

    audio_encoder = Audio2Feature(
        whisper_path,
        device=device,
        num_frames=config.data.num_frames,
        audio_feat_length=list(config.data.get("audio_feat_length", [2, 2])),
        windows=audio_windows,
        cache_dir=audio_cache_dir,
    )
    if audio_encoder.embedding_dim != width:
        raise ConfigError(
            f"Whisper model {os.fspath(whisper_path)!r} gives {audio_encoder.embedding_dim}-wide features but "
            f"{os.fspath(unet_config_path)} expects {width}; pass the matching --whisper_path"
        )
    unet = UNet3DConditionModel.from_checkpoint(config, inference_ckpt_path, device=device, dtype=dtype).eval()
    try:
        vae = AutoencoderKL.from_pretrained(vae_path, torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot load the VAE from {os.fspath(vae_path)!r}: {err}") from err
    pipeline = assemble_pipeline(vae.to(device), unet, audio_encoder, scheduler=scheduler)
    pipeline.set_defaults(num_frames=config.data.num_frames, resolution=config.data.resolution, mask_image_path=mask_path)
    if deepcache_interval:
        pipeline.enable_deepcache(deepcache_interval)
    if device.type == "cuda":  # batched tensor warps beat OpenCV there; on a CPU OpenCV is faster
        pipeline.face_options = FaceStageOptions(warp_device=device)
    if face_detector is not None:
        pipeline.face_detector = make_face_detector(
            face_detector, model_dir=paths.AUXILIARY_DIR, device=str(device), show_native_logs=show_native_logs
        )
    return pipeline
