"""U-Net training samples: a clip of face frames, its masked copy and mask, a reference clip, and audio.

Sampling rule (the reference's): pick a video of at least ``3 * num_frames`` frames, a clip start
``s`` uniformly, and a reference start ``r`` of the same video whose clip does not overlap the
target clip (``|r - s| >= num_frames``). The reference clip shows the same person with other
mouth shapes, so the model must take the mouth from the audio, not copy it.

Audio comes in two forms:

* ``audio_embeds`` (num_frames, tokens, width): Whisper features of the whole video's audio from
  the project's :class:`~latentsync.whisper.audio2feature.Audio2Feature`, computed once per video
  and cached on disk keyed by content (the same cache inference uses), then cut per frame with
  ``audio_feat_length`` (:meth:`Audio2Feature.crop_overlap_audio_window`);
* ``mel`` (1, num_mels, 52 for 16 frames): the mel window of the clip, for the sync loss.

Video lists, seeded draws, skip-and-redraw of broken or too-short files (logged with the reason,
never an exception in the epoch) and the frame and mel caches come from
:class:`latentsync.data.video_dataset.VideoClipDataset`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from latentsync.audio.mel import last_valid_start_frame, load_audio_config, mel_window
from latentsync.data.video_dataset import VideoClipDataset, read_video_paths
from latentsync.errors import ConfigError, SkipVideo
from latentsync.face.mask import load_fixed_mask, prepare_masks_and_masked_images, process_images
from latentsync.paths import AUDIO_CONFIG, DEFAULT_MASK_PATH
from latentsync.whisper.audio2feature import FEATURE_FPS, Audio2Feature

MIN_WINDOWS = 3  # a video must hold three clips: the target and a non-overlapping reference on either side


def draw_clip_starts(
    rng: np.random.Generator, num_video_frames: int, num_frames: int, last_start: int | None = None
) -> tuple[int, int] | None:
    """``(target start, reference start)``, or None when the video is shorter than three clips.

    The target starts anywhere up to ``last_start`` (default: the last full clip; less when the
    audio ends earlier); the reference anywhere its clip does not overlap the target's.
    """
    if num_video_frames < MIN_WINDOWS * num_frames:
        return None
    last_clip = num_video_frames - num_frames
    last_start = last_clip if last_start is None else min(last_start, last_clip)
    if last_start < 0:
        return None
    start = int(rng.integers(last_start + 1))
    candidates = np.arange(last_clip + 1)
    candidates = candidates[np.abs(candidates - start) >= num_frames]
    return start, int(candidates[rng.integers(len(candidates))])


def last_start_with_features(num_features: int, num_frames: int, fps: float = 25) -> int:
    """Largest clip start whose last frame's 50 Hz feature centre still lies inside the audio."""
    return int((num_features - 1) * fps / FEATURE_FPS) - (num_frames - 1)


class UNetDataset(VideoClipDataset):
    """Training samples for the U-Net; index with ``i`` or ``(epoch, i)``.

    A sample is a dict of float32 tensors in [-1, 1] unless noted:
    ``gt_pixel_values``, ``masked_pixel_values``, ``ref_pixel_values`` (num_frames, 3, r, r);
    ``masks`` (num_frames, 1, r, r), 1 = keep; ``audio_embeds`` (num_frames, tokens, width)
    when an ``audio_encoder`` is given; ``mel`` (1, num_mels, columns) with ``load_mel``; and
    the provenance ``video_index``, ``start_idx``, ``ref_start_idx`` (int64).
    """

    def __init__(
        self,
        video_paths: Sequence[str],
        *,
        num_frames: int = 16,
        mask_image_path: str = str(DEFAULT_MASK_PATH),
        audio_encoder: Audio2Feature | None = None,
        load_mel: bool = False,
        **clip_options,
    ):
        """``clip_options``: resolution, video_fps, audio_sample_rate, audio_config, mel_cache_dir,
        frame_cache_size, seed, max_attempts (see :class:`VideoClipDataset`)."""
        super().__init__(video_paths, **clip_options)
        if audio_encoder is not None and (self.video_fps != 25 or audio_encoder.num_frames != num_frames):
            raise ConfigError(
                f"audio embeddings are cut for {audio_encoder.num_frames}-frame clips of 25 fps video; "
                f"this data set has {num_frames}-frame clips at {self.video_fps} fps"
            )
        self.num_frames = num_frames
        self.mask = load_fixed_mask(self.resolution, mask_image_path)
        self.audio_encoder = audio_encoder
        self.load_mel = load_mel

    @classmethod
    def from_config(
        cls,
        data: Mapping,
        audio_encoder: Audio2Feature | None,
        load_mel: bool,
        seed: int = 0,
        video_paths: Sequence[str] | None = None,
    ) -> "UNetDataset":
        """Build from the ``data`` section of a U-Net config, on ``video_paths`` or its file list / folder."""
        paths = video_paths or read_video_paths(data.get("train_fileslist"), data.get("train_data_dir"))
        plain = {key: data[key] for key in ("num_frames", "resolution", "mask_image_path", "video_fps", "audio_sample_rate")}
        return cls(
            paths,
            audio_encoder=audio_encoder,
            load_mel=load_mel,
            audio_config=load_audio_config(data.get("audio_config", AUDIO_CONFIG)),
            mel_cache_dir=data.get("audio_mel_cache_dir") or None,
            frame_cache_size=data.get("frame_cache_size", 0),
            seed=seed,
            **plain,
        )

    def _sample(self, rng: np.random.Generator, video_index: int) -> dict[str, torch.Tensor]:
        path = self.video_paths[video_index]
        num_video_frames, frames = self.video(path)
        if num_video_frames < MIN_WINDOWS * self.num_frames:
            raise SkipVideo(f"too short: {num_video_frames} frames, need {MIN_WINDOWS * self.num_frames}")
        last_start = num_video_frames - self.num_frames
        mel = features = None
        if self.load_mel:
            mel = self.mel(path)
            last_start = min(last_start, last_valid_start_frame(mel.shape[1], self.num_frames, self.video_fps, self.mel_fps))
        if self.audio_encoder is not None:
            features = self.audio_encoder.audio2feat(path)
            last_start = min(last_start, last_start_with_features(len(features), self.num_frames, self.video_fps))
        starts = draw_clip_starts(rng, num_video_frames, self.num_frames, last_start)
        if starts is None:
            raise SkipVideo(f"the audio ends before the first clip of {self.num_frames} frames does")
        start, ref_start = starts

        if frames is None:
            frames = self.decode(path, max(start, ref_start) + self.num_frames)
        clip = frames[start : start + self.num_frames]
        ref_clip = frames[ref_start : ref_start + self.num_frames]
        if len(clip) != self.num_frames or len(ref_clip) != self.num_frames:
            raise SkipVideo(f"decoded {len(frames)} frames where the header promised {num_video_frames}")
        gt, masked, masks = prepare_masks_and_masked_images(clip, self.mask)
        sample = {
            "gt_pixel_values": gt,
            "masked_pixel_values": masked,
            "masks": masks,
            "ref_pixel_values": process_images(ref_clip, self.resolution),
            "video_index": torch.tensor(video_index),
            "start_idx": torch.tensor(start),
            "ref_start_idx": torch.tensor(ref_start),
        }
        if mel is not None:
            window = mel_window(mel, start, self.num_frames, self.video_fps, self.mel_fps)
            sample["mel"] = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))
        if features is not None:
            sample["audio_embeds"] = self.audio_encoder.crop_overlap_audio_window(features, start)
        return sample

