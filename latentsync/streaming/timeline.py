"""The plan of a stream: which output frames are the avatar's own and which are generated, clip by clip.

Pure bookkeeping, no models or threads: the session feeds it audio and the time, and takes the clips it
commits. The audio lives on one time line of 16 kHz samples from the stream's start; output frame k
shows samples ``[640 k, 640 (k + 1))`` and avatar frame ``pingpong_index(k, avatar frames)``.

* A frame is *voiced* when it holds pushed audio (not a gap) at or above the silence gate.
  The face talks from a voiced frame until ``hangover_frames`` after the last one; its alpha (how
  much of the generated face is shown) follows that target by at most ``1 / blend_frames`` a frame,
  from 0 (the avatar's own pixels) to 1 (the generated frame, exactly). The first frame of a stream
  takes its target at once (there is no earlier frame to jump from).
* Idle frames are committed one at a time as soon as their audio is known silent (or, on a clock,
  ``compute_margin`` before they are due with no audio: a gap). A talking run is committed in clips of ``clip_frames``
  starting at its first frame, each once the audio its tokens need has arrived (the clip's own audio,
  the tokens' 80 ms reach and the Whisper look-ahead: :func:`~latentsync.whisper.stream_windows.samples_needed`),
  or on a clock when it is due in ``compute_margin`` seconds (missing audio is then a gap).
* Committed audio is final. On a clock, speech pushed after a pause (when the end of the time line
  is too close to now for a clip to be ready) starts at the first frame it can be ready for: ``latency``
  seconds ahead. Without a clock the time line is exactly the audio pushed (and the gaps asked for).
* After :meth:`Planner.finish` the stream ends with the audio: ``ceil(samples / 640)`` frames, the last
  clip filled with its own frames played backward as offline inference does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from latentsync.media.audio import SAMPLE_RATE
from latentsync.pipelines.frame_plan import VIDEO_FPS, padded_positions, pingpong_index
from latentsync.whisper.stream_windows import LOOKAHEAD_FEATURES, TokenReach, samples_needed

FRAME_SAMPLES = SAMPLE_RATE // VIDEO_FPS  # 640 samples of 16 kHz audio per 25 fps frame


@dataclass(frozen=True)
class FramePlan:
    """One output frame: its avatar frame, how much generated face it shows, and its audio."""

    index: int
    source: int  # avatar frame shown
    alpha: float  # 0: the avatar's own pixels; 1: the generated frame; in between: a blend of the two
    voiced: bool
    audio: np.ndarray  # (640,) float32, 16 kHz mono (zeros in a gap)


@dataclass(frozen=True)
class ClipPlan:
    """Consecutive output frames committed together: one idle frame, or a clip of a talking run."""

    frames: tuple[FramePlan, ...]
    talking: bool  # generated (some frame has alpha > 0)
    run_start: int  # first frame of its talking run: where that run's Whisper passes start
    positions: tuple[int, ...]  # offsets of ``frames`` the UNet sees (a short last clip: reflected to full)
    num_samples: int | None  # the stream's length once it has ended, else None

    @property
    def start(self) -> int:
        return self.frames[0].index


class Timeline:
    """The audio of a stream: samples written at the end (pushed, or zeros for a gap), read back by position.

    ``frozen``: samples before it are committed (final); ``forget_before`` releases memory behind the
    oldest position still to be read. Storage grows by doubling, so many small pushes cost no copying.
    """

    def __init__(self) -> None:
        self._audio = np.zeros(SAMPLE_RATE, np.float32)
        self._present = np.zeros(SAMPLE_RATE, bool)
        self._size = 0  # samples held
        self._base = 0  # time-line position of _audio[0]
        self.frozen = 0

    @property
    def end(self) -> int:
        return self._base + self._size

    def write(self, samples: np.ndarray, present: bool = True) -> None:
        count = len(samples)
        if self._size + count > len(self._audio):
            capacity = max(2 * len(self._audio), self._size + count)
            self._audio = np.concatenate([self._audio[: self._size], np.zeros(capacity - self._size, np.float32)])
            self._present = np.concatenate([self._present[: self._size], np.zeros(capacity - self._size, bool)])
        self._audio[self._size : self._size + count] = samples
        self._present[self._size : self._size + count] = present
        self._size += count

    def fill_gap(self, stop: int) -> None:
        """Zeros, marked absent, up to position ``stop``."""
        if stop > self.end:
            self.write(np.zeros(stop - self.end, np.float32), present=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) (a copy), zeros beyond the end."""
        if start < self._base:
            raise IndexError(f"samples before {self._base} were released (asked from {start})")
        out = np.zeros(stop - start, np.float32)
        held = self._audio[start - self._base : min(stop, self.end) - self._base]
        out[: len(held)] = held
        return out

    def present(self, start: int, stop: int) -> np.ndarray:
        return self._present[start - self._base : min(stop, self.end) - self._base]

    def forget_before(self, position: int) -> None:
        cut = min(position, self.end) - self._base
        if cut > max(SAMPLE_RATE, self._size // 2):  # compact now and then, not at every call
            self._audio[: self._size - cut] = self._audio[cut : self._size].copy()
            self._present[: self._size - cut] = self._present[cut : self._size].copy()
            self._size -= cut
            self._base += cut


class Planner:
    """Commits clips of a stream (see the module docstring); ``now`` is seconds since the stream's start, or
    None without a clock. Not thread-safe: the session calls it under its lock."""

    def __init__(
        self,
        num_sources: int,
        clip_frames: int,
        reach: TokenReach,
        *,
        blend_frames: int,
        hangover_frames: int,
        silence_dbfs: float | None,
        compute_margin: float = 0.0,
        jitter: float = 0.0,
        lookahead: int = LOOKAHEAD_FEATURES,
    ) -> None:
        self.num_sources = num_sources
        self.clip_frames = clip_frames
        self.reach = reach
        self.blend = 1.0 / blend_frames
        self.hangover = hangover_frames
        self.gate = None if silence_dbfs is None else 10.0 ** (silence_dbfs / 20.0)
        self.compute_margin = compute_margin
        self.jitter = jitter
        self.lookahead = lookahead
        self.timeline = Timeline()
        self.next_frame = 0
        self.finished = False
        self._alpha: float | None = None  # of the last committed frame (None: none yet)
        self._last_voiced: int | None = None
        self._run_start: int | None = None

    # ------------------------------------------------------------------ timing

    def audio_lead(self) -> float:
        """Seconds of audio a talking clip needs beyond its first frame's start: its own, the tokens' reach, the look-ahead."""
        far = 1000 * self.clip_frames  # away from the stream's start, where tokens are clamped
        return (samples_needed(far + self.clip_frames, far, self.reach, None, self.lookahead)
                - far * FRAME_SAMPLES) / SAMPLE_RATE

    @property
    def idle_lead(self) -> float:
        """Seconds before it is due that a frame without audio is committed (idle): a frame, or a clip's margin."""
        return max(1.0 / VIDEO_FPS, self.compute_margin)

    @property
    def latency(self) -> float:
        """Seconds from pushing speech after a pause to its first frame being due, on a clock."""
        return self.audio_lead() + self.compute_margin + self.jitter

    @property
    def total_frames(self) -> int | None:
        """Frames of a finished stream (None while it goes on)."""
        return math.ceil(self.timeline.end / FRAME_SAMPLES) if self.finished else None

    @property
    def done(self) -> bool:
        return self.finished and self.next_frame >= self.total_frames

    # ------------------------------------------------------------------ input

    def push(self, samples: np.ndarray, now: float | None) -> None:
        """Append 16 kHz mono samples; on a clock, speech after a pause starts ``latency`` ahead of ``now``."""
        if not len(samples):
            return
        timeline = self.timeline
        if now is not None and (timeline.end < timeline.frozen
                                or timeline.end / SAMPLE_RATE < now + self.latency - self.jitter):
            first = max(math.ceil(timeline.frozen / FRAME_SAMPLES), math.ceil((now + self.latency) * VIDEO_FPS))
            timeline.fill_gap(first * FRAME_SAMPLES)
        timeline.write(samples)

    def gap(self, seconds: float) -> None:
        """A pause of ``seconds`` without audio (its frames are the avatar's own, after the blend out)."""
        self.timeline.fill_gap(self.timeline.end + round(seconds * SAMPLE_RATE))

    def finish(self) -> None:
        """No more audio: the stream ends with the audio pushed so far."""
        self.finished = True

    # ------------------------------------------------------------------ planning

    def plan(self, now: float | None = None) -> list[ClipPlan]:
        """Every clip that can be committed now, in order."""
        clips = []
        while not self.done and (clip := self._next(now)) is not None:
            clips.append(clip)
        return clips

    def _next(self, now: float | None) -> ClipPlan | None:
        n, timeline = self.next_frame, self.timeline
        if self._run_start is None:
            if timeline.end >= (n + 1) * FRAME_SAMPLES or self.finished:
                if not self._voiced(n):
                    return self._commit([n], talking=False)
                self._run_start = n
            elif now is not None and now >= n / VIDEO_FPS - self.idle_lead:  # due soon, no audio: a gap
                timeline.fill_gap((n + 1) * FRAME_SAMPLES)
                return self._commit([n], talking=False)
            else:
                return None
        stop = n + self.clip_frames if self.total_frames is None else min(n + self.clip_frames, self.total_frames)
        length = self.timeline.end if self.finished else None
        need = samples_needed(stop, self._run_start, self.reach, length, self.lookahead)
        if timeline.end < need and not self.finished:
            if now is None or now < n / VIDEO_FPS - self.compute_margin:
                return None
            timeline.fill_gap(need)  # due: what has not arrived is a gap
        timeline.frozen = max(timeline.frozen, need)
        return self._commit(list(range(n, stop)), talking=True)

    def _voiced(self, k: int) -> bool:
        start = k * FRAME_SAMPLES
        present = self.timeline.present(start, min(start + FRAME_SAMPLES, self.timeline.end))
        if not present.any():
            return False
        if self.gate is None:
            return True
        samples = self.timeline.read(start, start + len(present))[present]
        return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) >= self.gate

    def _commit(self, indices: list[int], talking: bool) -> ClipPlan:
        frames = []
        for k in indices:
            voiced = self._voiced(k)
            if voiced:
                self._last_voiced = k
            target = 1.0 if self._last_voiced is not None and k - self._last_voiced <= self.hangover else 0.0
            if self._alpha is None:
                alpha = target
            elif target > self._alpha:
                alpha = min(target, self._alpha + self.blend)
            else:
                alpha = max(target, self._alpha - self.blend)
            self._alpha = alpha
            audio = self.timeline.read(k * FRAME_SAMPLES, (k + 1) * FRAME_SAMPLES)
            frames.append(FramePlan(k, pingpong_index(k, self.num_sources), alpha, voiced, audio))
        run_start = self._run_start if talking else indices[0]
        if talking and self._alpha == 0.0:
            self._run_start = None  # faded out: the next speech starts a new run
        self.next_frame = indices[-1] + 1
        self.timeline.frozen = max(self.timeline.frozen, self.next_frame * FRAME_SAMPLES)
        positions = padded_positions(len(frames), self.clip_frames) if talking else [0]
        length = self.timeline.end if self.finished else None
        return ClipPlan(tuple(frames), talking and any(f.alpha > 0 for f in frames), run_start, tuple(positions),
                        length)
