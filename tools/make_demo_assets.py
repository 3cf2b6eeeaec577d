"""Make the demo input of ./inference.sh: assets/demo_video.mp4 and assets/demo_audio.wav.

The video is the public-domain astronaut photo (scikit-image) drifting gently with a closed
mouth, 25 fps, as long as the speech; the audio is a sentence spoken by espeak-ng. Both are
small enough to commit (about 200 kB together). Run from the project root:

  .venv/bin/python -m tools.make_demo_assets [--out_dir assets] [--size 320]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from tools.synthetic_media import SAMPLE_RATE, num_video_frames, speak, write_talking_video

SENTENCE = "Hello! My lips were synced from a single photo."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", default="assets", help="where the two files are written (default: %(default)s)")
    parser.add_argument("--size", type=int, default=320, help="video width and height in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    audio_path = os.path.join(args.out_dir, "demo_audio.wav")
    video_path = os.path.join(args.out_dir, "demo_video.mp4")
    audio = speak(SENTENCE, audio_path)
    frames = num_video_frames(len(audio), 25, SAMPLE_RATE)
    # A closed mouth: the lip movement in the output then comes from the model alone.
    write_talking_video(
        video_path, audio, size=(args.size, args.size), mouth_envelope=np.zeros(frames), with_audio=False
    )
    for path in (video_path, audio_path):
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} kB")


if __name__ == "__main__":
    main()
