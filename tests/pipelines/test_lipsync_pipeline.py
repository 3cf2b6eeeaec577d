"""LipsyncPipeline at tensor level on tiny random-weight models (CPU).

The key property: processing clip by clip (what ``__call__`` streams) equals the reference's
one-pass algorithm, which draws the noise for all frames at once and slices it per window.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from latentsync.face.detection import make_face_detector
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from latentsync.pipelines import lipsync_pipeline
from latentsync.pipelines.frame_plan import FrameStore, clip_bounds, output_frame_count, padded_positions, pingpong_index
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.pipelines.loading import load_pipeline, make_scheduler
from tests.scripts.test_inference import media  # noqa: F401  (module fixture: a 3 s talking head + speech)
from tests.tiny_models import TINY_RESOLUTION

SCALE = 0.18215


@pytest.fixture(scope="module")
def pipe(tiny_models) -> LipsyncPipeline:
    torch.set_num_threads(1)
    return load_pipeline(tiny_models.unet_config, tiny_models.unet_ckpt, whisper_path=tiny_models.whisper,
                         vae_path=tiny_models.vae, device="cpu", face_detector=None)


def _faces(n: int) -> np.ndarray:
    """n slightly different 64x64 face-like frames (a drifting astronaut crop)."""
    import skimage.data

    photo = skimage.data.astronaut()[0:300, 80:380]
    out = []
    for i in range(n):
        shift = np.float32([[1, 0, 3 * math.sin(i / 3)], [0, 1, 2 * math.cos(i / 4)]])
        moved = cv2.warpAffine(photo, shift, photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT101)
        out.append(cv2.resize(moved, (TINY_RESOLUTION, TINY_RESOLUTION), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def _tokens(pipe: LipsyncPipeline, n: int) -> torch.Tensor:
    t = np.arange(16000 * 2) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    features = pipe.audio_encoder.audio2feat(wave)
    return pipe.audio_tokens(features, range(n))


@torch.no_grad()
def one_pass_reference(pipe, faces, tokens, steps, guidance_scale, seed):
    """The reference algorithm written out: noise for every frame at once, then windows of 16."""
    generator = torch.Generator().manual_seed(seed)
    n, side = len(faces), TINY_RESOLUTION // 8
    all_latents = torch.randn((1, 4, 1, side, side), generator=generator).repeat(1, 1, n, 1, 1)
    scheduler = DDIMScheduler.from_pretrained("configs")
    scheduler.set_timesteps(steps)
    mask = load_fixed_mask(TINY_RESOLUTION)
    outputs = []
    for start in range(0, n, 16):
        stop = min(n, start + 16)
        f = stop - start
        pixels, masked, masks = prepare_masks_and_masked_images(faces[start:stop], mask)
        mask_latents = F.interpolate(masks, size=(side, side)).permute(1, 0, 2, 3)[None]
        masked_latents = pipe.vae.encode(masked).latent_dist.sample(generator=generator) * SCALE
        ref_latents = pipe.vae.encode(pixels).latent_dist.sample(generator=generator) * SCALE
        masked_latents = masked_latents.permute(1, 0, 2, 3)[None]
        ref_latents = ref_latents.permute(1, 0, 2, 3)[None]
        audio = torch.cat([torch.zeros_like(tokens[start:stop]), tokens[start:stop]])
        latents = all_latents[:, :, start:stop]
        for t in scheduler.timesteps:
            x = torch.cat([torch.cat([latents] * 2), torch.cat([mask_latents] * 2),
                           torch.cat([masked_latents] * 2), torch.cat([ref_latents] * 2)], dim=1)
            eps_uncond, eps_audio = pipe.unet(x, t, encoder_hidden_states=audio).sample.chunk(2)
            eps = eps_uncond + guidance_scale * (eps_audio - eps_uncond)
            latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
        decoded = pipe.vae.decode(latents[0].permute(1, 0, 2, 3) / SCALE).sample
        outputs.append(decoded * (1 - masks) + pixels * masks)
        assert outputs[-1].shape[0] == f
    return torch.cat(outputs)


def test_clipwise_streaming_equals_one_pass(pipe):
    n, steps, g, seed = 20, 2, 1.5, 1247
    faces, tokens = _faces(n), _tokens(pipe, n)
    expected = one_pass_reference(pipe, faces, tokens, steps, g, seed)

    generator = torch.Generator().manual_seed(seed)
    noise = pipe.initial_noise(TINY_RESOLUTION, generator)
    pipe.scheduler.set_timesteps(steps)
    mask = load_fixed_mask(TINY_RESOLUTION)
    clips = [
        pipe.sync_clip(faces[a:b], tokens[a:b], noise, mask, g, 0.0, generator) for a, b in clip_bounds(n, 16)
    ]
    actual = torch.cat(clips)
    assert actual.shape == (n, 3, TINY_RESOLUTION, TINY_RESOLUTION)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    # The model really changed the mouth (the test could not pass with an identity pipeline).
    pixels = prepare_masks_and_masked_images(faces, mask)[0]
    assert (actual - pixels).abs().amax() > 0.05
    # ... and only the mouth: kept pixels (mask 1) are the input's.
    keep = mask[0] == 1
    torch.testing.assert_close(actual[..., keep], pixels[..., keep])


def test_deep_cache_replays_deep_blocks(pipe):
    n, steps = 8, 4
    faces, tokens = _faces(n), _tokens(pipe, n)
    mask = load_fixed_mask(TINY_RESOLUTION)
    calls = []
    handle = pipe.unet.mid_block.register_forward_hook(lambda *args: calls.append(1))

    def run(interval):
        calls.clear()
        pipe.disable_deepcache() if interval is None else pipe.enable_deepcache(interval)
        generator = torch.Generator().manual_seed(3)
        noise = pipe.initial_noise(TINY_RESOLUTION, generator)
        pipe.scheduler.set_timesteps(steps)
        out = pipe.sync_clip(faces, tokens, noise, mask, 1.5, 0.0, generator)
        return out, len(calls)

    try:
        plain, plain_calls = run(None)
        every, every_calls = run(1)
        cached, cached_calls = run(2)
    finally:
        handle.remove()
        pipe.disable_deepcache()
    assert plain_calls == every_calls == steps
    assert cached_calls == steps // 2
    torch.testing.assert_close(every, plain)
    assert torch.isfinite(cached).all()
    assert not torch.equal(cached, plain)
    # Blocks are put back after a cached step.
    assert type(pipe.unet.mid_block).__name__ != "_Replay"


def test_frame_plan():
    assert output_frame_count(16000, 16000, 25) == 25
    assert output_frame_count(1600, 16000, 25) == 3  # 0.1 s -> 2.5 frames, rounded up
    assert output_frame_count(1, 16000, 25) == 1
    assert [pingpong_index(k, 3) for k in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1]
    assert [pingpong_index(k, 1) for k in range(3)] == [0, 0, 0]
    assert clip_bounds(20, 16) == [(0, 16), (16, 20)]
    assert padded_positions(4, 8) == [0, 1, 2, 3, 3, 2, 1, 0]
    assert padded_positions(1, 3) == [0, 0, 0]


def test_frame_store_roundtrip(tmp_path):
    store = FrameStore(str(tmp_path / "f.bin"), (5, 7, 3), (4, 4, 3))
    frames = [np.full((5, 7, 3), i, np.uint8) for i in range(3)]
    store.append(frames[0], np.ones((4, 4, 3), np.uint8), np.arange(6, dtype=np.float32).reshape(2, 3))
    store.append(frames[1], None, None)
    store.append(frames[2], np.zeros((4, 4, 3), np.uint8), np.eye(2, 3, dtype=np.float32))
    frame, face, matrix = store.read(0)
    assert (frame == 0).all() and (face == 1).all() and matrix.tolist() == [[0, 1, 2], [3, 4, 5]]
    frame, face, matrix = store.read(1)
    assert (frame == 1).all() and face is None and matrix is None
    assert store.read(2)[2].tolist() == [[1, 0, 0], [0, 1, 0]]
    store.close()
    assert not (tmp_path / "f.bin").exists()


# ---------------------------------------------------------------------------- overlapped stages, samplers


class _RecordingWriter(VideoWriter):
    """The pipeline's encoder, keeping a copy of every frame it is given (the arrays before encoding)."""

    frames: list[np.ndarray] = []

    def write(self, frame: np.ndarray) -> None:
        type(self).frames.append(np.array(frame))
        super().write(frame)


def _sync_video(pipe, media, out, **options) -> None:
    detector = make_face_detector("mediapipe")
    try:
        pipe(media["video"], media["audio"], out, face_detector=detector, num_inference_steps=2,
             generator=torch.Generator().manual_seed(5), temp_dir=out.parent, **options)
    finally:
        detector.close()


def _run_frames(pipe, media, out, monkeypatch, **options) -> list[np.ndarray]:
    _RecordingWriter.frames = []
    monkeypatch.setattr(lipsync_pipeline, "VideoWriter", _RecordingWriter)
    _sync_video(pipe, media, out, **options)
    return _RecordingWriter.frames


def test_overlapped_stages_write_the_same_frames_as_sequential(pipe, media, tmp_path, monkeypatch):
    # 3 s = 75 frames: five clips, three frames without a face; alignment, denoising and restore overlap.
    sequential = _run_frames(pipe, media, tmp_path / "sequential.mp4", monkeypatch, overlap_stages=False)
    overlapped = _run_frames(pipe, media, tmp_path / "overlapped.mp4", monkeypatch, overlap_stages=True)
    assert len(sequential) == len(overlapped) == 75
    for a, b in zip(sequential, overlapped):
        np.testing.assert_array_equal(a, b)
    source = list(VideoReader(media["video"]))
    assert max(np.abs(a.astype(int) - s).max() for a, s in zip(sequential, source)) > 20  # mouths were changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlapped.mp4", "sequential.mp4"]  # no leftovers


def test_error_in_the_restore_thread_is_raised_as_is_and_leaves_nothing(pipe, media, tmp_path, monkeypatch):
    error = OSError(28, "No space left on device")

    class FailingWriter(VideoWriter):
        def write(self, frame):
            if self.frames_written == 20:  # in the second clip, while the third is being denoised
                raise error
            super().write(frame)

    monkeypatch.setattr(lipsync_pipeline, "VideoWriter", FailingWriter)
    before = threading.active_count()
    with pytest.raises(OSError) as caught:
        _sync_video(pipe, media, tmp_path / "out.mp4")
    assert caught.value is error
    assert list(tmp_path.iterdir()) == []  # no output, no temp file, no work folder
    assert threading.active_count() == before


def test_error_in_the_detection_thread_is_raised_as_is_and_leaves_nothing(pipe, media, tmp_path, monkeypatch):
    error = RuntimeError("detector crashed")
    detect_batch = lipsync_pipeline._CountingDetector.detect_batch
    seen = []

    def failing(self, frames, consecutive=True):
        seen.append(threading.current_thread().name)
        if len(seen) == 3:  # mid-video, with the sync pass already under way behind it
            raise error
        return detect_batch(self, frames, consecutive)

    monkeypatch.setattr(lipsync_pipeline._CountingDetector, "detect_batch", failing)
    before = threading.active_count()
    with pytest.raises(RuntimeError) as caught:
        _sync_video(pipe, media, tmp_path / "out.mp4")
    assert caught.value is error
    assert set(seen) == {"faces"}  # detection ran in its own thread
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before


@pytest.mark.parametrize("overlap_stages", [False, True], ids=["sequential", "overlapped"])
def test_a_video_without_a_face_fails_when_detection_ends_and_leaves_nothing(pipe, media, tmp_path, monkeypatch,
                                                                                 overlap_stages):
    monkeypatch.setattr(lipsync_pipeline._CountingDetector, "detect_batch", lambda self, frames, consecutive=True:
                        [[] for _ in frames])
    written = []
    monkeypatch.setattr(VideoWriter, "write", lambda self, frame: written.append(frame))
    before = threading.active_count()
    with pytest.raises(lipsync_pipeline.NoFaceError, match="no face found in any of the 75 frames"):
        _sync_video(pipe, media, tmp_path / "out.mp4", overlap_stages=overlap_stages)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == before
    if not overlap_stages:
        assert written == []  # detection finished before anything was synced


def test_dpm_solver_restarts_its_history_every_clip(pipe):
    n, steps = 8, 3
    faces, tokens = _faces(n), _tokens(pipe, n)
    mask = load_fixed_mask(TINY_RESOLUTION)
    ddim = pipe.scheduler
    pipe.scheduler = make_scheduler("dpm++")
    try:
        assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
        pipe.scheduler.set_timesteps(steps)

        def clip():
            generator = torch.Generator().manual_seed(3)
            noise = pipe.initial_noise(TINY_RESOLUTION, generator)
            return pipe.sync_clip(faces, tokens, noise, mask, 1.5, 0.0, generator)

        first, second = clip(), clip()  # the second clip would run past the solver's last step without a restart
        torch.testing.assert_close(second, first, rtol=0, atol=0)
        with pytest.raises(ValueError, match="eta"):
            generator = torch.Generator().manual_seed(3)
            pipe.sync_clip(faces, tokens, pipe.initial_noise(TINY_RESOLUTION, generator), mask, 1.5, 0.5, generator)
    finally:
        pipe.scheduler = ddim
    pipe.scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(3)
    with_ddim = pipe.sync_clip(faces, tokens, pipe.initial_noise(TINY_RESOLUTION, generator), mask, 1.5, 0.0, generator)
    assert (with_ddim - first).abs().amax() > 1e-3  # a different sampler gives a (slightly) different face
