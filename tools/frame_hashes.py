"""Hashes of the frames the inference CLI writes, to show a refactor changes no output frame (CPU, exact).

Runs the inference CLI (``python -m scripts.inference``, one child process per configuration) on
the tests' kind of inputs (tiny random-weight models, an espeak talking head with frames without
a face, a 1 s clip looped ping-pong under longer audio, a still image) in several configurations (DDIM and DPM-Solver++, deep cache on and
off, guidance 1.0, detection on every full frame, archival encoding), and records for each run
the sha256 of every frame handed to the encoder (before H.264) and of every frame decoded from
the written file. ``record`` writes them to a JSON file; ``compare`` runs again and lists every
configuration whose frames differ (exit status 1). Inputs and models are made once in WORKDIR
and reused, so both sides see the same bytes.

  OMP_NUM_THREADS=1 .venv/bin/python -m tools.frame_hashes record  --workdir /tmp/frames --out /tmp/frames/before.json
  OMP_NUM_THREADS=1 .venv/bin/python -m tools.frame_hashes compare --workdir /tmp/frames --baseline /tmp/frames/before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SR = 16000
SIZE = 128
BLANK = (30, 31, 32)  # frames of the main input without a face

# name -> (video, audio, extra flags); video/audio name files made by make_inputs.
CONFIGURATIONS: dict[str, tuple[str, str, list[str]]] = {
    "ddim-2-deepcache": ("face.mp4", "speech.wav", ["--inference_steps", "2"]),
    "ddim-4-deepcache-2": ("face.mp4", "speech.wav", ["--inference_steps", "4", "--deepcache_interval", "2"]),
    "ddim-4-no-deepcache": ("face.mp4", "speech.wav", ["--inference_steps", "4", "--no-enable_deepcache"]),
    "dpm++-3": ("face.mp4", "speech.wav", ["--inference_steps", "3", "--scheduler", "dpm++"]),
    "guidance-1.0": ("face.mp4", "speech.wav", ["--inference_steps", "2", "--guidance_scale", "1.0"]),
    "pingpong": ("face_1s.mp4", "speech_2.5s.wav", ["--inference_steps", "2"]),
    "every-full-frame-archival": ("face.mp4", "speech_1s.wav",
                                  ["--inference_steps", "1", "--detect_every", "1", "--detect_max_side", "0",
                                   "--archival"]),
    "still-image": ("still.png", "speech_1s.wav", ["--inference_steps", "1", "--seed", "3"]),
    "face-index-0": ("face_1s.mp4", "speech_1s.wav", ["--inference_steps", "1", "--face_index", "0"]),
}


def make_inputs(folder: Path) -> dict[str, Path]:
    """The inputs (made once): as tests/scripts/test_inference.py makes them."""
    import cv2

    from tools.synthetic_media import FACE_CROP, astronaut_face, speak, write_talking_video, write_wav
    from tools.tiny_models import write_all

    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "inputs.done"
    if not done.exists():
        speech = speak("Hello there. I am an astronaut, talking to you.", folder / "raw.wav")
        speech = np.pad(speech, (0, max(0, 3 * SR - len(speech))))[: 3 * SR]
        write_wav(folder / "speech.wav", speech)
        write_talking_video(folder / "face.mp4", speech, size=(SIZE, SIZE), blank_frames=BLANK, with_audio=False)
        one_second = speech[SR // 2 : SR // 2 + SR]
        write_wav(folder / "speech_1s.wav", one_second)
        write_talking_video(folder / "face_1s.mp4", one_second, size=(SIZE, SIZE), with_audio=False)
        write_wav(folder / "speech_2.5s.wav", speech[: int(2.5 * SR)])
        x0, y0, x1, y1 = FACE_CROP
        image = cv2.resize(astronaut_face()[y0:y1, x0:x1], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / "still.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        write_all(folder / "models")
        done.write_text("ok\n")
    return {p.name: p for p in folder.iterdir()}


# Runs the CLI as ``python -m scripts.inference`` does, in a child process, with the encoder's write
# wrapped to append a hash of each frame to a file (HASHES_FILE).
_CHILD = r"""
import hashlib, os, runpy, sys
import numpy as np
from latentsync.media.writer import VideoWriter
write = VideoWriter.write
def recording_write(self, frame):
    with open(os.environ["HASHES_FILE"], "a") as f:
        f.write(hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()[:16] + "\n")
    return write(self, frame)
VideoWriter.write = recording_write
sys.argv = ["scripts.inference", *sys.argv[1:]]
runpy.run_module("scripts.inference", run_name="__main__")
"""


def _sha(frame: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frame).tobytes()).hexdigest()[:16]


def run_all(folder: Path, only: list[str] | None = None) -> dict[str, dict]:
    """Every configuration's frame hashes: {"written": [...], "decoded": [...], "code": exit status}."""
    from latentsync.media.reader import VideoReader
    from latentsync.paths import PROJECT_ROOT
    from tools.tiny_models import TinyModels

    inputs = make_inputs(folder)
    models = folder / "models"
    tiny = TinyModels(models / "unet" / "unet.yaml", models / "unet" / "unet.pt", models / "whisper" / "tiny.pt",
                      models / "vae")
    results = {}
    for name, (video, audio, extra) in CONFIGURATIONS.items():
        if only and name not in only:
            continue
        out = folder / "out" / f"{name}.mp4"
        out.parent.mkdir(exist_ok=True)
        hashes = folder / "out" / f"{name}.hashes"
        for stale in (out, hashes):
            if stale.exists():
                stale.unlink()
        flags = [*tiny.flags(), "--device", "cpu", "--face_detector", "mediapipe", "--seed", "7",
                 "--video_path", str(inputs[video]), "--audio_path", str(inputs[audio]),
                 "--video_out_path", str(out), *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT_ROOT), "HASHES_FILE": str(hashes)}
        code = subprocess.run([sys.executable, "-c", _CHILD, *flags], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, check=False).returncode
        written = hashes.read_text().split() if hashes.exists() else []
        decoded = [_sha(frame) for frame in VideoReader(out)] if code == 0 else []
        results[name] = {"code": code, "written": written, "decoded": decoded}
        print(f"{name}: exit {code}, {len(written)} frames written", file=sys.stderr, flush=True)
    return results


def main_cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("record", "compare"))
    parser.add_argument("--workdir", required=True, type=Path, help="inputs, models and outputs (made once, reused)")
    parser.add_argument("--out", type=Path, help="record: the JSON file to write")
    parser.add_argument("--baseline", type=Path, help="compare: the JSON file record wrote")
    parser.add_argument("--only", nargs="+", help="configurations to run (default: all)")
    args = parser.parse_args(argv)
    results = run_all(args.workdir, args.only)
    if args.mode == "record":
        if args.out is None:
            parser.error("record needs --out")
        args.out.write_text(json.dumps(results, indent=1))
        return 0
    if args.baseline is None:
        parser.error("compare needs --baseline")
    baseline = json.loads(args.baseline.read_text())
    differ = [name for name, result in results.items() if baseline.get(name) != result]
    for name in results:
        print(f"{name}: {'DIFFERENT' if name in differ else 'identical'} "
              f"({len(results[name]['written'])} frames written, exit {results[name]['code']})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main_cli())
