"""Whisper features for a stream: the ``stream`` window mode, a 30 s window that slides with the audio.

Whisper's encoder attends across its whole 30 s window, so a feature computed before the audio to its
right has arrived differs from one computed on the whole file. The ``stream`` mode fixes how much
audio to the right each feature sees, so that a live stream and an offline run over the same audio
compute exactly the same numbers:

* features are made in *passes*; pass m of a run that starts at video frame ``a0`` completes the audio
  tokens of frames ``a0 + 8m ... a0 + 8m + 7`` (:data:`STEP_FRAMES`, 320 ms), i.e. it gives the feature
  frames those tokens reach that no earlier pass gave (a clip of 8 or 16 frames from the run's start
  needs exactly its own passes);
* each pass encodes one window holding the audio up to :data:`LOOKAHEAD_FEATURES` (200 ms) beyond its
  last feature and up to 30 s before that (from the start of the audio while it is shorter), its
  log-mel normalised by the window's own loudest frame (Whisper's rule, applied to the window);
  the window sits at the start of the encoder's 30 s input, right-padded, as offline windows do;
* at the end of a finished audio the last windows stop at its last sample.

One window per encoder pass (a batch of one): a pass's numbers do not depend on what else is encoded,
so the features do not depend on how the audio was chunked when it arrived. Offline inference uses
the mode with ``audio_windows: stream`` (one run from frame 0). The cost: one encoder pass per 320 ms
of talking (all 30 s windows), and the audio a frame needs arrives 80 ms (the token's reach) + 200 ms
after the frame's own audio. What the look-ahead costs against the ``overlap`` mode is measured by
``python -m tools.stream_features`` (README, "Real-time streaming").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from whisper.audio import HOP_LENGTH, N_SAMPLES

from latentsync.whisper.audio2feature import Audio2Feature, chunk_indices

STEP_FRAMES = 8  # video frames whose tokens one encoder pass completes (320 ms at 25 fps)
LOOKAHEAD_FEATURES = 10  # 50 Hz feature frames of audio (200 ms) each pass sees beyond the features it gives
SAMPLES_PER_FEATURE = 2 * HOP_LENGTH  # 320 samples = 20 ms at 16 kHz
WINDOW_SAMPLES = N_SAMPLES  # 30 s, the encoder's input
MEL_FLOOR = 2.0  # Whisper's log-mel floor below the loudest value: 8 (log10 units) / 4 (its normalisation)


@dataclass(frozen=True)
class StreamPass:
    """One encoder pass: it gives feature frames [first, stop) from the audio samples [sample_start, sample_stop)."""

    first: int
    stop: int
    sample_start: int
    sample_stop: int


class TokenReach:
    """Which 50 Hz feature frames the audio tokens of video frames use (from ``chunk_indices``)."""

    def __init__(self, audio_feat_length: Sequence[int] = (2, 2), fps: float = 25) -> None:
        self.fps = fps
        self.audio_feat_length = tuple(audio_feat_length)

    def indices(self, frame: int, num_features: int = 1 << 62) -> list[int]:
        """The feature frames of ``frame``'s tokens, clamped to [0, num_features - 1]."""
        return chunk_indices(frame, num_features, self.fps, self.audio_feat_length)

    def first(self, frame: int) -> int:
        """The first feature frame of ``frame``'s tokens (0 at the start of the audio)."""
        return self.indices(frame)[0]

    def stop(self, frame: int) -> int:
        """One past the last feature frame of ``frame``'s tokens."""
        return self.indices(frame)[-1] + 1


def stream_pass(
    index: int, start_frame: int, reach: TokenReach, num_samples: int | None = None,
    lookahead: int = LOOKAHEAD_FEATURES,
) -> StreamPass:
    """Pass ``index`` of a run of talking frames starting at ``start_frame`` (see the module docstring);
    ``num_samples``: the audio's length once it has ended (None: it goes on)."""
    first = reach.first(start_frame) if index == 0 else reach.stop(start_frame + STEP_FRAMES * index - 1)
    stop = reach.stop(start_frame + STEP_FRAMES * (index + 1) - 1)
    sample_stop = (stop + lookahead) * SAMPLES_PER_FEATURE
    if num_samples is not None:
        stop = min(stop, num_samples // SAMPLES_PER_FEATURE)
        sample_stop = min(sample_stop, num_samples)
    back = max(0, sample_stop - WINDOW_SAMPLES)
    sample_start = math.ceil(back / SAMPLES_PER_FEATURE) * SAMPLES_PER_FEATURE  # whole feature frames
    return StreamPass(first, max(first, stop), sample_start, sample_stop)


def passes_for(frame_stop: int, start_frame: int) -> int:
    """How many passes of a run starting at ``start_frame`` the tokens of frames before ``frame_stop`` need."""
    return max(1, math.ceil((frame_stop - start_frame) / STEP_FRAMES))


def samples_needed(
    frame_stop: int, start_frame: int, reach: TokenReach, num_samples: int | None = None,
    lookahead: int = LOOKAHEAD_FEATURES,
) -> int:
    """Audio samples (from the stream's start) that the tokens of frames ``start_frame .. frame_stop - 1`` need."""
    last = stream_pass(passes_for(frame_stop, start_frame) - 1, start_frame, reach, num_samples, lookahead)
    return last.sample_stop


class FeatureStream:
    """The features of one run of talking frames, pass by pass, as its tokens are asked for.

    ``read(start, stop)`` returns audio samples [start, stop) of the stream (16 kHz mono float32); a
    pass reads only samples that are final. Features are kept from the earliest frame still asked for.
    """

    def __init__(
        self,
        encoder: Audio2Feature,
        read: Callable[[int, int], np.ndarray],
        start_frame: int = 0,
        lookahead: int = LOOKAHEAD_FEATURES,
    ) -> None:
        self.encoder = encoder
        self.read = read
        self.start_frame = start_frame
        self.lookahead = lookahead
        self.reach = TokenReach(encoder.audio_feat_length)
        self.passes = 0  # passes encoded so far
        self._base = self.reach.first(start_frame)  # feature index of self._features[0]
        self._features = torch.zeros(0, encoder.num_layers, encoder.embedding_dim)
        self._loudest = -math.inf  # loudest normalised log-mel value of the run so far

    def _encode_pass(self, num_samples: int | None) -> None:
        step = stream_pass(self.passes, self.start_frame, self.reach, num_samples, self.lookahead)
        audio = self.read(step.sample_start, step.sample_stop)
        offset = step.sample_start // SAMPLES_PER_FEATURE
        mel = self.encoder.log_mel(audio)
        # Whisper floors its log-mel 8 (normalised: 2) below the recording's loudest value; a stream floors
        # it below the loudest value heard so far, which is the recording's once that has passed.
        self._loudest = max(self._loudest, float(mel.max()))
        encoded = self.encoder.encode_window(torch.clamp(mel, min=self._loudest - MEL_FLOOR))
        new = encoded[step.first - offset : step.stop - offset]
        self._features = torch.cat([self._features, new])
        self.passes += 1

    def tokens(self, frames: Sequence[int], num_samples: int | None = None) -> torch.Tensor:
        """Audio tokens (len(frames), 10 * layers, width) of video frames of this run, in any order.

        ``num_samples``: the stream's length if it has ended (tokens then stop at its last feature, as
        offline); passes are encoded as far as the latest frame asked for needs.
        """
        while self.passes < passes_for(max(frames) + 1, self.start_frame):
            self._encode_pass(num_samples)
        total = self._base + len(self._features)
        if num_samples is not None:
            total = min(total, num_samples // SAMPLES_PER_FEATURE)
        rows = [self._features[[i - self._base for i in self.reach.indices(frame, total)]] for frame in frames]
        return torch.stack(rows).flatten(1, 2)

    def forget_before(self, frame: int) -> None:
        """Drop the features no frame from ``frame`` on uses (memory stays flat over a long run)."""
        cut = self.reach.first(frame) - self._base
        if cut > 0:
            self._features = self._features[cut:]
            self._base += cut

    def all_features(self, num_samples: int) -> torch.Tensor:
        """Every feature frame (num_samples // 320, layers, width) of a finished audio (the offline ``stream`` mode)."""
        total = num_samples // SAMPLES_PER_FEATURE
        while self._base + len(self._features) < total:
            self._encode_pass(num_samples)
        return self._features[: total - self._base]


def stream_features(encoder: Audio2Feature, audio: np.ndarray) -> torch.Tensor:
    """The ``stream`` mode's features of a whole 16 kHz mono float array: one run from frame 0."""
    audio = np.asarray(audio, np.float32)
    return FeatureStream(encoder, lambda start, stop: audio[start:stop]).all_features(len(audio))
