"""The Live tab of gradio_app.py: speak into the microphone, or play a file, and watch the avatar answer live.

A visitor picks an avatar (a face video or a photo) and presses Start: that browser session gets its
own streaming session (:mod:`latentsync.streaming`) on the app's loaded pipeline and settings, on the
wall clock. Frames flow at 25 fps from then on, the avatar's own frames until speech arrives; each
is sent to the page as a JPEG in an ``<img>`` (Gradio's queue streams the generator's values). The
microphone is Gradio's streaming ``gr.Audio``: its chunks (a fraction of a second each) are pushed
into the visitor's session as they arrive; a played file is pushed at the pace it would be heard.
Stop, a new Start, or closing the tab closes the session (its threads joined, nothing kept). At most
``--live_sessions`` sessions run at once; later visitors wait in Gradio's queue.

Sessions share one pipeline with the Lip-sync tab's jobs (a pipeline keeps no per-call state);
prepared avatars are kept in the app's temporary folder while it runs.
"""

# No `from __future__ import annotations`: Gradio finds the `gr.Request` parameter by its evaluated annotation.
import base64
import contextlib
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np
from scipy.io import wavfile

from latentsync.errors import LatentSyncError, MediaError, StreamError, one_line
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.formats import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from latentsync.settings import InferenceSettings
from latentsync.streaming import StreamOptions, StreamSession, WallClock
from latentsync.streaming.drive import Feeder, Meter, file_chunks

logger = logging.getLogger("gradio_app.live")

DISPLAY_MAX_SIDE = 720  # frames are shrunk to at most this many pixels on the page (the stream keeps its size)
JPEG_QUALITY = 85
MIC_CHUNK_SECONDS = 0.1  # the microphone sends a chunk this often
FILE_CHUNK_SECONDS = 0.02  # a played file is pushed in chunks of this length
STATUS_EVERY = 1.0  # seconds between status lines
FRAME_TEMPLATE = ('<img id="live-frame" src="${value.src}" data-index="${value.index}" '
                  'data-synced="${value.synced}" data-alpha="${value.alpha}" alt="">')
NO_FRAME = {"src": "", "index": -1, "synced": False, "alpha": 0.0}


@dataclass
class Live:
    """One visitor's stream: its session, the file being played into it, and what has been read."""

    session: StreamSession
    meter: Meter
    feeder: Feeder | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # the microphone's and a file's pushes, in turn

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        with self.lock:
            self.session.push_audio(samples, sample_rate)

    def play(self, samples: np.ndarray) -> None:
        """Push a file's samples (16 kHz mono) at the pace they would be heard; the stream goes on after it."""
        with self.lock:
            if self.feeder is not None:
                self.feeder.stop()
            self.feeder = Feeder(self, file_chunks(samples, SAMPLE_RATE, FILE_CHUNK_SECONDS), SAMPLE_RATE,
                                 pace=WallClock(), finish=False, name="live-file").start()

    # The feeder pushes through push_audio (in turn with the microphone) and closes on a failure.
    def push_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        self.push(samples, sample_rate)

    def close(self) -> None:
        if self.feeder is not None:
            self.feeder.stop()
        self.session.close()


class LiveStreams:
    """The visitors' live sessions, by Gradio session hash, at most ``limit`` at once."""

    def __init__(self, pipeline: Callable[[], Any], settings: InferenceSettings, options: StreamOptions,
                 limit: int) -> None:
        self.pipeline, self.settings, self.options, self.limit = pipeline, settings, options, limit
        self._lives: dict[str, Live] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._lives)

    def open(self, key: str, avatar: str) -> Live:
        """A new session for ``key`` on ``avatar`` (its previous one closed first); a LatentSyncError says why not."""
        self.close(key)
        with self._lock:
            if len(self._lives) >= self.limit:
                raise StreamError(f"all {self.limit} live sessions are in use; try again in a moment")
        session = StreamSession(self.pipeline(), avatar, self.settings, self.options, clock=WallClock())
        live = Live(session, Meter(STATUS_EVERY))
        with self._lock:
            self._lives[key] = live
            count = len(self._lives)
        logger.info("live session opened (%d open): avatar %s, latency %.2f s", count, os.path.basename(avatar),
                    session.latency)
        return live

    def get(self, key: str) -> Live | None:
        with self._lock:
            return self._lives.get(key)

    def close(self, key: str, live: Live | None = None) -> None:
        """Close ``key``'s session (only if it is still ``live``, when given)."""
        with self._lock:
            current = self._lives.get(key)
            if current is None or (live is not None and current is not live):
                return
            del self._lives[key]
            count = len(self._lives)
        current.close()
        logger.info("live session closed (%d open): %d frames, %d lip-synced", count, current.meter.frames,
                    current.meter.synced)

    def close_all(self) -> None:
        with self._lock:
            keys = list(self._lives)
        for key in keys:
            self.close(key)


# --------------------------------------------------------------------------- values for the page


def frame_value(frame) -> dict:
    """A StreamFrame as the page's ``<img>`` shows it: a JPEG data URL, its index, whether it talks and how much
    of the generated face it shows (alpha)."""
    image = frame.image
    side = max(image.shape[:2])
    if side > DISPLAY_MAX_SIDE:
        scale = DISPLAY_MAX_SIDE / side
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise RuntimeError("JPEG encoding failed")
    return {"src": "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii"),
            "index": frame.index, "synced": bool(frame.synced), "alpha": round(float(frame.alpha), 3)}


def pick_avatar(video: str | None, photo: str | None) -> str:
    """The face file of a request from the two uploads of :func:`face_inputs`, on either tab (a MediaError when
    there is none, two, or not a video or photo)."""
    if video and photo:
        raise MediaError("Both a video and a photo were given: clear one of them.")
    avatar = video or photo
    if not avatar:
        raise MediaError("Upload a video or a photo of a face first.")
    if os.path.splitext(avatar)[1].lower() not in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
        raise MediaError(f"{os.path.basename(avatar)!r} is not a video or a photo: use "
                         f"{', '.join(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS)}.")
    return avatar


def face_inputs(gr, elem_prefix: str = "") -> tuple[Any, Any]:
    """A face video and a face photo upload, on two tabs (ids ``<prefix>video``, ``<prefix>photo``); both pages
    take their face this way, and :func:`pick_avatar` chooses between them."""
    with gr.Tabs():
        with gr.Tab("Video"):
            video = gr.Video(label="Face video", sources=["upload"], elem_id=f"{elem_prefix}video")
        with gr.Tab("Photo"):
            photo = gr.Image(label="Face photo", type="filepath", format="png", sources=["upload"],
                             elem_id=f"{elem_prefix}photo")
    return video, photo


def read_chunk(path: str) -> tuple[int, np.ndarray] | None:
    """A microphone chunk (a WAV in Gradio's cache), removed once read: a long session would otherwise leave
    ten files a second behind. None if it is gone (an identical chunk just read and removed)."""
    try:
        with warnings.catch_warnings():  # the browser's chunks carry a streaming header (no length): expected
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, samples = wavfile.read(path)
    except FileNotFoundError:
        return None
    with contextlib.suppress(OSError):
        os.remove(path)
        os.rmdir(os.path.dirname(path))  # Gradio's per-file folder, if nothing else is in it
    return rate, samples


# --------------------------------------------------------------------------- the tab


def add_live_tab(streams: LiveStreams, problem: str | None, readable: Callable[..., str]) -> None:
    """The Live tab's components and events, inside the caller's ``gr.Blocks`` (``readable``: errors as one line
    with server paths shortened, as the Lip-sync tab shows them)."""
    import gradio as gr

    def start(video, photo, request: gr.Request):
        if problem:
            raise gr.Error("The models are not loaded; the message at the top of the page says why.", duration=None)
        key = request.session_hash or "api"
        try:
            live = streams.open(key, pick_avatar(video, photo))
        except LatentSyncError as err:
            logger.info("live session refused: %s", err)
            raise gr.Error(readable(err, video, photo), duration=None) from err
        try:
            yield NO_FRAME, (f"Live. Speak into the microphone, or play a file: the face answers about "
                             f"{live.session.latency:.1f} s later."), ""
            for frame in live.session:
                live.meter.count(frame)
                status = gr.skip()
                if live.meter.due():
                    status = "Live: " + live.meter.line(live.session.stats, live.session.stats.first_push)
                yield frame_value(frame), status, gr.skip()
            if live.feeder is not None:
                live.feeder.raise_error()
        except LatentSyncError as err:
            raise gr.Error(one_line(err), duration=None) from err
        finally:
            streams.close(key, live)

    def stop(request: gr.Request):
        streams.close(request.session_hash or "api")
        return "Stopped.", ""

    def push_microphone(chunk, request: gr.Request) -> None:
        live = streams.get(request.session_hash or "api")
        read = read_chunk(chunk) if chunk else None
        if live is None or read is None:
            return
        try:
            live.push(read[1], read[0])
        except StreamError as err:  # the session was just closed (Stop, a new Start)
            logger.debug("microphone chunk dropped: %s", err)

    def play(path, request: gr.Request):
        live = streams.get(request.session_hash or "api")
        if live is None:
            raise gr.Error("Press Start first: the file plays into the live stream.", duration=None)
        try:
            live.play(load_audio(path))
        except LatentSyncError as err:
            raise gr.Error(readable(err, path), duration=None) from err
        return f"Playing {os.path.basename(path)} into the stream."

    with gr.Tab("Live", id="live"):
        gr.Markdown("Pick a face, press **Start**, then speak into the microphone (press its record button) or play "
                    "a file: the avatar answers live.")
        with gr.Row():
            with gr.Column():
                video, photo = face_inputs(gr, "live_")
                with gr.Row():
                    start_button = gr.Button("Start", variant="primary", elem_id="live_start")
                    stop_button = gr.Button("Stop", elem_id="live_stop")
                microphone = gr.Audio(label="Microphone", sources=["microphone"], type="filepath", streaming=True,
                                      elem_id="live_microphone")
                speech = gr.Audio(label="Or play a file", sources=["upload"], type="filepath", elem_id="live_file")
                play_button = gr.Button("Play the file", elem_id="live_play")
                played = gr.Markdown(elem_id="live_played")  # apart from the status line, which the meter rewrites
            with gr.Column():
                view = gr.HTML(NO_FRAME, html_template=FRAME_TEMPLATE, elem_id="live_view", js_on_load=None,
                               css_template="img { width: 100%; height: auto; } img[src=''] { display: none; }")
                status = gr.Markdown(elem_id="live_status")
        start_button.click(start, inputs=[video, photo], outputs=[view, status, played], api_name="live",
                           concurrency_limit=streams.limit, concurrency_id="live")
        stop_button.click(stop, outputs=[status, played], api_name="live_stop", concurrency_limit=None)
        microphone.stream(push_microphone, inputs=microphone, outputs=None, stream_every=MIC_CHUNK_SECONDS,
                          time_limit=None, concurrency_limit=None, api_name="live_audio")
        play_button.click(play, inputs=speech, outputs=played, api_name="live_play", concurrency_limit=None)
