"""Build a ready :class:`LipsyncPipeline` from checkpoint files: the one way every entry point does it.

The CLI, the benchmarks, the tests, training validation and the Gradio app call
:func:`load_pipeline` (:func:`load_pipeline_for` with a settings object); code that already holds
modules (random-weight benchmarks, training) calls :func:`assemble_pipeline`. Nothing here touches
the network: a missing file is a :class:`~latentsync.errors.CheckpointError` naming the command
that downloads it (:func:`missing_model_files` lists them all).

The networks' modules (and diffusers, seconds to import) are imported when a pipeline is built,
not with this module: the command line checks the model files and starts reading the video and
finding its faces (:class:`~latentsync.pipelines.video_runner.VideoJob`) while they import.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import torch

from latentsync import paths
from latentsync.config import load_config
from latentsync.errors import CheckpointError, ConfigError
from latentsync.face.detection import FaceDetector, make_face_detector
from latentsync.pipelines.sampling import make_scheduler
from latentsync.settings import InferenceSettings
from latentsync.utils.device import pick_device, pick_dtype
from latentsync.whisper.audio2feature import Audio2Feature

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline

logger = logging.getLogger(__name__)

UNET_REQUIRED_KEYS = ("data.resolution", "data.num_frames", "model.cross_attention_dim")


def release_of(unet_config_path: str | os.PathLike) -> str | None:
    """The LatentSync release ("1.5", "1.6") whose UNet config this is (configs/checkpoints.yaml), or None."""
    manifest = load_config(paths.CHECKPOINTS_MANIFEST)
    config = paths.project_path(unet_config_path)
    return next((name for name, r in manifest.releases.items() if paths.project_path(r.unet_config) == config), None)


def download_hint(unet_config_path: str | os.PathLike, filename: str) -> str:
    """How to fetch ``filename`` (relative to the checkpoints folder, or "vae") for this UNet config."""
    manifest = load_config(paths.CHECKPOINTS_MANIFEST)
    release = release_of(unet_config_path) or "1.6"
    setup = "bash " + paths.shown_path(paths.PROJECT_ROOT / "setup_env.sh") + ("" if release == "1.6" else f" --release {release}")
    if filename == "vae":
        command = paths.hf_download_command(manifest.vae.repo_id, list(manifest.vae.files), manifest.vae.local_dir)
    else:
        command = paths.hf_download_command(manifest.releases[release].repo_id, [filename], manifest.local_dir)
    return f"run `{setup}` or `{command}`"


def missing_model_files(
    unet_config_path: str | os.PathLike,
    inference_ckpt_path: str | os.PathLike | None,
    whisper_path: str | os.PathLike | None = None,
    vae_path: str | os.PathLike | None = paths.DEFAULT_VAE_DIR,
) -> list[str]:
    """One line per model file that is not where the arguments say, with how to get it, so that one
    run names them all. ``whisper_path`` None means the default for the UNet's audio width."""
    width = load_config(unet_config_path, required=("model.cross_attention_dim",)).model.cross_attention_dim
    released = paths.WHISPER_BY_WIDTH.get(width)
    if released:
        whisper_hint = download_hint(unet_config_path, released)
        whisper_path = whisper_path or default_whisper_path(width)
    else:  # no release fits: fetching whisper/tiny.pt (384 wide) would not help
        sizes = ", ".join(f"{name}: {size}" for size, name in paths.WHISPER_BY_WIDTH.items())
        whisper_hint = (f"no released Whisper model gives the {width}-wide features this UNet takes ({sizes}); "
                        f"pass --whisper_path with the checkpoint it was trained with")
    wanted = [
        ("UNet checkpoint", inference_ckpt_path, download_hint(unet_config_path, "latentsync_unet.pt"), False),
        ("Whisper checkpoint", whisper_path, whisper_hint, False),
        ("VAE folder", vae_path, download_hint(unet_config_path, "vae"), True),
    ]
    lines = []
    for what, path, hint, folder in wanted:
        if path is None:
            lines.append(f"{what} not given: {hint}")
        elif not (os.path.isdir(path) if folder else os.path.isfile(path)):
            kind = "is a file, not a folder," if folder and os.path.isfile(path) else "not found"
            lines.append(f"{what} {kind} at {os.fspath(path)!r}: {hint}")
    return lines


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
) -> LipsyncPipeline:
    """A pipeline of modules already built, on the project's noise schedule, moved to ``device``/``dtype``."""
    from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline  # (see the module docstring)

    # The schedule's own class; each call samples with a fresh sampler of its choice built from it.
    pipeline = LipsyncPipeline(vae=vae, audio_encoder=audio_encoder, unet=unet, scheduler=make_scheduler("ddim"))
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
    face_detector: str | FaceDetector | None = "auto",
    show_native_logs: bool = False,
) -> LipsyncPipeline:
    """Load UNet, VAE and Whisper from their files into a ready pipeline.

    ``whisper_path`` None picks ``checkpoints/whisper/tiny.pt`` or ``small.pt`` by the UNet's audio
    width; ``dtype`` None picks fp16 where the device runs it fast, else fp32; ``face_detector`` is
    "auto", "insightface", "mediapipe", a detector already built, or None (no detector: pass one to
    each run), its native libraries' stderr chatter silenced unless ``show_native_logs``. The pipeline keeps the UNet
    config's clip length, resolution and mask. Everything a run chooses (sampler, steps, deep
    cache, windows, detection, encoding) is an argument of the run, not of the loaded pipeline.
    """
    from diffusers import AutoencoderKL  # (see the module docstring)

    from latentsync.models.unet import UNet3DConditionModel

    config = load_config(unet_config_path, required=UNET_REQUIRED_KEYS)
    width = config.model.cross_attention_dim
    missing = missing_model_files(unet_config_path, inference_ckpt_path, whisper_path, vae_path)
    if missing:
        raise CheckpointError("; ".join(missing))
    whisper_path = whisper_path or default_whisper_path(width)
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
    pipeline = assemble_pipeline(vae.to(device), unet, audio_encoder)
    pipeline.set_defaults(num_frames=config.data.num_frames, resolution=config.data.resolution, mask_image_path=mask_path)
    if isinstance(face_detector, str):
        face_detector = make_detector(face_detector, device, show_native_logs)
    pipeline.face_detector = face_detector
    return pipeline


def make_detector(name: str, device: str | torch.device = "auto", show_native_logs: bool = False) -> FaceDetector:
    """The face detector ``name`` for a pipeline on ``device`` (models from checkpoints/auxiliary)."""
    try:
        device = pick_device(str(device))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return make_face_detector(name, model_dir=paths.AUXILIARY_DIR, device=str(device), show_native_logs=show_native_logs)


def load_pipeline_for(
    settings: InferenceSettings,
    *,
    device: str | torch.device | None = None,
    face_detector: FaceDetector | None = None,
    show_native_logs: bool = False,
) -> LipsyncPipeline:
    """:func:`load_pipeline` with the model settings of ``settings`` (``device`` overrides theirs, e.g. cuda:1;
    ``face_detector``: one already built, else the settings' is made)."""
    return load_pipeline(
        settings.unet_config_path,
        settings.inference_ckpt_path,
        whisper_path=settings.whisper_path,
        vae_path=settings.vae_path,
        device=settings.device if device is None else device,
        face_detector=settings.face_detector if face_detector is None else face_detector,
        show_native_logs=show_native_logs,
    )
