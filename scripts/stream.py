"""Stream a talking avatar live: speech in (a file played at real-time pace, or raw PCM on standard
input), lip-synced frames out at 25 fps as fragmented MP4 or MPEG-TS (a file or a pipe) or to an
rtmp:// or srt:// server.

Examples:
  ./stream.sh --video_path face.mp4 --audio_path speech.wav --output live.mp4
  ffmpeg -i speech.mp3 -f s16le -ac 1 -ar 16000 - | ./stream.sh --video_path face.mp4 --audio_path - -o - | ffplay -
  ./stream.sh --video_path face.mp4 --audio_path speech.wav --output rtmp://127.0.0.1/live/key

--video_path is the avatar: a face video (looped forward and backward) or a photo. --audio_path is an
audio file, or - for raw PCM on standard input (--input_rate, --input_format, --input_channels say
what it is). --output is a .mp4/.m4v/.mov (fragmented MP4) or .ts/.m2ts/.mts (MPEG-TS) file, written
under a temporary name and renamed when the stream ends; - for standard output (MPEG-TS unless
--format fmp4); or an rtmp:// (FLV), rtmps:// or srt:// (MPEG-TS) URL, sent through ffmpeg.

--pace realtime (the default) is a live stream: frames leave at 25 fps from the start, the avatar's
own frames until speech arrives, and a file is pushed as it would be heard. --pace fast computes
the same kind of stream as fast as the machine can (its frames depend only on the audio).
Progress lines (fps, lip-synced, late and dropped frames, first-frame latency) and a summary go to
standard error. Defaults come from --config (configs/inference.yaml); the flags override its keys.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from typing import Iterator

from latentsync.cli import ArgumentParser, number, run_main
from latentsync.errors import CheckpointError, ConfigError
from latentsync.media.audio import SAMPLE_RATE, load_audio
from latentsync.media.live import FILE_FORMATS, STREAM_FORMATS, LiveWriter, is_url, stream_format
from latentsync.pipelines.loading import load_pipeline_for, make_detector, missing_model_files
from latentsync.settings import SETTINGS, HelpFormatter, InferenceSettings, add_setting_flags, parse_settings
from latentsync.streaming import StreamOptions, StreamSession, WallClock
from latentsync.streaming.options import ACCELERATIONS
from latentsync.streaming.drive import PCM_FORMATS, Feeder, Meter, file_chunks, pcm_chunks
from latentsync.utils.files import check_output_path, require_file
from latentsync.utils.logging import configure_logging

logger = logging.getLogger("stream")

STDIO = "-"
# The settings a stream uses: not the offline output, its encoding, its feature cache and working folder,
# nor the Whisper windowing (a stream always slides its window with the audio).
STREAM_SETTINGS = tuple(spec.name for spec in SETTINGS if spec.name not in (
    "video_out_path", "archival", "audio_cache_dir", "temp_dir", "audio_windows"))
PCM_FLAGS = ("input_rate", "input_format", "input_channels")  # raw PCM on standard input only
STREAM_OPTION_FLAGS = ("clip_frames", "silence_dbfs", "jitter", "avatar_cache_dir", "acceleration")


# --------------------------------------------------------------------------- arguments


def _level(text: str) -> float | None:
    return None if text.lower() == "none" else number(float)(text)


def build_parser() -> argparse.ArgumentParser:
    """``--config``, the settings a stream uses (latentsync/settings.py), then the stream's own flags."""
    parser = ArgumentParser(prog="python -m scripts.stream", description=__doc__, formatter_class=HelpFormatter)
    add_setting_flags(parser, STREAM_SETTINGS)
    add = parser.add_argument
    add("-o", "--output", required=True, default=argparse.SUPPRESS, help="a .mp4/.m4v/.mov or .ts/.m2ts/.mts "
        "file, - (standard output), or an rtmp://, rtmps:// or srt:// URL")
    add("--format", choices=tuple(STREAM_FORMATS), default=argparse.SUPPRESS, help="fmp4 or mpegts (default: "
        "by the file's extension; mpegts for standard output and servers)")
    add("--pace", choices=("realtime", "fast"), default="realtime",
        help="realtime: a live stream at 25 fps, a file pushed as it would be heard; fast: as fast as possible")
    add("--chunk_ms", type=number(float, 0, above=True), default=20.0,
        help="an audio file is pushed in chunks of this many milliseconds")
    add("--report_every", type=number(float, 0, above=True), default=2.0,
        help="seconds between progress lines")
    add("-v", "--verbose", action="store_true", help="debug logging, and the face detector's native log lines")
    pcm = parser.add_argument_group("raw PCM on standard input (--audio_path -)", argument_default=argparse.SUPPRESS)
    pcm.add_argument("--input_rate", type=number(int, 1), help=f"samples per second (default {SAMPLE_RATE})")
    pcm.add_argument("--input_format", choices=tuple(PCM_FORMATS), help="sample format (default s16le)")
    pcm.add_argument("--input_channels", type=number(int, 1, 8), help="interleaved channels, averaged to mono "
                     "(default 1)")
    defaults = StreamOptions()
    options = parser.add_argument_group("stream options (given ones only: the others keep their defaults)",
                                        argument_default=argparse.SUPPRESS)
    add = options.add_argument
    add("--clip_frames", type=int, help="frames generated together: 8 answers 320 ms sooner than 16, 16 is what "
        "the model was trained on (default: the UNet config's)")
    add("--silence_dbfs", type=_level, help="audio quieter than this (dB full scale) is silence: the avatar's own "
        f"frames; none: any audio is speech (default {defaults.silence_dbfs:g})")
    add("--jitter", type=number(float, 0), help="seconds of lateness in the audio a live stream absorbs, "
        f"added to its latency (default {defaults.jitter:g})")
    add("--avatar_cache_dir", help="where prepared avatars are kept by content (default: "
        "$XDG_CACHE_HOME/latentsync/avatars); an empty string keeps them in memory only")
    add("--acceleration", choices=ACCELERATIONS, help="compile or cudagraphs run the UNet through "
        "torch.compile on CUDA (default none)")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, InferenceSettings, StreamOptions]:
    """The flags, the settings (flags over the --config file) and the stream options, checked before any model loads."""
    args, settings = parse_settings(build_parser(), argv)
    options = StreamOptions(**{name: getattr(args, name) for name in STREAM_OPTION_FLAGS if hasattr(args, name)})
    if settings.audio_path != STDIO:
        pcm = [f"--{name}" for name in PCM_FLAGS if hasattr(args, name)]
        if pcm:
            raise ConfigError(f"{', '.join(pcm)} describe raw PCM on standard input (--audio_path -), "
                              f"not the file {settings.audio_path!r}")
    return args, settings, options


# --------------------------------------------------------------------------- input and output


def audio_source(args: argparse.Namespace, settings: InferenceSettings, clock) -> tuple[Iterator, int, object]:
    """The chunks to push, their sample rate and the clock that paces them (a file at real-time pace; a pipe
    at its own). A missing, unreadable or silent-less file is a MediaError now, before any model loads."""
    if settings.audio_path == STDIO:
        if sys.stdin is None or sys.stdin.isatty():
            raise ConfigError("--audio_path - reads raw PCM from standard input, which is a terminal: pipe audio "
                              "into it, e.g. ffmpeg -i speech.wav -f s16le -ac 1 -ar 16000 - | ./stream.sh ...")
        chunks = pcm_chunks(sys.stdin.buffer, getattr(args, "input_format", "s16le"),
                            getattr(args, "input_channels", 1))
        return chunks, getattr(args, "input_rate", SAMPLE_RATE), None
    samples = load_audio(settings.audio_path)
    logger.info("audio %s: %.2f s", settings.audio_path, len(samples) / SAMPLE_RATE)
    return file_chunks(samples, SAMPLE_RATE, args.chunk_ms / 1000), SAMPLE_RATE, clock


def check_output(args: argparse.Namespace, settings: InferenceSettings) -> str:
    """The stream format of ``--output``; a file that cannot be written or would replace an input is refused."""
    if args.output == STDIO:
        if sys.stdout.isatty():
            raise ConfigError("--output - writes a binary stream to standard output, which is a terminal: "
                              "pipe it into a player (| ffplay -) or name a file")
        return stream_format(0, getattr(args, "format", None))
    if not is_url(args.output):
        inputs = tuple(path for path in (settings.video_path, settings.audio_path) if path and path != STDIO)
        check_output_path(args.output, inputs, extensions=tuple(FILE_FORMATS))
    return stream_format(args.output, getattr(args, "format", None))


@contextlib.contextmanager
def stream_target(output: str) -> Iterator[str | int]:
    """What the writer writes to; for standard output, a private copy of it, while everything else printed to
    standard output goes to standard error, so that nothing but the stream reaches the pipe."""
    if output != STDIO:
        yield output
        return
    sys.stdout.flush()
    stream_fd, saved = os.dup(1), os.dup(1)
    os.dup2(2, 1)
    try:
        yield stream_fd
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(stream_fd)


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace, settings: InferenceSettings, options: StreamOptions) -> int:
    require_file(settings.video_path, "avatar (--video_path)")
    fmt = check_output(args, settings)
    clock = WallClock() if args.pace == "realtime" else None
    chunks, rate, pace = audio_source(args, settings, clock)
    absent = missing_model_files(settings.unet_config_path, settings.inference_ckpt_path, settings.whisper_path,
                                 settings.vae_path)
    if absent:
        raise CheckpointError("; ".join(absent))
    detector = make_detector(settings.face_detector, settings.device, show_native_logs=args.verbose)
    try:
        pipeline = load_pipeline_for(settings, face_detector=detector, show_native_logs=args.verbose)
        with StreamSession(pipeline, settings.video_path, settings, options, clock=clock) as session:
            avatar = session.avatar
            height, width = avatar.frames.shape[1:3]
            logger.info("avatar %s: %d frames of %dx%d, face in %d, %s in %.2f s", settings.video_path, len(avatar),
                        width, height, int(avatar.has_face.sum()),
                        "prepared" if session.stats.avatar_prepared else "read from the cache",
                        session.stats.avatar_seconds)
            if clock is not None:
                logger.info("live at 25 fps; speech reaches the face %.2f s after it is pushed (%.2f s of it "
                            "computing a clip)", session.latency, session.stats.compute_margin)
            stream(args, session, chunks, rate, pace, fmt, width, height)
    finally:
        close = getattr(detector, "close", None)
        if close is not None:
            close()
    return 0


def stream(args, session: StreamSession, chunks, rate: int, pace, fmt: str, width: int, height: int) -> None:
    """Feed the session from its thread, write every frame it gives, report as it goes and at the end."""
    with stream_target(args.output) as target, LiveWriter(
        target, fmt, width, height, name="standard output" if args.output == STDIO else None
    ) as writer:
        logger.info("streaming %s to %s (Ctrl+C stops)", fmt, writer.shown)
        feeder = Feeder(session, chunks, rate, pace=pace).start()
        meter = Meter(args.report_every)
        try:
            for frame in session:
                writer.write(frame.image, frame.audio)
                meter.count(frame)
                if meter.due():
                    logger.info("%s", meter.line(session.stats, feeder.first_push))
            feeder.raise_error()
        finally:
            feeder.stop()
    logger.info("done: %s to %s", meter.summary(session.stats, feeder.first_push), writer.shown)


def main(argv: list[str] | None = None) -> int:
    stopping = ["the output being written was removed"]

    def body() -> int:
        args, settings, options = parse_args(argv)
        if args.output == STDIO or is_url(args.output):
            stopping[0] = "the stream was stopped"
        configure_logging(args.verbose)
        return run(args, settings, options)

    return run_main(body, lambda: stopping[0])


if __name__ == "__main__":
    sys.exit(main())
