"""Part 6 of ``tools/gpu_check.py``: throughput of the evaluation scorers through their CLIs.

Sync confidence (``eval.eval_sync_conf``: S3FD face tracks + classic SyncNet), FVD with FID
(``eval.eval_fvd``: I3D stand-in + Inception-v3) and hyperIQA (``eval.hyper_iqa``), each on the
talking head with the model files of ``tools/eval_models.py`` (the official formats, random weights:
the scores mean nothing, the time does). Times are whole commands, model loading included.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from tools.eval_models import I3D_FILE, INCEPTION_FILE, OFFICIAL_FILES
from tools.gpu_check_inference import fresh_folder, frame_count, run_step

# The golden-weight S3FD scores most boxes near 0.5: this threshold keeps a few stable tracks (tests/eval).
SYNC_FLAGS = ["--conf_threshold", "0.52", "--min_track", "20", "--no_progress"]


def eval_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    work = fresh_folder(ctx, "eval")
    videos = work / "videos"
    videos.mkdir()
    for name in ("a.mp4", "b.mp4"):  # FVD compares sets: two videos on each side
        shutil.copyfile(ctx.made["video"], videos / name)
    aux = Path(ctx.made["auxiliary"])
    frames = frame_count(ctx.made["video"])
    device = ["--device", ctx.device]
    runs = [
        ("sync confidence", "eval.eval_sync_conf", frames,
         ["--video_path", str(videos / "a.mp4"), "--syncnet_path", str(aux / OFFICIAL_FILES["syncnet_v2"]),
          "--s3fd_path", str(aux / OFFICIAL_FILES["s3fd"]), *SYNC_FLAGS]),
        ("FVD + FID + SSIM/PSNR", "eval.eval_fvd", 4 * len(range(0, frames, 8 if ctx.tiny else 1)),
         ["--real_dir", str(videos), "--fake_dir", str(videos), "--i3d_path", str(aux / I3D_FILE),
          "--inception_path", str(aux / INCEPTION_FILE), "--no_progress",
          "--frame_stride", "8" if ctx.tiny else "1"]),
        ("hyperIQA", "eval.hyper_iqa", 3,
         ["--video_path", str(videos / "a.mp4"), "--model_path", str(aux / OFFICIAL_FILES["hyperiqa"])]),
    ]
    for label, module, counted, args in runs:
        output = work / module.split(".")[-1]
        ok, wall, _ = run_step(ctx, emit, label, ["-m", module, *args, *device, "--output", str(output)],
                               work / f"{output.name}.log")
        if not ok:
            continue
        table = output.with_suffix(".json")
        summary = {k: v for k, v in json.loads(table.read_text())["summary"].items()
                   if isinstance(v, (int, float, type(None)))}
        unit = "frames" if counted != 3 else "frames (first, middle, last)"
        emit(label, f"{counted} {unit} in {wall:.1f} s: {counted / wall:.1f} frames/s (whole command); "
             + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()),
             frames=counted, seconds=wall, frames_per_second=counted / wall, **{"scores": summary})

