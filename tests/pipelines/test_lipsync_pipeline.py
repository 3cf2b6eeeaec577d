"""LipsyncPipeline at tensor level on tiny random-weight models (CPU).

The key property: processing clip by clip (what the video runner streams, one call per clip)
equals the reference's one-pass algorithm, which draws the noise for all frames at once and
slices it per window. Sampling options are call arguments: nothing of a call stays on the pipeline.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from latentsync.errors import LatentSyncError
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images
from latentsync.pipelines.frame_plan import (
    FrameStore, clip_bounds, face_donors, output_frame_count, padded_positions, pingpong_index,
)
from latentsync.pipelines.lipsync_pipeline import LipsyncPipeline
from latentsync.pipelines.loading import load_pipeline
from latentsync.pipelines.sampling import Sampling
from tests.tiny_models import TINY_RESOLUTION

SCALE = 0.18215


def sampling(steps: int, scheduler: str = "ddim", guidance_scale: float = 1.5, deepcache: int | None = None,
             eta: float = 0.0) -> Sampling:
    return Sampling(steps, scheduler, guidance_scale, deepcache is not None, deepcache or 1, eta)


@pytest.fixture(scope="module")
def pipe(tiny_models) -> LipsyncPipeline:
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
    mask = load_fixed_mask(TINY_RESOLUTION)
    clips = [pipe(faces[a:b], tokens[a:b], noise, mask, sampling(steps, guidance_scale=g), generator)
             for a, b in clip_bounds(n, 16)]
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
        generator = torch.Generator().manual_seed(3)
        noise = pipe.initial_noise(TINY_RESOLUTION, generator)
        out = pipe(faces, tokens, noise, mask, sampling(steps, deepcache=interval), generator)
        return out, len(calls)

    modules = dict(pipe.unet.named_modules())
    try:
        plain, plain_calls = run(None)
        every, every_calls = run(1)
        cached, cached_calls = run(2)
        again, _ = run(None)
    finally:
        handle.remove()
    assert plain_calls == every_calls == steps
    assert cached_calls == steps // 2
    torch.testing.assert_close(every, plain)
    assert torch.isfinite(cached).all()
    assert not torch.equal(cached, plain)
    # The cache lived in the call: the model is untouched (same modules, no hooks), the next call plain again.
    assert dict(pipe.unet.named_modules()) == modules
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in pipe.unet.modules())
    torch.testing.assert_close(again, plain, rtol=0, atol=0)


def test_frame_plan():
    assert output_frame_count(16000, 16000, 25) == 25
    assert output_frame_count(1600, 16000, 25) == 3  # 0.1 s -> 2.5 frames, rounded up
    assert output_frame_count(1, 16000, 25) == 1
    assert [pingpong_index(k, 3) for k in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1]
    assert [pingpong_index(k, 1) for k in range(3)] == [0, 0, 0]
    assert clip_bounds(20, 16) == [(0, 16), (16, 20)]
    assert padded_positions(4, 8) == [0, 1, 2, 3, 3, 2, 1, 0]
    assert padded_positions(1, 3) == [0, 0, 0]
    # Frames without a face use the nearest one with a face (the earlier on a tie); none: nothing to sync.
    assert face_donors([False, True, False, False, True, False]) == [1, 1, 1, 4, 4, 4]
    assert face_donors([True, False, True]) == [0, 0, 2]
    assert face_donors([False, False]) is None


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


# ---------------------------------------------------------------------------- samplers


def test_dpm_solver_restarts_its_history_every_clip(pipe):
    n, steps = 8, 3
    faces, tokens = _faces(n), _tokens(pipe, n)
    mask = load_fixed_mask(TINY_RESOLUTION)

    def clip(options):
        generator = torch.Generator().manual_seed(3)
        noise = pipe.initial_noise(TINY_RESOLUTION, generator)
        return pipe(faces, tokens, noise, mask, options, generator)

    dpm = sampling(steps, "dpm++")
    first, second = clip(dpm), clip(dpm)  # the second clip would run past the solver's last step without a restart
    torch.testing.assert_close(second, first, rtol=0, atol=0)
    with pytest.raises(ValueError, match="eta"):
        clip(sampling(steps, "dpm++", eta=0.5))
    with_ddim = clip(sampling(steps))
    assert (with_ddim - first).abs().amax() > 1e-3  # a different sampler gives a (slightly) different face
    # The sampler belonged to the calls: the pipeline's own (the noise schedule) never ran a step.
    assert type(pipe.scheduler).__name__ == "DDIMScheduler" and pipe.scheduler.num_inference_steps is None


def test_bad_sampling_options_are_refused(pipe):
    faces, tokens = _faces(2), _tokens(pipe, 2)
    noise, mask = pipe.initial_noise(TINY_RESOLUTION, None), load_fixed_mask(TINY_RESOLUTION)
    with pytest.raises(ValueError, match="inference_steps must be between 1 and 999, got 1000"):
        pipe(faces, tokens, noise, mask, sampling(1000))
    with pytest.raises(LatentSyncError, match="unknown scheduler 'euler', choose one of ddim, dpm\\+\\+"):
        pipe(faces, tokens, noise, mask, sampling(2, "euler"))
    with pytest.raises(ValueError, match="2 faces but 1 frames of audio tokens"):
        pipe(faces, tokens[:1], noise, mask, sampling(2))
