"""Write a small synthetic talking-head data set laid out like the preprocessing pipeline's output.

Each clip is the astronaut photo "speaking" a few espeak-ng sentences: the mouth opens with
the loudness of the speech in the vowel band (wide on vowels, nearly shut on stops and hiss),
so audio and mouth motion are really synchronised and a SyncNet can learn to tell them apart from shifted
pairs. Clips differ in sentences, voice, speed, crop, scale, colour and mirroring.

Output (``OUT`` is ``--output_dir``)::

    OUT/high_visual_quality/train/synth_0000_000.mp4   25 fps, 256x256 face-aligned, 16 kHz AAC
    OUT/high_visual_quality/val/synth_1000_000.mp4     held-out sentences, voices and variants
    OUT/fileslist/{train,val}.txt                      one absolute video path per line
    OUT/metadata.json                                  text, voice, speed, variant of each clip

The ``high_visual_quality`` folder and ``<name>_NNN.mp4`` names match the last stage of
``preprocess/data_processing_pipeline.py`` (segments of one source video are numbered).
Dev helper: ``python -m tools.make_synthetic_dataset --output_dir data/synthetic``.

``--raw N`` writes, instead, N raw videos for that pipeline: ``OUT/talk_NNN.mp4``, the whole rendered
frame (unaligned, gently moving) with its speech, at least ``RAW_MIN_SECONDS`` long.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from latentsync.utils.files import atomic_output
from latentsync.utils.logging import configure_logging
from latentsync.media.audio import SAMPLE_RATE
from latentsync.media.mux import mux_audio
from latentsync.media.reader import VideoReader
from latentsync.media.writer import VideoWriter
from tools.synthetic_media import loudness_envelope, num_video_frames, speak, write_talking_video, write_wav
from tools.write_fileslist import write_fileslist

logger = logging.getLogger(__name__)

FPS = 25
OUTPUT_SIZE = 256  # face-aligned clips are square, like the preprocessing pipeline's 256 default
# Face-aligned square crop of a write_talking_video frame, as fractions of the rendered size:
# horizontal centre, top edge, side. It keeps forehead to chin with the mouth at ~64% of the
# height, i.e. in the lower half that SyncNet looks at.
ALIGN_CENTER_X = 0.508
ALIGN_TOP = 0.166
ALIGN_SIDE = 0.45
SPLIT_FIRST_ID = {"train": 0, "val": 1000}
RAW_MIN_SECONDS = 6.0  # the pipeline keeps shots of 5 s or more

# Sentences of varied rhythm; train and val draw from disjoint halves.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "She sells sea shells by the sea shore.",
    "A big black bug bit a big black bear.",
    "How much wood would a woodchuck chuck?",
    "Peter Piper picked a peck of pickled peppers.",
    "We will meet at noon, near the old mill.",
    "Open the window, then close the door.",
    "Many hands make light work, my friend.",
    "Bring me a map, a pen, and some paper.",
    "Sunny mornings are made for long walks.",
    "Is it true that owls can turn their heads?",
    "Every autumn the maple leaves turn red.",
    "Please remember to water the plants.",
    "Mobile phones changed the way we talk.",
    "Bob ate a bowl of warm oatmeal.",
    "Wait! Who moved my papers away?",
    "Mama made more mango jam on Monday.",
    "Rockets rise above the silent launch pad.",
    "Yesterday the train was an hour late.",
    "Apples and oranges are both round fruit.",
    "Listen to the rhythm of the falling rain.",
    "I never thought the puzzle would be so hard.",
    "Look at the moon, it is so bright tonight.",
    "The museum opens at nine o'clock sharp.",
    "Bake the bread until the crust is golden.",
    "Hello there, how are you doing today?",
    "Quiet please, the baby is asleep.",
    "Zebras, yaks and wombats live in the zoo.",
    "One, two, three, four, five, six, seven.",
    "Maybe we should paint the fence blue.",
    "Our teacher told us a funny story.",
)
VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f3", "en-gb+f2",
    "en-us+m3", "en-gb-x-rp+f4", "en+m5", "en-us-nyc",
)
SPEEDS = (120, 190)  # words per minute, uniform range
PAUSE_SECONDS = (0.15, 0.6)  # silence between sentences, and at both ends


@dataclass(frozen=True)
class ClipSpec:
    """Everything that defines one clip; drawn from a seeded generator so a data set is reproducible."""

    name: str
    sentences: tuple[str, ...]
    voice: str
    speed: int
    pauses: tuple[float, ...]  # seconds of silence before each sentence and after the last
    crop_scale: float  # side of the aligned crop relative to ALIGN_SIDE
    crop_shift: tuple[float, float]  # (dx, dy) of the crop in fractions of its side
    colour_gain: tuple[float, float, float]  # RGB multipliers
    brightness: float  # added after the gains, in 0..255 units
    mirror: bool
    motion_seed: int


def draw_specs(split: str, count: int, seed: int, sentences_per_clip: tuple[int, int] = (1, 2)) -> list[ClipSpec]:
    """``count`` clip specs for ``split``; val uses sentences and voices that train never does."""
    rng = np.random.default_rng([seed, SPLIT_FIRST_ID[split]])
    half_s, half_v = len(SENTENCES) * 3 // 4, len(VOICES) * 4 // 5
    pool = SENTENCES[:half_s] if split == "train" else SENTENCES[half_s:]
    voices = VOICES[:half_v] if split == "train" else VOICES[half_v:]
    specs = []
    for k in range(count):
        n = int(rng.integers(sentences_per_clip[0], sentences_per_clip[1] + 1))
        chosen = tuple(pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False))
        specs.append(
            ClipSpec(
                name=f"synth_{SPLIT_FIRST_ID[split] + k:04d}_000",
                sentences=chosen,
                voice=str(voices[rng.integers(len(voices))]),
                speed=int(rng.integers(SPEEDS[0], SPEEDS[1] + 1)),
                pauses=tuple(float(p) for p in rng.uniform(*PAUSE_SECONDS, size=len(chosen) + 1)),
                crop_scale=float(rng.uniform(0.9, 1.12)),
                crop_shift=(float(rng.uniform(-0.04, 0.04)), float(rng.uniform(-0.03, 0.03))),
                colour_gain=tuple(float(g) for g in rng.uniform(0.8, 1.2, size=3)),
                brightness=float(rng.uniform(-20, 20)),
                mirror=bool(rng.integers(2)),
                motion_seed=int(rng.integers(2**31)),
            )
        )
    return specs


VOWEL_BAND_HZ = (250.0, 1000.0)  # first-formant region: strong on open vowels, weak on closures and hiss
OPENING_RANGE_DB = 25.0  # band energy this far below the clip's peak counts as a closed mouth


def mouth_envelope(audio: np.ndarray, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Per-frame mouth opening in [0, 1] from the audio under each frame.

    Mostly the energy of the vowel band (open on vowels, nearly shut on stops and fricatives,
    so the mouth moves with every syllable, not just with speech versus pause), times the
    overall loudness so that silence closes the mouth; lightly smoothed like real muscles.
    """
    audio = np.asarray(audio, np.float64)
    loud = loudness_envelope(audio, fps, sample_rate).astype(np.float64)
    edges = np.round(np.arange(len(loud) + 1) * sample_rate / fps).astype(int)
    band = np.zeros(len(loud))
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        chunk = audio[a:b]
        if len(chunk) < 16:
            continue
        power = np.abs(np.fft.rfft(chunk * np.hanning(len(chunk)))) ** 2
        freqs = np.fft.rfftfreq(len(chunk), 1 / sample_rate)
        band[i] = power[(freqs >= VOWEL_BAND_HZ[0]) & (freqs <= VOWEL_BAND_HZ[1])].sum()
    if band.max() <= 0:
        return np.zeros(len(loud), np.float32)
    db = 10 * np.log10(np.maximum(band / band.max(), 1e-12))
    opening = np.clip(1 + db / OPENING_RANGE_DB, 0, 1) * np.clip(loud / 0.5, 0, 1)
    padded = np.pad(opening, 1, mode="edge")
    smoothed = 0.2 * padded[:-2] + 0.6 * padded[1:-1] + 0.2 * padded[2:]
    return np.clip(smoothed, 0.0, 1.0).astype(np.float32)


def synthesise_speech(spec: ClipSpec, folder: str) -> np.ndarray:
    """The clip's audio: each sentence spoken by espeak-ng, separated by the spec's pauses, padded to whole frames."""
    parts = []
    for k, sentence in enumerate(spec.sentences):
        parts.append(np.zeros(int(spec.pauses[k] * SAMPLE_RATE), np.float32))
        parts.append(speak(sentence, os.path.join(folder, f"s{k}.wav"), voice=spec.voice, speed=spec.speed))
    parts.append(np.zeros(int(spec.pauses[-1] * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio = audio * (0.7 / peak)
    frames = num_video_frames(len(audio), FPS, SAMPLE_RATE)
    return np.pad(audio, (0, int(round(frames * SAMPLE_RATE / FPS)) - len(audio)))


def align_frame(frame: np.ndarray, spec: ClipSpec, size: int = OUTPUT_SIZE) -> np.ndarray:
    """Cut the spec's face-aligned square from a rendered frame, recolour it and resize to ``size``."""
    h, w = frame.shape[:2]
    side = ALIGN_SIDE * spec.crop_scale * min(h, w)
    cx = ALIGN_CENTER_X * w + spec.crop_shift[0] * side
    top = ALIGN_TOP * h + spec.crop_shift[1] * side - (side - ALIGN_SIDE * min(h, w)) / 2
    scale = size / side
    # Affine map from rendered pixels to output pixels (x' = scale * (x - x0)).
    matrix = np.array([[scale, 0.0, -scale * (cx - side / 2)], [0.0, scale, -scale * top]], np.float32)
    out = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT101)
    out = out.astype(np.float32) * np.asarray(spec.colour_gain, np.float32) + spec.brightness
    out = np.clip(out, 0, 255).astype(np.uint8)
    return out[:, ::-1].copy() if spec.mirror else out


def make_clip(spec: ClipSpec, path: str, render_size: int = 256) -> dict:
    """Render one clip to ``path`` (atomically); return its metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        audio = synthesise_speech(spec, tmp)
        envelope = mouth_envelope(audio)
        rendered = os.path.join(tmp, "rendered.mp4")
        write_talking_video(
            rendered, audio, fps=FPS, size=(render_size, render_size), mouth_envelope=envelope,
            with_audio=False, seed=spec.motion_seed,
        )
        aligned = os.path.join(tmp, "aligned.mp4")
        with VideoWriter(aligned, FPS, OUTPUT_SIZE, OUTPUT_SIZE) as writer:
            for frame in VideoReader(rendered, fps=FPS):
                writer.write(align_frame(frame, spec))
        wav = os.path.join(tmp, "audio.wav")
        write_wav(wav, audio)
        mux_audio(aligned, wav, path, shortest=False)
    return {"path": os.path.abspath(path), "seconds": len(audio) / SAMPLE_RATE, "num_frames": len(envelope), **asdict(spec)}


def make_raw_video(spec: ClipSpec, path: str, size: int = 256) -> dict:
    """One raw talking-head video (what a camera gives: unaligned, with its speech), silence-padded to
    ``RAW_MIN_SECONDS``, written atomically; its metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        audio = synthesise_speech(spec, tmp)
        audio = np.pad(audio, (0, max(0, int(RAW_MIN_SECONDS * SAMPLE_RATE) - len(audio))))
        with atomic_output(path) as out:
            write_talking_video(out, audio, fps=FPS, size=(size, size), mouth_envelope=mouth_envelope(audio),
                                seed=spec.motion_seed)
    return {"path": os.path.abspath(path), "seconds": len(audio) / SAMPLE_RATE, **asdict(spec)}


def make_raw_set(output_dir: str, count: int, seed: int = 0, size: int = 256) -> list[str]:
    """``count`` raw videos ``output_dir/talk_NNN.mp4`` (existing ones are kept); their paths."""
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for k, spec in enumerate(draw_specs("train", count, seed, sentences_per_clip=(2, 2))):
        path = os.path.join(output_dir, f"talk_{k:03d}.mp4")
        if not os.path.isfile(path):
            make_raw_video(spec, path, size)
            logger.info("raw video %d/%d: %s", k + 1, count, path)
        paths.append(path)
    return paths


def _make_clip_job(job: tuple[ClipSpec, str, int]) -> dict:
    spec, path, render_size = job
    if os.path.isfile(path):  # resumable: clips already written are kept
        return {"path": os.path.abspath(path), **asdict(spec)}
    return make_clip(spec, path, render_size)


def make_dataset(
    output_dir: str, num_train: int = 48, num_val: int = 16, seed: int = 0, workers: int = 1, render_size: int = 256
) -> dict[str, list[str]]:
    """Write the train and val clips, file lists and metadata under ``output_dir``; return the video paths per split."""
    jobs = []
    for split, count in (("train", num_train), ("val", num_val)):
        folder = os.path.join(output_dir, "high_visual_quality", split)
        os.makedirs(folder, exist_ok=True)
        jobs += [(spec, os.path.join(folder, spec.name + ".mp4"), render_size) for spec in draw_specs(split, count, seed)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            records = list(pool.map(_make_clip_job, jobs))
    else:
        records = []
        for k, job in enumerate(jobs):
            records.append(_make_clip_job(job))
            logger.info("clip %d/%d: %s", k + 1, len(jobs), job[1])
    paths = {}
    for split in ("train", "val"):
        folder = os.path.join(output_dir, "high_visual_quality", split)
        paths[split] = write_fileslist(os.path.join(output_dir, "fileslist", f"{split}.txt"), [folder])
    with atomic_output(os.path.join(output_dir, "metadata.json")) as tmp, open(tmp, "w") as f:
        json.dump(records, f, indent=1)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=48)
    parser.add_argument("--num_val", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="clips rendered in parallel")
    parser.add_argument("--render_size", type=int, default=256, help="size the photo is rendered at before alignment")
    parser.add_argument("--raw", type=int, default=0, metavar="N",
                        help="write N raw (unaligned) talking-head videos for data_processing_pipeline.sh instead")
    args = parser.parse_args(argv)
    configure_logging()
    if args.raw:
        paths = make_raw_set(args.output_dir, args.raw, args.seed, args.render_size)
        logger.info("wrote %d raw videos under %s", len(paths), args.output_dir)
        return 0
    paths = make_dataset(args.output_dir, args.num_train, args.num_val, args.seed, args.workers, args.render_size)
    logger.info("wrote %d train and %d val clips under %s", len(paths["train"]), len(paths["val"]), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
