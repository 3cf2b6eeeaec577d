"""How far the ``stream`` Whisper window mode is from the offline ``overlap`` mode, by look-ahead (prints a table).

For each Whisper checkpoint and look-ahead it computes the features of one speech recording in both
modes and prints, per encoder layer, the relative RMS difference ``rms(stream - overlap) / rms(overlap)``
and the largest per-frame relative difference, plus the latency the look-ahead costs a live stream.

    python -m tools.stream_features                                   # tiny random + transparent Whispers
    python -m tools.stream_features --whisper checkpoints/whisper/tiny.pt --seconds 40 --lookahead 0 10 25 50

What the numbers mean depends on the checkpoint: with the test suite's random-weight Whispers they
show the plumbing (window placement, normalisation, padding: at a look-ahead covering the whole
recording the modes agree exactly), not how a trained Whisper's attention reacts to missing right
context; run it on ``checkpoints/whisper/tiny.pt`` for that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from latentsync.whisper import stream_windows
from latentsync.whisper.audio2feature import Audio2Feature
from tools.synthetic_media import speak
from tools.tiny_models import write_whisper

SENTENCES = (
    "The quick brown fox jumps over the lazy dog. Streaming lip sync needs audio features before the "
    "whole sentence has been spoken. Every frame of video waits for a little audio to its right."
)


def speech(seconds: float, folder: Path) -> np.ndarray:
    """``seconds`` of espeak-ng speech (the sentences repeated), 16 kHz mono float32."""
    one = speak(SENTENCES, folder / "speech.wav")
    return np.tile(one, int(np.ceil(seconds * 16000 / len(one))))[: int(seconds * 16000)]


def compare(encoder: Audio2Feature, audio: np.ndarray, lookahead: int) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: relative RMS difference and largest per-frame relative difference, stream vs overlap."""
    reference = encoder.audio2feat(audio, windows="overlap")
    stream = stream_windows.FeatureStream(encoder, lambda a, b: audio[a:b], lookahead=lookahead)
    features = stream.all_features(len(audio))
    diff = (features - reference).double()
    scale = reference.double().pow(2).mean(dim=(0, 2)).sqrt()
    rms = diff.pow(2).mean(dim=(0, 2)).sqrt() / scale
    worst = (diff.pow(2).mean(dim=2).sqrt() / scale).amax(dim=0)
    return rms.numpy(), worst.numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--whisper", nargs="*", default=None,
                        help="openai-whisper checkpoints (default: the tests' random one and the transparent one)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the speech recording")
    parser.add_argument("--lookahead", type=int, nargs="+", default=[0, 5, 10, 25, 50, 100],
                        help="look-aheads in 50 Hz feature frames (20 ms each)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="stream-features-") as tmp:
        folder = Path(tmp)
        checkpoints = [Path(p) for p in args.whisper] if args.whisper else [
            write_whisper(folder / "random", Path(__file__).resolve().parent.parent / "tests" / "fixtures"
                          / "golden" / "whisper_tiny_random.pt"),
            write_whisper(folder / "transparent", transparent=True),
        ]
        audio = speech(args.seconds, folder)
        print(f"{args.seconds:g} s of espeak-ng speech; stream mode vs overlap mode; "
              "relative RMS difference per layer (worst frame in brackets)")
        for path in checkpoints:
            encoder = Audio2Feature(path, device="cpu")
            print(f"\n{path.parent.name}/{path.name}: {encoder.num_layers} layers")
            for lookahead in args.lookahead:
                started = time.perf_counter()
                rms, worst = compare(encoder, audio, lookahead)
                latency = (lookahead * stream_windows.SAMPLES_PER_FEATURE + 1280) / 16000
                cells = "  ".join(f"{r:.2e} ({w:.1e})" for r, w in zip(rms, worst))
                print(f"  look-ahead {lookahead * 20:4d} ms (audio wait {latency * 1000:.0f} ms beyond a frame): "
                      f"{cells}  [{time.perf_counter() - started:.1f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
