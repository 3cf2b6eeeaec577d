"""SyncNet training pairs: a window of face frames and a mel window, in sync (y=1) or not (y=0).

Sampling rule (the reference's): pick a video, an audio window start ``s`` uniformly such that
``num_frames`` frames and their 52 (for 16 frames) mel columns fit, and a second start ``s'``
of the same video with ``|s' - s| >= min_negative_offset`` (1 in the reference: any other
start). The mel window always comes from ``s``; with probability 1/2 the frames come from ``s``
(positive) and otherwise from ``s'``, i.e. the audio is shifted by ``s - s'`` frames away from
the picture (negative). Videos shorter than ``2 * num_frames`` frames are skipped.

Inputs are preprocessed face videos (25 fps, 16 kHz audio, face-aligned squares). Pixel mode
returns frames resized to ``resolution`` in [-1, 1], cut to the lower half when configured.
Latent mode (``latent_space: true``) returns whole frames: the trainer encodes them with the
Stable Diffusion VAE (``vae_path``, scaled by its ``scaling_factor``) and only then keeps the
lower half, see :func:`syncnet_visual_input`.

Every draw is a pure function of ``(seed, epoch, index)``, so runs are reproducible whatever
the number of loader workers, and a resumed run sees exactly the batches it would have seen.
A broken or too-short file is logged once and replaced by another video; it never ends the epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from latentsync.errors import ConfigError, LatentSyncError, MediaError
from latentsync.utils.atomic import atomic_output
from latentsync.utils.audio import MEL_FPS, last_valid_start_frame, load_audio_config, mel_window, melspectrogram
from latentsync.utils.media import VideoReader, load_audio

logger = logging.getLogger(__name__)

VIDEO_EXTENSION = ".mp4"


def gather_video_paths(folder: str | os.PathLike) -> list[str]:
    """Every ``.mp4`` under ``folder``, recursively, in sorted order (files and subfolders interleaved by name)."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"data folder not found: {folder}")
    paths = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            paths += gather_video_paths(path)
        elif name.endswith(VIDEO_EXTENSION):
            paths.append(path)
    return paths


def read_video_paths(fileslist: str | None, data_dir: str | None) -> list[str]:
    """Video paths from a file list (one per line) if given, else from a folder; the reference's precedence."""
    if fileslist:
        if not os.path.isfile(fileslist):
            raise ConfigError(f"file list not found: {fileslist} (write one with `python -m tools.write_fileslist`)")
        with open(fileslist, encoding="utf-8") as f:
            paths = [line.strip() for line in f if line.strip()]
        source = fileslist
    elif data_dir:
        paths, source = gather_video_paths(data_dir), data_dir
    else:
        raise ConfigError("set a file list (data.*_fileslist) or a folder (data.*_data_dir) for the SyncNet data")
    if not paths:
        raise ConfigError(f"no videos listed in {source}")
    return paths


@dataclass(frozen=True)
class Windows:
    """Start frames of one draw: the audio window, the frames shown, and the label."""

    audio_start: int
    frames_start: int
    y: int  # 1 in sync, 0 shifted


def draw_windows(
    rng: np.random.Generator,
    num_video_frames: int,
    num_mel_columns: int,
    num_frames: int = 16,
    min_negative_offset: int = 1,
    fps: float = 25,
    mel_fps: float = MEL_FPS,
) -> Windows | None:
    """Draw the audio start, the negative start and the label; None if the clip is too short for the rule."""
    if num_video_frames < 2 * num_frames:
        return None
    last_frame_start = num_video_frames - num_frames
    last_audio_start = min(last_frame_start, last_valid_start_frame(num_mel_columns, num_frames, fps, mel_fps))
    if last_audio_start < 0:
        return None
    starts = np.arange(last_frame_start + 1)
    for _ in range(8):  # a start with no far-enough partner is rare; redraw it
        audio_start = int(rng.integers(last_audio_start + 1))
        others = starts[np.abs(starts - audio_start) >= max(1, min_negative_offset)]
        if len(others):
            break
    else:
        return None
    shifted = int(others[rng.integers(len(others))])
    y = int(rng.integers(2))
    return Windows(audio_start, audio_start if y else shifted, y)


class SkipVideo(LatentSyncError):
    """A video cannot give a sample (unreadable, too short, no audio); the data set draws another."""


class SyncNetDataset(Dataset):
    """(frames, mel window, label) samples from face videos; index with ``i`` or ``(epoch, i)``.

    A sample is a dict: ``frames`` float32 (num_frames, 3, H, W) in [-1, 1] (H = resolution
    or half of it), ``audio_samples`` float32 (1, num_mels, mel columns), ``y`` float32 (1,),
    and the provenance ``video_index``, ``audio_start``, ``frames_start`` (int64).
    """

    def __init__(
        self,
        video_paths: Sequence[str],
        *,
        num_frames: int = 16,
        resolution: int = 256,
        lower_half: bool = True,
        latent_space: bool = False,
        video_fps: float = 25,
        audio_sample_rate: int = 16000,
        audio_config: Mapping | None = None,
        mel_cache_dir: str | None = None,
        min_negative_offset: int = 1,
        frame_cache_size: int = 0,
        seed: int = 0,
        max_attempts: int = 50,
    ):
        if not video_paths:
            raise ConfigError("the SyncNet data set has no videos")
        self.video_paths = list(video_paths)
        self.num_frames = num_frames
        self.resolution = resolution
        self.crop_lower_half = lower_half and not latent_space  # latents are cut after encoding
        self.video_fps = video_fps
        self.audio_sample_rate = audio_sample_rate
        self.audio_config = dict(audio_config) if audio_config is not None else dict(load_audio_config())
        if self.audio_config["sample_rate"] != audio_sample_rate:
            raise ConfigError(
                f"data.audio_sample_rate {audio_sample_rate} differs from the audio config's {self.audio_config['sample_rate']}"
            )
        self.mel_fps = audio_sample_rate / self.audio_config["hop_size"]
        self.mel_cache_dir = mel_cache_dir
        if mel_cache_dir:
            os.makedirs(mel_cache_dir, exist_ok=True)
        self.min_negative_offset = min_negative_offset
        self.frame_cache_size = frame_cache_size
        self.seed = seed
        self.max_attempts = max_attempts
        self._audio_key = hashlib.sha1(json.dumps(self.audio_config, sort_keys=True).encode()).hexdigest()[:12]
        self._mels: dict[str, np.ndarray] = {}
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._skipped: dict[str, str] = {}

    @classmethod
    def from_config(
        cls, data: Mapping, split: str = "train", seed: int = 0, video_paths: Sequence[str] | None = None
    ) -> "SyncNetDataset":
        """Build from the ``data`` section of a SyncNet config, on ``video_paths`` or else the ``split``'s list/folder."""
        paths = video_paths or read_video_paths(data.get(f"{split}_fileslist"), data.get(f"{split}_data_dir"))
        audio_config = load_audio_config(data.get("audio_config", "configs/audio.yaml"))
        return cls(
            paths,
            num_frames=data["num_frames"],
            resolution=data["resolution"],
            lower_half=data["lower_half"],
            latent_space=data["latent_space"],
            video_fps=data["video_fps"],
            audio_sample_rate=data["audio_sample_rate"],
            audio_config=audio_config,
            mel_cache_dir=data.get("audio_mel_cache_dir") or None,
            min_negative_offset=data.get("min_negative_offset", 1),
            frame_cache_size=data.get("frame_cache_size", 0),
            seed=seed,
        )

    def __len__(self) -> int:
        return len(self.video_paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else key
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        video_index = int(index) % len(self)
        for _ in range(self.max_attempts):
            path = self.video_paths[video_index]
            if path not in self._skipped:
                try:
                    return self._sample(rng, video_index)
                except SkipVideo as err:
                    self._skip(path, str(err))
                except MediaError as err:
                    self._skip(path, f"unreadable: {err}")
            video_index = int(rng.integers(len(self)))
        raise LatentSyncError(
            f"no usable video after {self.max_attempts} attempts; skipped so far: "
            + "; ".join(f"{p} ({r})" for p, r in list(self._skipped.items())[:5])
        )

    @property
    def skipped(self) -> dict[str, str]:
        """Paths this copy of the data set has given up on, with the reason (per loader worker)."""
        return dict(self._skipped)

    def _skip(self, path: str, reason: str) -> None:
        self._skipped[path] = reason
        brief = " | ".join(line.strip() for line in reason.splitlines() if line.strip())
        logger.warning("skipping %s: %s", path, brief[:400])

    def _sample(self, rng: np.random.Generator, video_index: int) -> dict[str, torch.Tensor]:
        path = self.video_paths[video_index]
        mel = self.mel(path)
        num_video_frames, frames = self._video(path)
        windows = draw_windows(
            rng, num_video_frames, mel.shape[1], self.num_frames, self.min_negative_offset, self.video_fps, self.mel_fps
        )
        if windows is None:
            raise SkipVideo(
                f"too short: {num_video_frames} frames and {mel.shape[1]} mel columns, "
                f"need {2 * self.num_frames} frames and a full mel window"
            )
        audio = mel_window(mel, windows.audio_start, self.num_frames, self.video_fps, self.mel_fps)
        if frames is None:
            frames = self._decode(path, windows.frames_start + self.num_frames)
        clip = frames[windows.frames_start : windows.frames_start + self.num_frames]
        if len(clip) != self.num_frames:
            raise SkipVideo(f"decoded {len(frames)} frames where the header promised {num_video_frames}")
        # In numpy: small element-wise work is slower through torch's thread pool on a busy CPU.
        pixels = np.ascontiguousarray(clip.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
        return {
            "frames": torch.from_numpy(pixels),
            "audio_samples": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            "y": torch.tensor([float(windows.y)]),
            "video_index": torch.tensor(video_index),
            "audio_start": torch.tensor(windows.audio_start),
            "frames_start": torch.tensor(windows.frames_start),
        }

    # ----------------------------------------------------------------- frames

    def _video(self, path: str) -> tuple[int, np.ndarray | None]:
        """(frame count, all processed frames if cached else None)."""
        if self.frame_cache_size <= 0:
            return len(VideoReader(path, fps=self.video_fps)), None
        frames = self._frames.get(path)
        if frames is None:
            frames = self._decode(path, None)
            self._frames[path] = frames
            while len(self._frames) > self.frame_cache_size:
                self._frames.popitem(last=False)
        self._frames.move_to_end(path)
        return len(frames), frames

    def _decode(self, path: str, stop: int | None) -> np.ndarray:
        """(frames, H, W, 3) uint8 of the first ``stop`` frames (all if None), resized and cropped for the model."""
        out = []
        for k, frame in enumerate(VideoReader(path, fps=self.video_fps)):
            if stop is not None and k >= stop:
                break
            out.append(self._process(frame))
        if not out:
            raise SkipVideo("no frames")
        return np.stack(out)

    def _process(self, frame: np.ndarray) -> np.ndarray:
        size = self.resolution
        if frame.shape[:2] != (size, size):
            shrinking = frame.shape[0] > size or frame.shape[1] > size
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        return frame[size // 2 :] if self.crop_lower_half else frame

    # ----------------------------------------------------------------- audio

    def mel_cache_path(self, path: str) -> str | None:
        """Cache file of ``path``'s mel: keyed by absolute path, size, mtime and the audio config."""
        if not self.mel_cache_dir:
            return None
        stat = os.stat(path)
        key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{self._audio_key}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(self.mel_cache_dir, f"{stem}-{digest}_mel.npy")

    def mel(self, path: str) -> np.ndarray:
        """(num_mels, columns) float32 mel of the video's audio, from memory, the disk cache or ffmpeg."""
        mel = self._mels.get(path)
        if mel is not None:
            return mel
        if not os.path.isfile(path):
            raise MediaError(f"video file not found: {path!r}")
        cache = self.mel_cache_path(path)
        if cache and os.path.isfile(cache):
            try:
                mel = np.load(cache, allow_pickle=False)
            except (OSError, ValueError, EOFError) as err:
                logger.warning("mel cache %s is unreadable (%s); recomputing it", cache, err)
        if mel is None:
            mel = melspectrogram(load_audio(path, self.audio_sample_rate), self.audio_config).astype(np.float32)
            if cache:
                with atomic_output(cache) as tmp, open(tmp, "wb") as f:
                    np.save(f, mel)
        self._mels[path] = mel
        return mel


def syncnet_visual_input(
    frames: torch.Tensor, lower_half: bool, vae: torch.nn.Module | None = None, scaling_factor: float = 0.18215
) -> torch.Tensor:
    """Stack a batch of frames (b, f, 3, H, W) into the visual encoder's (b, f*c, h, w) input.

    Pixel mode: frames are used as they are (the data set already cut the lower half).
    Latent mode: each frame is encoded by ``vae`` (sampled, times ``scaling_factor``) and the
    lower half of the latent is kept when ``lower_half``, as in the reference.
    """
    b, f = frames.shape[:2]
    if vae is not None:
        flat = frames.flatten(0, 1).to(dtype=next(vae.parameters()).dtype)
        with torch.no_grad():
            latents = vae.encode(flat).latent_dist.sample() * scaling_factor
        frames = latents.unflatten(0, (b, f)).to(frames.dtype)
        if lower_half:
            frames = frames[..., frames.shape[-2] // 2 :, :]
    return frames.flatten(1, 2)


class ShardedEpochSampler(Sampler):
    """Endless ``(epoch, index)`` keys: each epoch a seeded permutation, rank ``r`` of ``n`` taking every n-th.

    Starting at ``start`` (keys already consumed by this rank) resumes mid-epoch exactly. Each
    epoch is padded by wrapping so every rank gets ``ceil(len / n)`` keys, like DistributedSampler.
    """

    def __init__(self, dataset_size: int, rank: int = 0, num_replicas: int = 1, seed: int = 0, start: int = 0, shuffle: bool = True):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.dataset_size = dataset_size
        self.rank, self.num_replicas = rank, num_replicas
        self.seed, self.start, self.shuffle = seed, start, shuffle
        self.per_rank = -(-dataset_size // num_replicas)

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's dataset indices for ``epoch``."""
        if self.shuffle:
            order = torch.randperm(self.dataset_size, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
        else:
            order = list(range(self.dataset_size))
        total = self.per_rank * self.num_replicas
        order = (order * (total // len(order) + 1))[:total]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        while True:
            for index in self.epoch_indices(epoch)[offset:]:
                yield epoch, index
            epoch, offset = epoch + 1, 0
