"""A streaming session: audio chunks in, 25 fps frames out, on one prepared avatar and a shared loaded pipeline.

The caller's thread pushes audio and reads frames; planning (:mod:`latentsync.streaming.timeline`)
happens in the call that changes what is known (a push, :meth:`StreamSession.finish`, a virtual
clock's advance, or the wall clock's ticker thread), so on a virtual clock or without one the frames
depend only on the calls made, never on how fast the machine is. Committed clips then flow through
three threads: *prepare* (audio tokens and conditioning of the next clip, a
:class:`~latentsync.pipelines.overlap.Prefetch` one clip ahead), *generate* (UNet and VAE decode of
the current one) and *restore* (paste-back and blend of the previous one, a
:class:`~latentsync.pipelines.overlap.Drain`), into an ordered buffer the reader takes frames from.
An error in any of them is raised to the reader (and to the next push), unchanged.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from latentsync.errors import StreamError
from latentsync.face.detection import FaceDetector
from latentsync.pipelines.frame_plan import VIDEO_FPS
from latentsync.pipelines.overlap import Drain, Prefetch
from latentsync.settings import InferenceSettings, draw_seed
from latentsync.streaming.acceleration import accelerated_unet
from latentsync.streaming.audio_input import AudioInput
from latentsync.streaming.avatar import Avatar, prepare_avatar
from latentsync.streaming.clock import Clock, VirtualClock
from latentsync.streaming.options import StreamOptions
from latentsync.streaming.render import ClipRenderer, PreparedClip, StreamFrame
from latentsync.streaming.timeline import FRAME_SAMPLES, ClipPlan, Planner
from latentsync.whisper.stream_windows import WINDOW_SAMPLES, TokenReach

logger = logging.getLogger(__name__)

MARGIN_FACTOR = 1.5  # a clip's measured time is planned with this much to spare
WARM_UP_CLIPS = 3  # clips timed when a real-time session opens without a compute_margin
_warmed: weakref.WeakSet = weakref.WeakSet()  # pipelines whose first calls are behind them


@dataclass
class StreamStats:
    """Counts of a session so far (frames are output frames); times in seconds on the session's clock."""

    frames_out: int = 0  # frames read by the caller
    synced_frames: int = 0  # of those, with a generated mouth
    late_frames: int = 0  # ready after they were due (real-time sessions)
    dropped_frames: int = 0  # dropped unread because the reader fell ``buffer_frames`` behind (real time)
    clips_generated: int = 0
    compute_margin: float = 0.0  # seconds planned per clip (measured on a warm-up clip when not given)
    latency: float = 0.0  # seconds from pushing speech after a pause to its first frame being due (real time)
    first_push: float | None = None  # clock time of the first audio pushed
    first_synced_out: float | None = None  # clock time the first synced frame was read
    avatar_seconds: float = 0.0  # opening the avatar (preparing it, or reading it from the cache)
    avatar_prepared: bool = False  # the avatar was prepared now (False: it came from the cache)
    seconds_per_clip: list[float] = field(default_factory=list)  # generate step of each generated clip


class StreamSession:
    """Open a session on an avatar; push audio; read frames; close. See :mod:`latentsync.streaming`."""

    def __init__(
        self,
        pipeline,
        avatar: str | os.PathLike | Avatar,
        settings: InferenceSettings,
        options: StreamOptions = StreamOptions(),
        *,
        clock: Clock | None = None,
        face_detector: FaceDetector | None = None,
    ) -> None:
        self._engine = _Engine(pipeline, avatar, settings, options, clock, face_detector)
        self._finalizer = weakref.finalize(self, self._engine.close)

    def push_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """Add a chunk: (n,) mono or (n, channels), int16/int32 or float PCM, any rate and size (empty: nothing)."""
        self._engine.push(samples, sample_rate)

    def push_gap(self, seconds: float) -> None:
        """Add ``seconds`` without audio (without a clock: a pause; on a clock pauses come from the time itself)."""
        self._engine.gap(seconds)

    def finish(self) -> None:
        """No more audio: the stream ends with the audio pushed (read the remaining frames, then None)."""
        self._engine.finish()

    def read(self, timeout: float | None = None) -> StreamFrame | None:
        """The next frame once it is ready (and due, on a clock); None at the end of a finished stream, or
        after ``timeout`` seconds of waiting. An error of the session's threads is raised here."""
        return self._engine.read(timeout)

    def __iter__(self):
        while (frame := self.read()) is not None:
            yield frame

    @property
    def stats(self) -> StreamStats:
        return self._engine.stats

    @property
    def avatar(self) -> Avatar:
        return self._engine.avatar

    @property
    def latency(self) -> float:
        """Seconds from pushing speech after a pause to its first frame being due (real-time sessions)."""
        return self._engine.planner.latency

    @property
    def start_time(self) -> float:
        """The clock's time when frame 0 was due (frame k is due ``k / 25`` s later); 0 without a clock."""
        return self._engine.t0

    def close(self) -> None:
        """Stop now: threads joined, the avatar's cache files released, tensors dropped. Safe to call twice."""
        self._finalizer()

    def __enter__(self) -> "StreamSession":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_session(pipeline, avatar, settings: InferenceSettings, options: StreamOptions = StreamOptions(),
                 **kwargs) -> StreamSession:
    """:class:`StreamSession` (the same arguments)."""
    return StreamSession(pipeline, avatar, settings, options, **kwargs)


class _Engine:
    """The session's state and threads; held by the public object, which closes it when dropped."""

    def __init__(self, pipeline, avatar, settings: InferenceSettings, options: StreamOptions,
                 clock: Clock | None, face_detector: FaceDetector | None) -> None:
        self.pipeline, self.options, self.clock = pipeline, options, clock
        self.clip_frames = options.clip_frames or pipeline.num_frames
        self.sampling = settings.sampling()
        pipeline.make_sampler(self.sampling)  # a bad sampler or step count fails now
        if settings.audio_windows != "stream":
            logger.debug("streaming computes Whisper features with audio_windows=stream")
        self.stats = StreamStats()
        # 1. The avatar: from the cache, or prepared now (a NoFaceError here, before anything streams).
        if isinstance(avatar, Avatar):
            self.avatar, self._owns_avatar = avatar, False
        else:
            self.avatar = prepare_avatar(pipeline, avatar, settings, clip_frames=self.clip_frames,
                                         cache_dir=options.avatar_cache_dir, face_detector=face_detector)
            self._owns_avatar = True
        self.stats.avatar_seconds, self.stats.avatar_prepared = self.avatar.seconds, self.avatar.prepared
        # 2. The plan, the audio input and the per-clip work.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        reach = TokenReach(pipeline.audio_encoder.audio_feat_length)
        self.planner = Planner(len(self.avatar), self.clip_frames, reach, blend_frames=options.blend_frames,
                               hangover_frames=options.hangover_frames, silence_dbfs=options.silence_dbfs,
                               jitter=options.jitter if clock is not None else 0.0)
        self.input = AudioInput()
        seed = settings.seed if settings.seed != -1 else draw_seed()
        self.seed = seed
        unet = accelerated_unet(pipeline.unet, options.acceleration)
        self.renderer = ClipRenderer(pipeline, self.avatar, settings, self.sampling, pipeline.make_generator(seed),
                                     self._read_audio, unet)
        # 3. On a clock: the compute margin (a warm-up clip when not given), then the time line starts.
        margin = options.compute_margin
        if margin is None:
            margin = self._measure_margin(settings, unet) if clock is not None and not isinstance(clock, VirtualClock) else 0.0
        self.planner.compute_margin = margin
        self.stats.compute_margin, self.stats.latency = margin, self.planner.latency
        self._plans: deque[ClipPlan] = deque()
        self._out: deque[StreamFrame] = deque()
        self._error: BaseException | None = None
        self._closing = self._ended = False
        self._wake = threading.Event()
        # Frame 0 is due one idle lead after opening, as every later idle frame is committed that far ahead of
        # its time: otherwise it would be due the instant the session opens, and always late.
        self.t0 = clock.now() + self.planner.idle_lead if clock is not None else 0.0
        # 4. The threads (see the module docstring).
        self._prepared = Prefetch(self._prepare_each(), depth=1, name="stream-prepare")
        self._restoring = Drain(self._emit, depth=1, name="stream-restore")
        self._generating = threading.Thread(target=self._generate_each, name="stream-generate", daemon=True)
        self._generating.start()
        self._unsubscribe = None
        self._ticker = None
        if isinstance(clock, VirtualClock):
            self._unsubscribe = clock.subscribe(self._on_clock)
            self._on_clock()
        elif clock is not None:
            self._ticker = threading.Thread(target=self._tick, name="stream-clock", daemon=True)
            self._ticker.start()

    # ------------------------------------------------------------------ input (caller's thread)

    def _now(self) -> float | None:
        return None if self.clock is None else self.clock.now() - self.t0

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing:
            raise StreamError("the streaming session is closed")
        if self.planner.finished:
            raise StreamError("the streaming session was finished: no more audio can be pushed")

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        self._check_open()
        mono = self.input.convert(samples, sample_rate)
        with self._changed:
            if self.stats.first_push is None and len(samples):
                self.stats.first_push = self.clock.now() if self.clock is not None else None
            self.planner.push(mono, self._now())
            self._plan()

    def gap(self, seconds: float) -> None:
        self._check_open()
        if not (isinstance(seconds, (int, float)) and seconds >= 0):
            raise StreamError(f"a gap lasts a number of seconds >= 0, got {seconds!r}")
        with self._changed:
            self.planner.push(self.input.flush(), self._now())
            self.planner.gap(seconds)
            self._plan()

    def finish(self) -> None:
        self._check_open()
        with self._changed:
            self.planner.push(self.input.flush(), self._now())
            self.planner.finish()
            self._plan()

    def _plan(self) -> None:
        """Commit what can be committed now (the lock is held)."""
        clips = self.planner.plan(self._now())
        self._plans.extend(clips)
        if clips or self.planner.done:
            self._changed.notify_all()
        self._wake.set()

    def _on_clock(self) -> None:
        with self._changed:
            if not self._closing:
                self._plan()
            self._changed.notify_all()

    def _tick(self) -> None:
        """Wall clock: plan at every frame time (idle frames and due clips are committed by the time itself)."""
        while not self._closing:
            with self._changed:
                self._plan()
                following = (self.planner.next_frame - 1) / VIDEO_FPS - self.planner.idle_lead
            self._wake.clear()
            self.clock.sleep_until(self.t0 + max(following, self._now() + 0.5 / VIDEO_FPS), self._wake)

    def _read_audio(self, start: int, stop: int) -> np.ndarray:
        with self._lock:
            return self.planner.timeline.read(start, stop)

    # ------------------------------------------------------------------ the threads

    def _prepare_each(self):
        """Committed clips, prepared in order (the Prefetch thread iterates this)."""
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._plans or self._closing or self.planner.done)
                if self._closing or not self._plans:
                    return
                clip = self._plans.popleft()
            yield self.renderer.prepare(clip)
            with self._lock:  # audio no Whisper window will read again
                self.planner.timeline.forget_before(clip.start * FRAME_SAMPLES - WINDOW_SAMPLES
                                                    - 2 * self.clip_frames * FRAME_SAMPLES)

    def _generate_each(self) -> None:
        try:
            for prepared in self._prepared:
                if self._closing:
                    return
                started = time.perf_counter()
                faces = self.renderer.generate(prepared)
                if faces is not None:
                    self.stats.clips_generated += 1
                    self.stats.seconds_per_clip.append(time.perf_counter() - started)
                self._restoring.submit((prepared, faces))
                if self._closing:
                    return
            self._restoring.finish()
            with self._changed:
                self._ended = True
                self._changed.notify_all()
        except BaseException as err:  # noqa: BLE001 - handed to the reader
            with self._changed:
                self._error = self._error or err
                self._changed.notify_all()

    def _emit(self, job: tuple[PreparedClip, torch.Tensor | None]) -> None:
        prepared, faces = job
        for frame in self.renderer.frames(prepared.plan, faces):
            with self._changed:
                if self.clock is None:  # the generator waits for the reader
                    self._changed.wait_for(lambda: len(self._out) < self.options.buffer_frames or self._closing)
                else:  # frames the reader should have taken long ago make room
                    behind = self.options.buffer_frames / VIDEO_FPS
                    while self._out and self._now() - self._out[0].timestamp > behind:
                        self._out.popleft()
                        self.stats.dropped_frames += 1
                if self.clock is not None and self._now() > frame.timestamp:
                    self.stats.late_frames += 1
                self._out.append(frame)
                self._changed.notify_all()

    # ------------------------------------------------------------------ output (caller's thread)

    def read(self, timeout: float | None) -> StreamFrame | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                if self._error is not None:
                    raise self._error
                if self._out and (self.clock is None or self._now() >= self._out[0].timestamp):
                    frame = self._out.popleft()
                    self._changed.notify_all()
                    break
                if (self._ended and not self._out) or self._closing:
                    return None
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                if self._out and self.clock is not None and not isinstance(self.clock, VirtualClock):
                    due = self.t0 + self._out[0].timestamp - self.clock.now()
                    wait = due if wait is None else min(wait, due)
                self._changed.wait(wait)
        self.stats.frames_out += 1
        if frame.synced:
            self.stats.synced_frames += 1
            if self.stats.first_synced_out is None and self.clock is not None:
                self.stats.first_synced_out = self.clock.now()
        return frame

    # ------------------------------------------------------------------ warm-up and close

    def _measure_margin(self, settings: InferenceSettings, unet) -> float:
        """Seconds a clip takes from commit to frames (tokens, conditioning, UNet, decode, paste-back): the median of
        three warm-up clips of silence (after an untimed one on a fresh pipeline: its first calls set up
        kernels), half again for safety."""
        trial = Planner(len(self.avatar), self.clip_frames, TokenReach(self.pipeline.audio_encoder.audio_feat_length),
                        blend_frames=1, hangover_frames=0, silence_dbfs=None)
        trial.push(np.full(FRAME_SAMPLES * (self.clip_frames + 16), 1e-3, np.float32), None)
        clip = trial.plan()[0]
        times = []
        for _ in range(WARM_UP_CLIPS + (self.pipeline not in _warmed)):
            warm = ClipRenderer(self.pipeline, self.avatar, settings, self.sampling,
                                self.pipeline.make_generator(0), trial.timeline.read, unet)
            started = time.perf_counter()
            warm.frames(clip, warm.generate(warm.prepare(clip)))
            times.append(time.perf_counter() - started)
        _warmed.add(self.pipeline)
        return MARGIN_FACTOR * statistics.median(times[-WARM_UP_CLIPS:])

    def close(self) -> None:
        with self._changed:
            if self._closing:
                return
            self._closing = True
            self._changed.notify_all()
        self._wake.set()
        self._prepared.close()
        self._restoring.close()
        for thread in (self._generating, self._ticker):
            if thread is not None and thread is not threading.current_thread():
                thread.join()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._out.clear()
        self._plans.clear()
        self.renderer = self._prepared = self._restoring = None  # their queues may hold a clip's tensors
        if self._owns_avatar:
            self.avatar.close()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
