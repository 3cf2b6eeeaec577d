"""What every training data set over preprocessed face videos shares (SyncNet now, the U-Net next).

* Video lists: a file list (one path per line) or a folder searched recursively.
* Draws: a sample is a pure function of ``(seed, epoch, index)``, so runs are reproducible
  whatever the number of loader workers, and a resumed run sees the batches it would have seen.
* Broken files: a video that cannot give a sample raises :class:`SkipVideo` (or ``MediaError``)
  inside ``_sample``; it is logged once with its reason and another video is drawn, so one bad
  file never ends an epoch (nor desynchronises the ranks of a distributed run).
* Caches: decoded, resized frames in memory (``frame_cache_size`` videos, least recently used
  first out) and mel spectrograms on disk, keyed by the file's contents and the audio config,
  as the Whisper feature cache is (see :mod:`latentsync.utils.content_cache`).
* Order: :class:`ShardedEpochSampler` deals each epoch's permutation over the ranks and
  resumes mid-epoch; :func:`validation_keys` gives the fixed draws of a validation set.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from typing import Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from latentsync.audio.mel import load_audio_config, melspectrogram
from latentsync.errors import ConfigError, LatentSyncError, MediaError, SkipVideo
from latentsync.media.audio import load_audio
from latentsync.media.reader import VideoReader
from latentsync.utils.content_cache import cache_key, sha256_file
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)

VIDEO_EXTENSION = ".mp4"
_MEL_CACHE_VERSION = "1"


# --------------------------------------------------------------------------- video lists


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
        raise ConfigError("set a file list (data.*_fileslist) or a folder (data.*_data_dir) for the training data")
    if not paths:
        raise ConfigError(f"no videos listed in {source}")
    return paths


# --------------------------------------------------------------------------- data set base


class VideoClipDataset(Dataset):
    """Seeded draws from face videos with skip-and-redraw, a frame cache and a mel cache.

    Subclasses implement ``_sample(rng, video_index) -> dict`` and index with ``i`` or
    ``(epoch, i)``. Frames are resized to ``resolution`` squares (uint8, H x W x 3) and, with
    ``crop_lower_half``, cut to their lower half.
    """

    def __init__(
        self,
        video_paths: Sequence[str],
        *,
        resolution: int = 256,
        crop_lower_half: bool = False,
        video_fps: float = 25,
        audio_sample_rate: int = 16000,
        audio_config: Mapping | None = None,
        mel_cache_dir: str | None = None,
        frame_cache_size: int = 0,
        seed: int = 0,
        max_attempts: int = 50,
    ):
        if not video_paths:
            raise ConfigError(f"the {type(self).__name__} has no videos")
        self.video_paths = list(video_paths)
        self.resolution = resolution
        self.crop_lower_half = crop_lower_half
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
        self.frame_cache_size = frame_cache_size
        self.seed = seed
        self.max_attempts = max_attempts
        self._mels: dict[str, np.ndarray] = {}
        self._frames: OrderedDict[str, np.ndarray] = OrderedDict()
        self._skipped: dict[str, str] = {}

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

    def _sample(self, rng: np.random.Generator, video_index: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @property
    def skipped(self) -> dict[str, str]:
        """Paths this copy of the data set has given up on, with the reason (per loader worker)."""
        return dict(self._skipped)

    def _skip(self, path: str, reason: str) -> None:
        self._skipped[path] = reason
        brief = " | ".join(line.strip() for line in reason.splitlines() if line.strip())
        logger.warning("skipping %s: %s", path, brief[:400])

    # ----------------------------------------------------------------- frames

    def video(self, path: str) -> tuple[int, np.ndarray | None]:
        """(frame count, all processed frames if the frame cache holds them, else None)."""
        if self.frame_cache_size <= 0:
            return len(VideoReader(path, fps=self.video_fps)), None
        frames = self._frames.get(path)
        if frames is None:
            frames = self.decode(path, None)
            self._frames[path] = frames
            while len(self._frames) > self.frame_cache_size:
                self._frames.popitem(last=False)
        self._frames.move_to_end(path)
        return len(frames), frames

    def decode(self, path: str, stop: int | None) -> np.ndarray:
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
        """Cache file of ``path``'s mel: keyed by the file's bytes and the audio config."""
        if not self.mel_cache_dir:
            return None
        settings = json.dumps(self.audio_config, sort_keys=True)
        key = cache_key(_MEL_CACHE_VERSION, "file:" + sha256_file(path), settings)
        return os.path.join(self.mel_cache_dir, f"{key}_mel.npy")

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


# --------------------------------------------------------------------------- order of draws


def validation_keys(dataset_size: int, num_samples: int) -> list[tuple[int, int]]:
    """Fixed ``(epoch, index)`` draws covering every video in turn: the same pairs at every evaluation."""
    return [divmod(i, dataset_size) for i in range(num_samples)]


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
