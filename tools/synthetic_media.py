"""Synthetic speech and talking-head videos for tests and the synthetic data set.

Speech comes from espeak-ng; the "face" is scikit-image's astronaut photo, drifting
gently, with a dark mouth that opens with the loudness of the audio. Dev helper only:
never imported by ``latentsync/``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Iterator, Sequence

import cv2
import numpy as np
import skimage.data
from scipy.io import wavfile

from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.mux import mux_audio
from latentsync.media.writer import VideoWriter
from latentsync.utils.files import atomic_output

# Square region of the 512x512 astronaut photo that is rendered: head and shoulders.
FACE_CROP = (60, 0, 380, 320)  # x0, y0, x1, y1 in photo pixels
# Mouth centre and closed half-size in photo pixels (measured by eye on the photo).
MOUTH_CENTER = (220.0, 146.0)
# A wide-open mouth is drawn larger than the photo's lips (by ~20% in width, ~50% in height) so
# that degrees of opening stay visible at the 32x32 input of the CPU SyncNet proof.
MOUTH_HALF_WIDTH = 24.0
MOUTH_MAX_HALF_HEIGHT = 14.0  # at envelope 1.0
BACKGROUND_RGB = (200, 200, 205)  # frames "without a face"


def _run(cmd: list[str], stdin: bytes | None = None) -> None:
    try:
        subprocess.run(cmd, input=stdin, capture_output=True, check=True)
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"{cmd[0]} failed: {err.stderr.decode('utf-8', 'replace').strip()}") from err


def speak(
    text: str,
    wav_path: str | os.PathLike,
    voice: str = "en",
    speed: int = 150,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng into a mono PCM16 wav at ``sample_rate``; returns the float32 samples."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "espeak.wav")
        # Text goes through stdin so that it can never be read as an option.
        _run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, "--stdin"], text.encode("utf-8"))
        with atomic_output(wav_path) as out:
            _run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", raw,
                  "-ac", "1", "-ar", str(sample_rate), "-acodec", "pcm_s16le", out])
    return load_audio(wav_path, sample_rate)


def astronaut_face() -> np.ndarray:
    """The 512x512 RGB uint8 astronaut photo (Eileen Collins), a public-domain face."""
    return skimage.data.astronaut()


def panning_face(num_frames: int, size: tuple[int, int] = (1080, 1920)) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) of a single-shot close-up of the astronaut at ``size`` (W, H): the camera pans
    slowly and zooms in by ~12% over the clip, smoothly (no cut, no jump), like a talking-head shot."""
    width, height = size
    photo = astronaut_face()
    base = 0.8 * width / 250  # the head (~250 photo pixels wide) fills most of the frame's width
    for i in range(num_frames):
        t = i / max(1, num_frames - 1)
        scale = base * (1 + 0.12 * t)
        x = width / 2 - scale * 220 + 0.05 * width * np.sin(np.pi * t)
        y = 0.4 * height - scale * 150 - 0.02 * height * t
        matrix = np.array([[scale, 0, x], [0, scale, y]], np.float32)
        yield cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float samples in [-1, 1] as mono PCM16 (the inverse of load_audio, up to rounding)."""
    pcm = np.clip(np.round(np.asarray(audio, np.float64) * 32768), -32768, 32767).astype(np.int16)
    with atomic_output(path) as tmp:
        wavfile.write(tmp, sample_rate, pcm)


def burst_audio(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited noise switched on and off in random syllable-length bursts, float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    gate = np.zeros(n, np.float32)
    t = 0
    while t < n:
        length = int(rng.uniform(0.08, 0.3) * sample_rate)
        if rng.random() < 0.6:
            gate[t : t + length] = rng.uniform(0.3, 1.0)
        t += length
    noise = rng.standard_normal(n).astype(np.float32)
    smooth = np.convolve(noise, np.ones(8, np.float32) / 8, mode="same")
    return (0.5 * gate * smooth / max(1e-6, np.abs(smooth).max())).astype(np.float32)


def num_video_frames(num_samples: int, fps: float = 25, sample_rate: int = SAMPLE_RATE) -> int:
    """Frames needed to cover ``num_samples`` of audio: ceil(duration * fps)."""
    return max(1, int(np.ceil(num_samples * fps / sample_rate - 1e-9)))


def loudness_envelope(audio: np.ndarray, fps: float = 25, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-video-frame loudness in [0, 1]: each frame's RMS in dB relative to the loudest frame, -50..0 dB -> 0..1."""
    audio = np.asarray(audio, np.float64)
    n = num_video_frames(len(audio), fps, sample_rate)
    edges = np.round(np.arange(n + 1) * sample_rate / fps).astype(int)
    rms = np.array([np.sqrt(np.mean(audio[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    if rms.max() <= 0:
        return np.zeros(n, np.float32)
    db = 20 * np.log10(np.maximum(rms / rms.max(), 1e-6))
    return np.clip(1 + db / 50, 0, 1).astype(np.float32)


def _drift(frame: int, fps: float, phases: np.ndarray, motion: str) -> tuple[float, float, float]:
    """(dx, dy, scale) of the photo at ``frame``: slow sinusoids; dx, dy are fractions of the size."""
    if motion == "none":
        return 0.0, 0.0, 1.0
    t = frame / fps
    dx = 0.02 * np.sin(2 * np.pi * 0.31 * t + phases[0])
    dy = 0.015 * np.sin(2 * np.pi * 0.23 * t + phases[1])
    scale = 1.0 + 0.03 * np.sin(2 * np.pi * 0.17 * t + phases[2])
    return dx, dy, scale


def write_talking_video(
    path: str | os.PathLike,
    audio: np.ndarray,
    fps: float = 25,
    size: tuple[int, int] = (256, 256),
    motion: str = "gentle",
    mouth_envelope: np.ndarray | None = None,
    with_audio: bool = True,
    seed: int = 0,
    blank_frames: Sequence[int] = (),
    sample_rate: int = SAMPLE_RATE,
) -> dict:
    """Render the astronaut "speaking" ``audio`` (float32 mono) as an H.264 mp4 at ``fps`` and ``size`` (W, H).

    The mouth opens with ``mouth_envelope`` (one value in [0, 1] per frame; default: the
    audio's :func:`loudness_envelope`; pass zeros for a closed mouth). Frames listed in
    ``blank_frames`` are plain background (no face). Returns metadata: ``num_frames``,
    ``fps``, ``size``, ``mouth_boxes`` (num_frames, 4) x0, y0, x1, y1 of the mouth region
    in output pixels (NaN on blank frames) and ``face_boxes`` likewise for the face.
    """
    width, height = size
    audio = np.asarray(audio, np.float32)
    n = num_video_frames(len(audio), fps, sample_rate)
    envelope = loudness_envelope(audio, fps, sample_rate) if mouth_envelope is None else np.asarray(mouth_envelope)
    if len(envelope) < n:
        envelope = np.pad(envelope, (0, n - len(envelope)))
    blank = set(int(i) for i in blank_frames)
    if motion not in ("gentle", "none"):
        raise ValueError(f"motion must be 'gentle' or 'none', got {motion!r}")
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)

    x0, y0, x1, y1 = FACE_CROP
    photo = cv2.resize(astronaut_face()[y0:y1, x0:x1], (width, height), interpolation=cv2.INTER_AREA)
    # Photo-pixel -> output-pixel scale of the crop.
    sx, sy = width / (x1 - x0), height / (y1 - y0)
    mouth = np.array([(MOUTH_CENTER[0] - x0) * sx, (MOUTH_CENTER[1] - y0) * sy])
    face_half = np.array([75 * sx, 100 * sy])  # hair to chin, roughly
    face_centre = np.array([(218 - x0) * sx, (125 - y0) * sy])

    mouth_boxes = np.full((n, 4), np.nan, np.float32)
    face_boxes = np.full((n, 4), np.nan, np.float32)
    background = np.empty((height, width, 3), np.uint8)
    background[:] = BACKGROUND_RGB

    with tempfile.TemporaryDirectory() as tmp:
        silent = os.path.join(tmp, "video.mp4")
        with VideoWriter(silent if with_audio else path, fps, width, height) as writer:
            for i in range(n):
                if i in blank:
                    writer.write(background)
                    continue
                dx, dy, scale = _drift(i, fps, phases, motion)
                # Scale about the image centre, then shift by a fraction of the size.
                centre = np.array([width / 2, height / 2])
                shift = centre * (1 - scale) + np.array([dx * width, dy * height])
                matrix = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float32)
                frame = cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REFLECT101)
                m = mouth * scale + shift
                half_w = MOUTH_HALF_WIDTH * sx * scale
                half_h = max(1.0, float(envelope[i]) * MOUTH_MAX_HALF_HEIGHT * sy * scale)
                cv2.ellipse(frame, (int(round(m[0])), int(round(m[1]))),
                            (int(round(half_w)), int(round(half_h))), 0, 0, 360, (60, 15, 20), -1, cv2.LINE_AA)
                mouth_boxes[i] = [m[0] - half_w, m[1] - half_h, m[0] + half_w, m[1] + half_h]
                f = face_centre * scale + shift
                face_boxes[i] = [*(f - face_half * scale), *(f + face_half * scale)]
                writer.write(frame)
        if with_audio:
            wav = os.path.join(tmp, "audio.wav")
            write_wav(wav, audio, sample_rate)
            mux_audio(silent, wav, path, shortest=False)
    return {"num_frames": n, "fps": fps, "size": (width, height), "mouth_boxes": mouth_boxes, "face_boxes": face_boxes}
