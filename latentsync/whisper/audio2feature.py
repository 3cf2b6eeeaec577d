"""Whisper encoder features for audio conditioning: per-layer embeddings at 50 Hz, cut per video frame.

Built on the PyPI ``openai-whisper`` package. The encoder's activations are tapped with
forward hooks: index 0 is the input of the first transformer block (convolutions, GELU,
positional embedding), index k the residual stream after block k. ``ln_post`` is not
applied. A ``tiny`` model (4 blocks, width 384) gives (T, 5, 384) features, and every video
frame gets a chunk of 10 feature frames x 5 layers = 50 rows.

Audio longer than 30 s does not fit one encoder pass. ``windows="upstream"`` cuts the
log-mel into consecutive 30 s windows exactly like the reference, so features change
abruptly every 30 s. ``windows="overlap"`` (default) encodes 30 s windows every 20 s,
takes each feature frame from the window it is most central in and cross-fades over 4 s
at the boundaries; see :func:`window_plan`. Up to 30 s both modes are identical.
``windows="stream"`` slides a 30 s window with the audio and gives every feature a fixed 200 ms
of audio to its right, so a live stream computes the same features as an offline run
(:mod:`latentsync.whisper.stream_windows`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import whisper
from whisper.audio import HOP_LENGTH, N_FRAMES, SAMPLE_RATE

from latentsync import paths
from latentsync.errors import CheckpointError, MediaError
from latentsync.media.audio import load_audio
from latentsync.models.checkpoint import load_weights_file
from latentsync.utils.content_cache import cache_key, sha256_file
from latentsync.utils.device import pick_device
from latentsync.utils.files import atomic_output

logger = logging.getLogger(__name__)

FEATURE_FPS = 50  # encoder frames per second: one per 2 mel frames of 10 ms
WINDOW_MEL_FRAMES = N_FRAMES  # 3000 mel frames = 30 s, the encoder's fixed input length
OVERLAP_HOP_MEL_FRAMES = 2000  # 20 s between overlapping windows (even: whole feature frames)
CROSSFADE_FEATURE_FRAMES = 200  # 4 s blend across each boundary of overlapping windows
MEL_PAD_VALUE = 0.0  # right padding of a short window, in the normalised log-mel domain
WINDOW_MODES = ("overlap", "upstream", "stream")
FIXED_WINDOW_MODES = ("overlap", "upstream")  # the modes of window_plan
_CACHE_VERSION = "1"


# --------------------------------------------------------------------------- pure numerics


@dataclass(frozen=True)
class Window:
    """One encoder pass over mel frames [mel_start, mel_start + mel_frames) (right-padded to 30 s).

    The window owns feature frames [keep_start, keep_end) (global 50 Hz indices). Across an
    inner boundary the output fades linearly between neighbouring windows over ``fade``
    frames centred on the boundary (0 = hard cut).
    """

    mel_start: int
    mel_frames: int
    keep_start: int
    keep_end: int
    fade: int = 0

    def weights(self) -> tuple[int, torch.Tensor]:
        """(first feature index, per-frame weights) of this window's contribution to the output.

        The weights of neighbouring windows sum to 1 on every frame.
        """
        first = max(self.keep_start - self.fade // 2, self.mel_start // 2)
        last = min(self.keep_end + self.fade // 2, (self.mel_start + self.mel_frames) // 2)
        t = torch.arange(first, last, dtype=torch.float64) + 0.5
        w = torch.ones_like(t)
        if self.fade and self.keep_start > 0:
            w = w * ((t - self.keep_start) / self.fade + 0.5).clamp(0, 1)
        if self.fade and self.keep_end < last:
            w = w * ((self.keep_end - t) / self.fade + 0.5).clamp(0, 1)
        return first, w


def window_plan(num_mel_frames: int, mode: str = "overlap") -> list[Window]:
    """Which 30 s windows to encode and how their features combine.

    Both modes give num_mel_frames // 2 feature frames, and a single identical window for
    audio up to 30 s (3000 mel frames).

    - ``upstream``: windows start at 0, 3000, 6000, ... mel frames; each contributes its
      first int(frames_in_window / 2) features, cut hard (the reference's behaviour).
    - ``overlap``: windows start every 2000 mel frames (20 s) until one reaches the end.
      The boundary between windows j-1 and j lies halfway between their centres (feature
      frame 1000 j + 250); each frame comes from the window it is most central in, except
      within 100 frames (2 s) of a boundary, where the two windows are blended linearly.
      Every frame thus has at least 3 s of context on both sides (where the audio has it),
      and the positional embedding, which restarts in every window, changes gradually.
    """
    if mode not in FIXED_WINDOW_MODES:
        raise ValueError(f"no fixed windows in mode {mode!r}, choose one of {', '.join(FIXED_WINDOW_MODES)}")
    total = num_mel_frames // 2
    hop = WINDOW_MEL_FRAMES if mode == "upstream" else OVERLAP_HOP_MEL_FRAMES
    fade = 0 if mode == "upstream" else CROSSFADE_FEATURE_FRAMES
    starts = [0]
    while starts[-1] + WINDOW_MEL_FRAMES < num_mel_frames:
        starts.append(starts[-1] + hop)
    windows = []
    for j, start in enumerate(starts):
        frames = min(WINDOW_MEL_FRAMES, num_mel_frames - start)
        if mode == "upstream":
            keep_start = start // 2
            keep_end = keep_start + frames // 2
        else:
            # Boundaries lie halfway between neighbouring window centres (start / 2 + 750).
            keep_start = 0 if j == 0 else (starts[j - 1] + start + WINDOW_MEL_FRAMES) // 4
            keep_end = total if j == len(starts) - 1 else (start + starts[j + 1] + WINDOW_MEL_FRAMES) // 4
        windows.append(Window(start, frames, keep_start, keep_end, fade))
    return windows


def num_chunks(num_features: int, fps: float = 25) -> int:
    """Chunks produced for ``num_features`` 50 Hz features: frames are added until the centre
    index int(i * 50 / fps) exceeds ``num_features``, inclusive (the reference's count;
    floor(L / 2) + 2 at 25 fps, which the pipeline matches by looping the video)."""
    i = 0
    while int(i * FEATURE_FPS / fps) <= num_features:
        i += 1
    return i + 1


def chunk_indices(
    frame: int, num_features: int, fps: float = 25, audio_feat_length: Sequence[int] = (2, 2)
) -> list[int]:
    """Feature frames used by video frame ``frame``: centre c = int(frame * 50 / fps), then
    c - 2*before ... c + 2*(after + 1) - 1, clamped to [0, num_features - 1]
    (c-4 ... c+5 with the default (2, 2): 80 ms before the centre, 120 ms from it)."""
    before, after = audio_feat_length
    centre = int(frame * FEATURE_FPS / fps)
    return [min(max(k, 0), num_features - 1) for k in range(centre - 2 * before, centre + 2 * (after + 1))]


# --------------------------------------------------------------------------- encoder


def _load_whisper(path: str) -> tuple[whisper.model.AudioEncoder, whisper.model.ModelDimensions]:
    """The encoder of an openai-whisper checkpoint (``dims`` + ``model_state_dict``) and its dimensions.

    Only the encoder is built (the decoder is never used), on the meta device: its tensors are the
    file's, loaded strictly, none initialised first. The file is read with :func:`load_weights_file`,
    so a wrong one gets a message that names it.
    """
    checkpoint = load_weights_file(path, "whisper checkpoint")
    if not isinstance(checkpoint, dict) or not {"dims", "model_state_dict"} <= checkpoint.keys():
        raise CheckpointError(
            f"{path!r} is not an openai-whisper checkpoint (it lacks 'dims' and 'model_state_dict'); "
            "pass checkpoints/whisper/tiny.pt or another openai-whisper .pt file"
        )
    try:
        dims = whisper.model.ModelDimensions(**checkpoint["dims"])
        with torch.device("meta"):
            encoder = whisper.model.AudioEncoder(
                dims.n_mels, dims.n_audio_ctx, dims.n_audio_state, dims.n_audio_head, dims.n_audio_layer
            )
        state = {k.removeprefix("encoder."): v for k, v in checkpoint["model_state_dict"].items() if k.startswith("encoder.")}
        # Takes the checkpoint's own positional-embedding buffer (float16-rounded sinusoids), which
        # the features depend on; recomputing it would shift them by ~1e-3.
        encoder.load_state_dict(state, assign=True)
    except (TypeError, RuntimeError) as err:
        raise CheckpointError(f"whisper checkpoint {path!r} does not match its own dims: {err}") from err
    return encoder, dims


class Audio2Feature:
    """Whisper encoder features (T, layers, width) at 50 Hz and their per-video-frame chunks."""

    def __init__(
        self,
        model_path: str | os.PathLike = paths.DEFAULT_WHISPER,
        device: str | torch.device | None = None,
        num_frames: int = 16,
        audio_feat_length: Sequence[int] = (2, 2),
        windows: str = "overlap",
        cache_dir: str | os.PathLike | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int = 4,
    ):
        """Load the whisper checkpoint at ``model_path`` onto ``device`` (default: best available).

        ``dtype`` is the encoder's precision (the reference runs float16 on CUDA, float32 on
        CPU); features are always returned as float32 on the CPU. ``windows`` and ``cache_dir`` (the
        on-disk feature cache) are the defaults of :meth:`audio2feat`, which may choose per call.
        ``batch_size`` windows of 30 s are encoded per pass.
        """
        if windows not in WINDOW_MODES:
            raise ValueError(f"unknown windows mode {windows!r}, choose one of {', '.join(WINDOW_MODES)}")
        self.model_path = os.fspath(model_path)
        if not os.path.isfile(self.model_path):
            raise CheckpointError(
                f"whisper checkpoint not found: {self.model_path!r} (run setup_env.sh to download whisper/tiny.pt)"
            )
        self.device = torch.device(device) if device is not None else pick_device("auto")
        encoder, dims = _load_whisper(self.model_path)
        self.encoder = encoder.to(self.device, dtype).eval()
        self.n_mels = dims.n_mels
        self.embedding_dim = dims.n_audio_state
        self.num_layers = dims.n_audio_layer + 1
        self.num_frames = num_frames
        self.audio_feat_length = tuple(audio_feat_length)
        self.windows = windows
        self.batch_size = batch_size
        self.cache_dir = os.fspath(cache_dir) if cache_dir else None
        self._model_sha256: str | None = None
        self._taps: list[torch.Tensor] = []
        self._encoding = threading.Lock()  # the taps belong to one pass at a time; callers may share an encoder
        self.encoder.blocks[0].register_forward_pre_hook(self._tap_input)
        for block in self.encoder.blocks:
            block.register_forward_hook(self._tap_output)

    def _tap_input(self, module, args) -> None:
        self._taps.append(args[0])

    def _tap_output(self, module, args, output) -> None:
        self._taps.append(output)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype

    def to(self, device: str | torch.device) -> "Audio2Feature":
        """Move the encoder to ``device`` (its precision stays); features still come back on the CPU."""
        self.device = torch.device(device)
        self.encoder.to(self.device)
        return self

    # ---- features

    def log_mel(self, audio: np.ndarray) -> torch.Tensor:
        """(n_mels, samples // 160) whisper log-mel, normalised with the maximum of the whole clip."""
        return whisper.log_mel_spectrogram(torch.tensor(np.asarray(audio, np.float32)), n_mels=self.n_mels)

    @torch.inference_mode()
    def _encode(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, 3000) -> (B, 1500, layers, width) stacked per-layer embeddings."""
        with self._encoding:
            self._taps.clear()
            try:
                self.encoder(mel_windows.to(self.device, self.dtype))
                return torch.stack(self._taps, dim=2).float().cpu()
            finally:
                self._taps.clear()

    def encode_window(self, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, <= 3000) log-mel of one window -> (1500, layers, width) features, right-padded as offline windows."""
        padded = torch.full((1, self.n_mels, WINDOW_MEL_FRAMES), MEL_PAD_VALUE)
        padded[0, :, : mel.shape[1]] = mel
        return self._encode(padded)[0]

    def _features(self, audio: np.ndarray, windows: str) -> torch.Tensor:
        if len(audio) < 2 * HOP_LENGTH:
            raise MediaError(f"audio is too short for whisper features: {len(audio)} samples, need {2 * HOP_LENGTH}")
        if windows == "stream":
            from latentsync.whisper.stream_windows import stream_features  # (that module builds on this one)

            return stream_features(self, audio)
        mel = self.log_mel(audio)
        plan = window_plan(mel.shape[1], windows)
        # Accumulated in float32: weights are exactly 1 away from boundaries, so those frames are exact.
        out = torch.zeros(mel.shape[1] // 2, self.num_layers, self.embedding_dim)
        for first in range(0, len(plan), self.batch_size):
            batch = plan[first : first + self.batch_size]
            padded = torch.full((len(batch), self.n_mels, WINDOW_MEL_FRAMES), MEL_PAD_VALUE)
            for row, w in enumerate(batch):
                padded[row, :, : w.mel_frames] = mel[:, w.mel_start : w.mel_start + w.mel_frames]
            encoded = self._encode(padded)
            for row, w in enumerate(batch):
                begin, weights = w.weights()
                offset = begin - w.mel_start // 2
                part = encoded[row, offset : offset + len(weights)]
                out[begin : begin + len(weights)] += weights.float()[:, None, None] * part
        return out

    def audio2feat(
        self,
        audio: str | os.PathLike | np.ndarray,
        *,
        windows: str | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> torch.Tensor:
        """(T, layers, width) float32 CPU features at 50 Hz of a media file or a 16 kHz mono float array.

        T = mel frames // 2 = samples // 320. ``windows`` ("overlap" or "upstream") and ``cache_dir``
        default to the encoder's own (None: theirs). With a cache folder, results are reused for
        identical content (file bytes or array), model file and window mode.
        """
        windows = windows or self.windows
        if windows not in WINDOW_MODES:
            raise ValueError(f"unknown windows mode {windows!r}, choose one of {', '.join(WINDOW_MODES)}")
        cache_dir = os.fspath(cache_dir) if cache_dir else self.cache_dir
        is_array = isinstance(audio, np.ndarray)
        if cache_dir is None:
            return self._features(audio if is_array else load_audio(audio, SAMPLE_RATE), windows)
        cache_path = self._cache_path(audio, windows, cache_dir)
        if os.path.isfile(cache_path):
            try:
                return torch.load(cache_path, map_location="cpu", weights_only=True)
            except Exception as err:  # a truncated or foreign file: recompute and overwrite it
                logger.warning("ignoring unreadable feature cache %s (%s)", cache_path, err)
        features = self._features(audio if is_array else load_audio(audio, SAMPLE_RATE), windows)
        with atomic_output(cache_path) as tmp:
            torch.save(features, tmp)
        return features

    def _cache_path(self, audio: str | os.PathLike | np.ndarray, windows: str, cache_dir: str) -> str:
        if self._model_sha256 is None:
            self._model_sha256 = sha256_file(self.model_path)
        if isinstance(audio, np.ndarray):
            content = "array:" + hashlib.sha256(np.ascontiguousarray(audio, np.float32).tobytes()).hexdigest()
        else:
            content = "file:" + sha256_file(audio)
        settings = [windows, OVERLAP_HOP_MEL_FRAMES, CROSSFADE_FEATURE_FRAMES, self.dtype]
        if windows == "stream":
            from latentsync.whisper import stream_windows as sw

            settings += [sw.STEP_FRAMES, sw.LOOKAHEAD_FEATURES, self.audio_feat_length]
        return os.path.join(cache_dir, cache_key(_CACHE_VERSION, content, self._model_sha256, *settings) + ".pt")

    # ---- chunks

    def get_sliced_feature(self, feat: torch.Tensor, frame: int, fps: float = 25) -> tuple[torch.Tensor, list[int]]:
        """(10 * layers, width) chunk of video frame ``frame`` and the feature indices it uses."""
        indices = chunk_indices(frame, len(feat), fps, self.audio_feat_length)
        return feat[indices].reshape(-1, self.embedding_dim), indices

    def feature2chunks(self, feat: torch.Tensor, fps: float = 25) -> torch.Tensor:
        """(num_chunks(T, fps), 10 * layers, width): one chunk per video frame, rows frame-major."""
        if len(feat) == 0:
            raise ValueError("no audio features: the audio is shorter than 20 ms")
        frames = range(num_chunks(len(feat), fps))
        index = torch.tensor([chunk_indices(i, len(feat), fps, self.audio_feat_length) for i in frames])
        return feat[index].reshape(len(index), -1, feat.shape[-1])

    def crop_overlap_audio_window(self, feat: torch.Tensor, start_index: int) -> torch.Tensor:
        """(num_frames, 10 * layers, width) chunks of the 25 fps training clip starting at frame ``start_index``.

        Equal to ``feature2chunks(feat)[start_index : start_index + num_frames]``.
        """
        frames = range(start_index, start_index + self.num_frames)
        index = torch.tensor([chunk_indices(i, len(feat), 25, self.audio_feat_length) for i in frames])
        return feat[index].reshape(len(index), -1, feat.shape[-1])
