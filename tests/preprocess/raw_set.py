"""A small raw data set for the preprocessing tests: synthetic talking heads and the awkward cases.

Speech is a syllable-rate modulated noise band (no espeak needed), the face the astronaut photo
whose mouth opens with its loudness (tools.synthetic_media). Every file is named for what it is;
``EXPECTED`` says what the pipeline must make of it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import cv2
import numpy as np

from latentsync.media.audio import SAMPLE_RATE
from latentsync.media.ffmpeg import ffmpeg_exe
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from tools.synthetic_media import BACKGROUND_RGB, write_talking_video, write_wav

SIZE = (256, 256)

# name -> (final clip count, reason the source or one of its parts is dropped, or "")
EXPECTED = {
    "corrupt.mp4": (0, "undecodable"),
    "no_audio.mp4": (0, "no audio stream"),
    "cut.mp4": (2, ""),  # a hard cut between two 5.6 s shots
    "fps30_stereo44k.mkv": (1, ""),  # 30 fps, 44.1 kHz stereo, a second audio stream and subtitles
    "short3s.mp4": (0, "shot shorter than 5 s"),
    "long25s.mp4": (3, ""),  # 25 s -> three clips of 8.33 s
    "noface.mp4": (0, "no face"),
    "face_fades.mp4": (0, "face lost"),
}


def speech(seconds: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Speech-like audio: band noise gated at ~4 syllables per second with pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    noise = np.convolve(rng.standard_normal(n), np.hanning(24), mode="same")
    syllables = np.clip(np.sin(2 * np.pi * (3.5 + rng.uniform(0, 1)) * t + rng.uniform(0, 6)), 0, None)
    pauses = (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.6).astype(float)
    wave = noise * syllables * pauses
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def talking(path: str, seconds: float, seed: int, fps: float = 25, with_audio: bool = True, **kwargs) -> np.ndarray:
    audio = speech(seconds, seed)
    write_talking_video(path, audio, fps=fps, size=SIZE, with_audio=with_audio, seed=seed, **kwargs)
    return audio


def _rewrite(src: str, dst: str, audio: np.ndarray, edit, fps: float = 25) -> None:
    """Re-encode ``src`` with ``edit(index, frame)`` applied to every frame, and ``audio`` muxed in."""
    with tempfile.TemporaryDirectory() as tmp:
        silent, wav = os.path.join(tmp, "v.mp4"), os.path.join(tmp, "a.wav")
        with VideoWriter(silent, fps, *SIZE) as writer:
            for index, frame in enumerate(VideoReader(src, fps=fps)):
                writer.write(edit(index, frame))
        write_wav(wav, audio)
        mux_audio(silent, wav, dst, shortest=False)


def write_cut(path: str, folder: str, seconds: float = 5.6) -> None:
    """One shot, then a hard cut to a mirrored, zoomed second shot."""
    first, second = os.path.join(folder, "first.mp4"), os.path.join(folder, "second.mp4")
    a = talking(first, seconds, seed=11)
    b = talking(second, seconds, seed=12)
    joined = os.path.join(folder, "joined.mp4")
    frames = [f for f in VideoReader(first)] + [
        cv2.resize(f[:, ::-1][24:232, 24:232], SIZE, interpolation=cv2.INTER_LINEAR) for f in VideoReader(second)
    ]
    with VideoWriter(joined, 25, *SIZE) as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    _rewrite(joined, path, np.concatenate([a, b]), lambda i, f: f)


def write_face_fades(path: str, folder: str, seconds: float = 6.0) -> None:
    """The face is there for 2.5 s, fades out over 1 s (no cut for a shot detector), then is gone."""
    plain = os.path.join(folder, "fades_src.mp4")
    audio = talking(plain, seconds, seed=21)
    background = np.empty((SIZE[1], SIZE[0], 3), np.float32)
    background[:] = BACKGROUND_RGB

    def fade(index: int, frame: np.ndarray) -> np.ndarray:
        alpha = float(np.clip((index / 25 - 2.5) / 1.0, 0, 1))
        return (frame * (1 - alpha) + background * alpha).astype(np.uint8)

    _rewrite(plain, path, audio, fade)


def write_extra_streams(path: str, folder: str) -> None:
    """5.6 s talking head at 30 fps in Matroska: 44.1 kHz stereo speech, a second audio stream, subtitles."""
    video = os.path.join(folder, "extra_src.mp4")
    audio = talking(video, 5.6, seed=31, fps=30, with_audio=False)
    stereo = os.path.join(folder, "stereo.wav")
    ffmpeg = ffmpeg_exe()
    write_wav(os.path.join(folder, "mono.wav"), audio)
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", os.path.join(folder, "mono.wav"), "-ac", "2",
                    "-ar", "44100", stereo], check=True)
    srt = os.path.join(folder, "subs.srt")
    with open(srt, "w") as f:
        f.write("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    subprocess.run([ffmpeg, "-y", "-loglevel", "error", "-i", video, "-i", stereo, "-i", stereo, "-i", srt,
                    "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s", "-c:v", "copy", "-c:a", "aac",
                    "-c:s", "srt", path], check=True)


def make_raw_set(folder: str, names: list[str] | None = None) -> dict[str, tuple[int, str]]:
    """Write the files of ``EXPECTED`` (or the named subset) into ``folder``; returns their expectations."""
    names = list(EXPECTED) if names is None else names
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        writers = {
            "corrupt.mp4": lambda p: open(p, "wb").write(np.random.default_rng(0).bytes(4096)),
            "no_audio.mp4": lambda p: talking(p, 1, seed=2, with_audio=False),
            "cut.mp4": lambda p: write_cut(p, work),
            "fps30_stereo44k.mkv": lambda p: write_extra_streams(p, work),
            "short3s.mp4": lambda p: talking(p, 3, seed=4),
            "long25s.mp4": lambda p: talking(p, 25, seed=5),
            "noface.mp4": lambda p: talking(p, 5.6, seed=6, blank_frames=range(6 * 25)),
            "face_fades.mp4": lambda p: write_face_fades(p, work),
        }
        for name in names:
            writers[name](os.path.join(folder, name))
    return {name: EXPECTED[name] for name in names}
