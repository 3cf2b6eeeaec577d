"""load_pipeline: one way to build a ready pipeline from checkpoint files; its progress hook."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch
import yaml
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from latentsync import paths
from latentsync.errors import CheckpointError, ConfigError
from latentsync.face.mediapipe_detector import MediapipeFaceDetector
from latentsync.pipelines.loading import load_pipeline, missing_model_files
from latentsync.pipelines.progress import STAGES, TqdmProgress
from latentsync.pipelines.sampling import make_scheduler
from latentsync.pipelines.video_runner import sync_video
from latentsync.settings import InferenceSettings
from tests.tiny_models import TINY_RESOLUTION
from tools.synthetic_media import write_talking_video, write_wav


def _load(models, **kwargs):
    options = dict(whisper_path=models.whisper, vae_path=models.vae, device="cpu", face_detector=None)
    options.update(kwargs)
    return load_pipeline(models.unet_config, models.unet_ckpt, **options)


def test_defaults_come_from_the_unet_config_and_the_project(tiny_models):
    pipe = _load(tiny_models, face_detector="mediapipe")
    assert (pipe.num_frames, pipe.resolution) == (16, TINY_RESOLUTION)
    # The tiny config names the mask relative to the project, as the shipped configs do.
    assert pipe.mask_image_path == paths.DEFAULT_MASK_PATH and pipe.mask_image_path.is_absolute()
    assert isinstance(pipe.face_detector, MediapipeFaceDetector)
    assert not pipe.unet.training
    assert pipe.unet.dtype == torch.float32 and pipe.audio_encoder.device.type == "cpu"


def test_scheduler_is_chosen_by_name_from_the_one_noise_schedule(tiny_models):
    schedule = _load(tiny_models).scheduler  # the pipeline's: the noise schedule each call's sampler is made from
    ddim, dpm = make_scheduler("ddim"), make_scheduler("dpm++")
    assert isinstance(schedule, DDIMScheduler) and isinstance(ddim, DDIMScheduler)
    assert isinstance(dpm, DPMSolverMultistepScheduler) and dpm.config.algorithm_type == "dpmsolver++"
    for made in (ddim, dpm):
        torch.testing.assert_close(made.alphas_cumprod, schedule.alphas_cumprod, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="unknown scheduler 'euler'.*ddim, dpm\\+\\+"):
        make_scheduler("euler")


def test_to_moves_the_audio_encoder_too(tiny_models):
    pipe = _load(tiny_models)
    pipe.to("meta")
    assert pipe.unet.device.type == "meta" and pipe.vae.device.type == "meta"
    assert pipe.audio_encoder.device.type == "meta"
    assert pipe.audio_encoder.encoder.conv1.weight.device.type == "meta"


@pytest.mark.parametrize("missing", ["unet", "whisper", "vae"])
def test_missing_file_names_a_command_that_runs(tiny_models, tmp_path, missing):
    kwargs = {"whisper_path": tiny_models.whisper, "vae_path": tiny_models.vae}
    ckpt = tiny_models.unet_ckpt
    if missing == "unet":
        ckpt = tmp_path / "absent.pt"
    else:
        kwargs[f"{missing}_path"] = tmp_path / "absent"
    with pytest.raises(CheckpointError) as info:
        load_pipeline(tiny_models.unet_config, ckpt, device="cpu", face_detector=None, **kwargs)
    message = str(info.value)
    # The Gradio page lists the same files (all of them) from the same check.
    (listed,) = missing_model_files(tiny_models.unet_config, ckpt, kwargs["whisper_path"], kwargs["vae_path"])
    assert str(listed) == message
    assert "absent" in message
    if missing == "whisper":
        # The tiny UNet takes 64-wide audio features: no released Whisper fits, so none is offered.
        assert "no released Whisper model gives the 64-wide features" in message and "--whisper_path" in message
        assert " download " not in message
        return
    # The hf CLI lives in the virtual environment, not on PATH: the command names it there.
    assert f"{paths.shown_path(paths.HF_CLI)} download " in message
    expected = {"unet": "latentsync_unet.pt", "vae": "diffusion_pytorch_model.safetensors"}
    assert expected[missing] in message


def test_every_missing_file_is_named_at_once(tiny_models, tmp_path):
    with pytest.raises(CheckpointError) as info:
        load_pipeline(tiny_models.unet_config, tmp_path / "u.pt", whisper_path=tmp_path / "w.pt",
                      vae_path=tmp_path / "vae", device="cpu", face_detector=None)
    message = str(info.value)
    assert "\n" not in message
    for needle in (f"UNet checkpoint not found at '{tmp_path / 'u.pt'}'", f"Whisper checkpoint not found at '{tmp_path / 'w.pt'}'",
                   f"VAE folder not found at '{tmp_path / 'vae'}'"):
        assert needle in message


def test_whisper_is_chosen_by_audio_width(tiny_models, tmp_path):
    config = yaml.safe_load(tiny_models.unet_config.read_text())
    config["model"]["cross_attention_dim"] = 768
    wide = tmp_path / "wide.yaml"
    wide.write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match="whisper/small.pt"):
        load_pipeline(wide, tiny_models.unet_ckpt, vae_path=tiny_models.vae, device="cpu", face_detector=None)
    config["model"]["cross_attention_dim"] = 100
    wide.write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match="Whisper checkpoint not given: no released Whisper model gives the 100-wide"):
        load_pipeline(wide, tiny_models.unet_ckpt, vae_path=tiny_models.vae, device="cpu", face_detector=None)


@pytest.mark.parametrize("overlap_stages", [False, True], ids=["sequential", "overlapped"])
def test_progress_hook_sees_every_stage_in_order(tiny_models, tmp_path, overlap_stages):
    sr = 16000
    t = np.arange(sr) / sr
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)[: int(0.8 * sr)]
    write_wav(tmp_path / "a.wav", audio)
    write_talking_video(tmp_path / "v.mp4", audio, size=(128, 128), with_audio=False)
    pipe = _load(tiny_models, face_detector="mediapipe")
    calls, threads = [], set()

    def hook(*call):
        calls.append(call)
        threads.add(threading.current_thread())

    settings = InferenceSettings.from_config(video_path=tmp_path / "v.mp4", audio_path=tmp_path / "a.wav",
                                             video_out_path=tmp_path / "out.mp4", inference_steps=1, seed=0)
    report = sync_video(pipe, settings, progress=hook, overlap_stages=overlap_stages)
    assert report.frames == 20
    assert threads == {threading.current_thread()}  # hooks never run in the pipeline's worker threads
    assert [stage for stage in dict.fromkeys(c[0] for c in calls)] == list(STAGES)
    faces = [c for c in calls if c[0] == "faces"]
    assert faces[0] == ("faces", 0, 20) and faces[-1] == ("faces", 20, 20)
    if overlap_stages:  # detection runs ahead in a thread: reported per clip, done before writing starts
        assert [done for _, done, _ in faces] == sorted(done for _, done, _ in faces)
        assert calls.index(faces[-1]) < calls.index(("write", 0, 1))
    else:
        assert len(faces) == 21 and calls.index(faces[-1]) < calls.index(("denoise", 0, 2))
    assert [c for c in calls if c[0] == "denoise"] == [("denoise", 0, 2), ("denoise", 1, 2), ("denoise", 2, 2)]
    assert calls[-1] == ("write", 1, 1)


def test_tqdm_progress_opens_and_closes_one_bar_per_stage():
    shown = io.StringIO()
    hook = TqdmProgress(file=shown)
    hook("faces", 0, 3)
    hook("faces", 2, 3)
    assert hook._bars["faces"].n == 2
    hook("faces", 3, 3)
    hook("denoise", 0, 2)
    assert list(hook._bars) == ["denoise"]
    hook.close()
    assert hook._bars == {}
    assert "detecting faces: 100%" in shown.getvalue() and "lip-syncing:   0%" in shown.getvalue()
