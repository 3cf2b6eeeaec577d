"""Train LatentSync's U-Net: stage 1 (denoising in latent space) or stage 2 (plus pixel-space losses).

    torchrun --nproc_per_node 8 -m scripts.train_unet --config_path configs/unet/stage2.yaml \
        [--output_dir DIR] [--resume_ckpt_path latest|PATH] [--init_ckpt_path PATH] [key=value ...]

Parse -> config -> build -> loop. What one step computes is :func:`latentsync.training.unet.unet_losses`;
the loop, distribution (DDP over NCCL or gloo), gradient accumulation, mixed precision,
non-finite-step skips, validation schedule, charts and checkpoints come from
:mod:`latentsync.training`. Weights: ``ckpt.init_ckpt_path`` starts a run (a stage-1 checkpoint
into a stage-2 model gets fresh motion modules; a stage-2 checkpoint into a stage-1 model drops
them, both logged); ``ckpt.resume_ckpt_path`` (default ``latest``: the newest checkpoint in the
output folder) continues a run exactly, optimizer, LR schedule, grad scaler and RNG included.
Validation renders ``data.val_video_path`` with ``data.val_audio_path`` through the inference
``LipsyncPipeline`` and measures the losses on fixed held-out draws; the best checkpoint by the
sync score is kept as ``best_checkpoint.pt``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import is_tensorboard_available, set_seed
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from latentsync.config import to_container
from latentsync.data.unet_dataset import UNetDataset
from latentsync.data.video_dataset import read_video_paths, validation_keys
from latentsync.errors import LatentSyncError
from latentsync.models.checkpoint import read_checkpoint, load_weights
from latentsync.models.unet import MOTION_MODULE_KEYS, UNet3DConditionModel
from latentsync.paths import CHECKPOINTS_DIR, CONFIGS_DIR, WHISPER_BY_WIDTH
from latentsync.training.checkpoints import load_training_state, seed_processes
from latentsync.training.cli import COMMON_FLAGS, config_from_args, parse_training_args, run_training_main, training_parser
from latentsync.training.config import TOOLKIT_KEYS, Key, keys_from_signature
from latentsync.training.loop import DebugRecorder
from latentsync.training.run import LoopSettings, TrainingRun
from latentsync.training.setup import (
    build_accelerator,
    build_lr_scheduler,
    build_optimizer,
    build_train_loader,
    build_val_loader,
    select_trainable,
    steps_per_epoch,
)
from latentsync.training.sync_confidence import load_sync_confidence, sync_confidence_available
from latentsync.training.unet import FrozenNetworks, StepSettings, build_frozen_networks, unet_losses
from latentsync.utils.files import atomic_output
from latentsync.whisper.audio2feature import Audio2Feature

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = str(CONFIGS_DIR / "unet" / "stage1.yaml")
SCHEMA = {
    **TOOLKIT_KEYS,
    **keys_from_signature(UNet3DConditionModel.__init__, "model.", required=("in_channels", "cross_attention_dim")),
    "data.mask_image_path": Key("path"),
    "data.audio_feat_length": Key("list"),
    "data.num_val_samples": Key("int", 8, low=1),
    "data.val_video_path": Key("path", "", changeable=True),  # rendered at each validation ("" = none)
    "data.val_audio_path": Key("path", "", changeable=True),
    "data.val_face_detector": Key("str", "auto", choices=("auto", "insightface", "mediapipe"), changeable=True),
    "data.syncnet_config_path": Key("path", "configs/syncnet/syncnet_16_pixel_attn.yaml"),
    "data.audio_embeds_cache_dir": Key("path", "", changeable=True),
    "data.whisper_path": Key("path", ""),  # "": checkpoints/whisper/tiny.pt or small.pt by model.cross_attention_dim
    "data.scheduler_config_dir": Key("path", "configs"),
    "optimizer.scale_lr": Key("bool", False),
    "optimizer.use_8bit_adam": Key("bool", False),  # bitsandbytes AdamW8bit (CUDA): optimizer states in a quarter of the memory
    "ckpt.init_ckpt_path": Key("path", "", changeable=True),  # starting weights of a new run (unused when resuming)
    "ckpt.syncnet_ckpt_path": Key("path", ""),  # "": the SyncNet config's ckpt.inference_ckpt_path
    "ckpt.lpips_vgg_path": Key("path", "checkpoints/auxiliary/vgg16-397923af.pth"),
    "ckpt.videomae_path": Key("path", "checkpoints/auxiliary/vit_g_hybrid_pt_1200e_ssv2_ft.pth"),
    # The evaluation's sync confidence of each validation video, when its scorer and these files exist.
    "ckpt.sync_conf_syncnet_path": Key("path", "checkpoints/auxiliary/syncnet_v2.model", changeable=True),
    "ckpt.sync_conf_s3fd_path": Key("path", "checkpoints/auxiliary/sfd_face.pth", changeable=True),
    "run.max_train_steps": Key("int", low=-1, changeable=True),  # -1: run.max_train_epochs worth
    "run.max_train_epochs": Key("int", -1, low=-1, changeable=True),
    "run.validation_steps": Key("int", 0, low=0, changeable=True),  # 0: validate when a checkpoint is saved
    "run.pixel_space_supervise": Key("bool"),
    "run.use_syncnet": Key("bool"),
    "run.recon_loss_weight": Key("float", low=0),
    "run.sync_loss_weight": Key("float", low=0),
    "run.perceptual_loss_weight": Key("float", low=0),
    "run.trepa_loss_weight": Key("float", low=0),
    "run.use_mixed_noise": Key("bool"),
    "run.mixed_noise_alpha": Key("float", low=0),
    "run.trainable_modules": Key("list", None, nullable=True),  # parameter-name fragments to train; null: all
    "run.enable_gradient_checkpointing": Key("bool", False, changeable=True),
    "run.mixed_precision": Key("str", "fp16", choices=("fp16", "bf16"), changeable=True),  # on CUDA (+ grad scaler for fp16)
    "run.audio_dropout_prob": Key("float", 0.0, low=0, high=1),
    "run.allow_random_init_backbones": Key("bool", False),
    "run.trepa_dims": Key("mapping", None, nullable=True),  # VideoMAE-v2 size overrides (random-init proofs); null: ViT-g
    "run.guidance_scale": Key("float", 1.5, low=1, changeable=True),  # of the rendered validation video
    "run.inference_steps": Key("int", 20, low=1, changeable=True),
    "run.log_with": Key("str", "auto", changeable=True),  # accelerate trackers: auto = TensorBoard when installed, "" = none
}
FLAGS = {**COMMON_FLAGS, "init_ckpt_path": "ckpt.init_ckpt_path"}
VALIDATION_SEED = 20_240_817  # validation draws: the same at every validation, unlike any training draw


# --------------------------------------------------------------------------- parse, config


def parser() -> argparse.ArgumentParser:
    parser = training_parser("Train the LatentSync U-Net (launch with torchrun for several processes)", DEFAULT_CONFIG)
    parser.add_argument("--unet_config_path", dest="config_path", default=argparse.SUPPRESS,
                        help="the reference's name for --config_path")
    parser.add_argument("--init_ckpt_path", help="overrides ckpt.init_ckpt_path: the starting weights of a new run")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return parse_training_args(parser(), argv)


def load_training_config(args: argparse.Namespace) -> DictConfig:
    """The checked YAML config with defaults for optional keys and the CLI overrides applied; read-only."""
    return config_from_args(args, SCHEMA, FLAGS)


# --------------------------------------------------------------------------- build


@dataclass
class UNetRun(TrainingRun):
    """A training run plus the frozen networks, the step settings and what validation needs."""

    networks: FrozenNetworks | None = None
    step_settings: StepSettings | None = None
    val_loader: DataLoader | None = None
    pipeline: object = None  # the inference LipsyncPipeline, made at the first validation
    scores_sync_confidence: bool = False  # validation videos get the classic-SyncNet confidence
    sync_confidence: object = None  # its scorer (rank 0), made at the first validation


def load_initial_weights(unet: UNet3DConditionModel, path: str) -> None:
    """Starting weights for a new run; the only partial loads are the stage-1/stage-2 motion modules, logged."""
    state_dict, step = read_checkpoint(path)
    has_motion = any(MOTION_MODULE_KEYS[0] in key for key in unet.state_dict())
    if not has_motion:
        dropped = [key for key in state_dict if MOTION_MODULE_KEYS[0] in key]
        if dropped:
            logger.info("%s: %d motion-module tensors dropped (this model has none)", path, len(dropped))
            state_dict = {k: v for k, v in state_dict.items() if k not in set(dropped)}
    load_weights(unet, state_dict, path, new_modules=MOTION_MODULE_KEYS if has_motion else ())
    logger.info("initial weights from %s (its step %d; this run starts at step 0)", path, step)


def whisper_path(config: DictConfig) -> str:
    """The Whisper checkpoint whose width is the UNet's cross-attention width."""
    if config.data.whisper_path:
        return config.data.whisper_path
    width = int(config.model.cross_attention_dim)
    if width not in WHISPER_BY_WIDTH:
        raise LatentSyncError(f"no default Whisper for model.cross_attention_dim {width}; set data.whisper_path")
    return str(CHECKPOINTS_DIR / WHISPER_BY_WIDTH[width])


def weight_dtype(mixed_precision: str) -> torch.dtype:
    """The precision of the frozen networks: that of the UNet's autocast."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)


def train_steps(config: DictConfig, dataset_size: int, accelerator: Accelerator) -> int:
    """``run.max_train_steps``, or ``run.max_train_epochs`` worth of optimiser steps when it is -1."""
    if config.run.max_train_steps != -1:
        return int(config.run.max_train_steps)
    if config.run.max_train_epochs <= 0:
        raise LatentSyncError("set run.max_train_steps or run.max_train_epochs (both are -1)")
    return int(config.run.max_train_epochs) * steps_per_epoch(dataset_size, accelerator, config.data.batch_size)


def trackers(name: str) -> str | None:
    """accelerate's ``log_with``: "auto" is TensorBoard when it is installed, "" none, anything else as given."""
    if name == "auto":
        return "tensorboard" if is_tensorboard_available() else None
    return name or None


def best_metric(settings: StepSettings, scores_sync_confidence: bool) -> tuple[str, str]:
    """Which validation value picks ``best_checkpoint.pt``: the sync confidence of the validation video
    when it is measured, else the sync loss when there is a SyncNet, else the loss."""
    if scores_sync_confidence:
        return "sync_confidence", "max"
    return ("sync", "min") if settings.use_syncnet else ("loss", "min")


def build(config: DictConfig, debug_dump_dir: str | None = None, resume: str | None = None) -> UNetRun:
    """Accelerator, UNet (initial, or resumed from the weights file ``resume``), optimizer, frozen networks, data
    and output folders."""
    data, run_config = config.data, config.run
    log_with = trackers(run_config.log_with)
    accelerator = build_accelerator(
        run_config.device, run_config.mixed_precision_training, data.gradient_accumulation_steps,
        cuda_prefers=run_config.mixed_precision, log_with=log_with, project_dir=data.train_output_dir,
    )
    step_settings = StepSettings.from_config(config)
    set_seed(run_config.seed)  # same initial weights on every rank
    unet = UNet3DConditionModel.from_config(to_container(config.model))
    output_dir = data.train_output_dir
    if resume is None and config.ckpt.init_ckpt_path:
        load_initial_weights(unet, config.ckpt.init_ckpt_path)
    patterns = list(run_config.trainable_modules) if run_config.trainable_modules else None
    trainable = select_trainable(unet, patterns)
    if run_config.enable_gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.to(accelerator.device)

    audio_encoder = None
    if config.model.add_audio_layer:
        # On the CPU: the data set computes each video's features once (loader workers have no GPU),
        # then reads them from the content-keyed cache that inference shares.
        audio_encoder = Audio2Feature(
            whisper_path(config), device="cpu", num_frames=data.num_frames, audio_feat_length=data.audio_feat_length,
            cache_dir=data.audio_embeds_cache_dir or None,
        )
    train_set = UNetDataset.from_config(data, audio_encoder, step_settings.use_syncnet, seed=run_config.seed)
    max_steps = train_steps(config, len(train_set), accelerator)
    lr = config.optimizer.lr * (accelerator.num_processes if config.optimizer.scale_lr else 1)
    optimizer = build_optimizer(trainable, lr, config.optimizer.weight_decay,
                                eight_bit=config.optimizer.use_8bit_adam, device=accelerator.device)
    lr_scheduler = build_lr_scheduler(config.optimizer.lr_scheduler, optimizer, config.optimizer.lr_warmup_steps, max_steps)
    scores_sync_confidence = bool(data.val_video_path) and sync_confidence_available(
        config.ckpt.sync_conf_syncnet_path, config.ckpt.sync_conf_s3fd_path
    )
    metric, mode = best_metric(step_settings, scores_sync_confidence)
    settings = LoopSettings.from_config(
        config, max_train_steps=max_steps, validation_steps=run_config.validation_steps or config.ckpt.save_ckpt_steps,
        best_metric=metric, best_mode=mode,
    )
    run = UNetRun(config, accelerator, unet, optimizer, lr_scheduler, output_dir, settings, step_settings=step_settings,
                  scores_sync_confidence=scores_sync_confidence)
    rng_states = load_training_state(run, resume) if resume else None

    run.model, run.optimizer = accelerator.prepare(run.model, run.optimizer)
    run.networks = build_frozen_networks(config, step_settings, accelerator.device, weight_dtype(accelerator.mixed_precision))
    run.train_loader = build_train_loader(
        train_set, accelerator, data.batch_size, run_config.seed, run.global_step, data.num_workers
    )
    val_paths = None
    if data.val_fileslist or data.val_data_dir:
        val_paths = read_video_paths(data.val_fileslist, data.val_data_dir)
    val_set = UNetDataset.from_config(data, audio_encoder, step_settings.use_syncnet, seed=run_config.seed + 1,
                                      video_paths=val_paths)
    keys = validation_keys(len(val_set), data.num_val_samples)
    run.val_loader = build_val_loader(val_set, keys, accelerator, data.batch_size, data.num_workers)
    if accelerator.is_main_process:
        os.makedirs(os.path.join(output_dir, "checkpoints"), exist_ok=True)
        with atomic_output(os.path.join(output_dir, "config.yaml")) as tmp:
            OmegaConf.save(config, tmp)
    if log_with:
        accelerator.init_trackers("train_unet")
    seed_processes(accelerator, run_config.seed, run.global_step, rng_states)
    if debug_dump_dir:
        run.debug = DebugRecorder(accelerator, debug_dump_dir)
    return run


# --------------------------------------------------------------------------- loss, validation


def training_losses(run: UNetRun, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted loss of one batch and its terms (charted)."""
    return unet_losses(
        run.model, run.networks, batch, run.step_settings,
        device=run.accelerator.device, autocast=run.accelerator.autocast,
    )


def validate(run: UNetRun) -> dict[str, float]:
    """Mean loss terms on the fixed validation draws (same noise each time), and a rendered validation video."""
    accelerator = run.accelerator
    unet = accelerator.unwrap_model(run.model)
    unet.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for index, batch in enumerate(run.val_loader):
            generator = torch.Generator(accelerator.device).manual_seed(VALIDATION_SEED + index)
            loss, terms = unet_losses(unet, run.networks, batch, run.step_settings, device=accelerator.device,
                                      generator=generator, autocast=accelerator.autocast)
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(batch["video_index"])
            count += len(batch["video_index"])
    names = sorted(sums)
    totals = torch.tensor([sums[n] for n in names] + [count], dtype=torch.float64, device=accelerator.device)
    totals = accelerator.reduce(totals, "sum")
    metrics = {name: (totals[i] / totals[-1]).item() for i, name in enumerate(names)}
    confidence = float("nan")
    if accelerator.is_main_process and run.config.data.val_video_path:
        video = render_validation_video(run, unet)
        if run.scores_sync_confidence:
            confidence = score_sync_confidence(run, video)
    if run.scores_sync_confidence:
        metrics["sync_confidence"] = from_rank0(accelerator, confidence)
    accelerator.wait_for_everyone()
    unet.train()
    return metrics


def score_sync_confidence(run: UNetRun, video: str) -> float:
    """LSE-C of the validation video; NaN (never the best) when it has no usable face track."""
    if run.sync_confidence is None:
        ckpt = run.config.ckpt
        run.sync_confidence = load_sync_confidence(ckpt.sync_conf_syncnet_path, ckpt.sync_conf_s3fd_path,
                                                   run.accelerator.device)
    try:
        return run.sync_confidence(video)
    except (LatentSyncError, ValueError) as err:
        logger.warning("no sync confidence for %s: %s", video, err)
        return float("nan")


def from_rank0(accelerator: Accelerator, value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    if accelerator.num_processes == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    torch.distributed.broadcast(tensor, src=0)
    return tensor.item()


def render_validation_video(run: UNetRun, unet: UNet3DConditionModel) -> str:
    """Lip-sync the configured pair with the current weights through the inference pipeline; the video's path."""
    from latentsync.face.detection import make_face_detector
    from latentsync.pipelines.loading import assemble_pipeline
    from latentsync.pipelines.video_runner import sync_video
    from latentsync.settings import InferenceSettings

    config, device = run.config, run.accelerator.device
    if run.pipeline is None:
        audio_encoder = Audio2Feature(
            whisper_path(config), device=device, num_frames=config.data.num_frames,
            audio_feat_length=config.data.audio_feat_length, cache_dir=config.data.audio_embeds_cache_dir or None,
        )
        run.pipeline = assemble_pipeline(run.networks.vae, unet, audio_encoder)  # modules stay where they are
        run.pipeline.set_defaults(
            num_frames=config.data.num_frames, resolution=config.data.resolution,
            mask_image_path=config.data.mask_image_path,
        )
        run.pipeline.face_detector = make_face_detector(config.data.val_face_detector, device=str(device))
    out_path = os.path.join(run.output_dir, "val_videos", f"val_video_{run.global_step}.mp4")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    # The inference defaults (configs/inference.yaml) with this run's steps, guidance and seed; no deep cache.
    settings = InferenceSettings.from_config(
        video_path=config.data.val_video_path, audio_path=config.data.val_audio_path, video_out_path=out_path,
        inference_steps=config.run.inference_steps, guidance_scale=config.run.guidance_scale, seed=config.run.seed,
        enable_deepcache=False,
    )
    with run.accelerator.autocast():
        sync_video(run.pipeline, settings, progress=lambda *_: None)
    run.note_write(out_path)
    logger.info("validation video: %s", out_path)
    return out_path


def main(argv: Sequence[str] | None = None) -> int:
    return run_training_main(argv, parser(), SCHEMA, build, training_losses, validate, FLAGS)


if __name__ == "__main__":
    sys.exit(main())
