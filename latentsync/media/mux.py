"""Putting audio into a video and re-encoding clips with ffmpeg, written under a temporary name then renamed."""

from __future__ import annotations

import os

from latentsync.media.audio import SAMPLE_RATE
from latentsync.media.ffmpeg import ffmpeg_path, run_ffmpeg
from latentsync.media.probe import probe_video
from latentsync.media.writer import DEFAULT_CRF
from latentsync.utils.files import atomic_output, require_file


def mux_audio(
    video_path: str | os.PathLike,
    audio_path: str | os.PathLike,
    out_path: str | os.PathLike,
    audio_offset: float = 0.0,
    shortest: bool = True,
) -> None:
    """Copy the video stream of ``video_path`` and add the audio of ``audio_path`` as AAC.

    ``audio_offset`` (seconds) is where in the audio file the first video frame starts:
    that much audio is skipped. With ``shortest`` the output ends with the shorter stream
    (never after the video); without it, the longer stream sets the length.
    The result is written under a temporary name and renamed to ``out_path``.
    """
    video_path = require_file(video_path, "video")
    audio_path = require_file(audio_path, "audio")
    if audio_offset < 0:
        raise ValueError(f"audio_offset must be >= 0 seconds, got {audio_offset}")
    with atomic_output(out_path) as tmp:
        args = ["-y", "-loglevel", "error", "-i", ffmpeg_path(video_path)]
        if audio_offset > 0:
            args += ["-ss", f"{audio_offset:.6f}"]
        args += [
            "-i", ffmpeg_path(audio_path),
            "-map", "0:v:0",
            "-map", "1:a:0",
            "-c:v", "copy",
            "-c:a", "aac",
            "-b:a", "192k",
        ]
        if shortest:
            # -shortest alone lets the audio overrun by up to the muxer's interleaving
            # buffer (~0.2 s); capping at the video's duration makes the cut exact.
            args += ["-shortest", "-t", f"{probe_video(video_path).duration:.6f}"]
        args.append(ffmpeg_path(tmp))
        run_ffmpeg(args, f"{os.fspath(video_path)} + {os.fspath(audio_path)}", "mux")


def transcode_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float = 25,
    sample_rate: int = SAMPLE_RATE,
    frames: tuple[int, int] | None = None,
    crf: int = DEFAULT_CRF,
) -> None:
    """Re-encode the first video and first audio stream of ``src`` at ``fps`` and ``sample_rate`` mono
    (H.264 + AAC mp4); every other stream (timecode, data, subtitles) and all metadata are left out.

    ``frames`` = (start, stop) keeps output frames start..stop-1 exactly (and the audio of the same
    span), counted after the frame-rate conversion. Written under a temporary name, then renamed.
    """
    src = require_file(src, "video")
    video_filters, audio_filters = [f"fps={fps}"], [f"aresample={sample_rate}"]
    if frames is not None:
        start, stop = frames
        if not 0 <= start < stop:
            raise ValueError(f"frames must be 0 <= start < stop, got {frames}")
        video_filters += [f"trim=start_frame={start}:end_frame={stop}", "setpts=PTS-STARTPTS"]
        to_sample = sample_rate / fps
        audio_filters += [
            f"atrim=start_sample={round(start * to_sample)}:end_sample={round(stop * to_sample)}",
            "asetpts=PTS-STARTPTS",
        ]
    with atomic_output(dst) as tmp:
        args = [
            "-y", "-loglevel", "error",
            "-i", ffmpeg_path(src),
            "-map", "0:v:0", "-map", "0:a:0",
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-vf", ",".join(video_filters),
            "-af", ",".join(audio_filters),
            "-c:v", "libx264", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-ac", "1", "-ar", str(sample_rate),
            "-write_tmcd", "0",
            "-f", "mp4", ffmpeg_path(tmp),
        ]
        run_ffmpeg(args, src, "transcode")
