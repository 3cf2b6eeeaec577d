"""Part 2 of ``tools/gpu_check.py``: upstream LatentSync's pipeline against ours, same device, weights and faces.

Upstream's code is imported at run time from its checkout (``--upstream``), in a child process whose
``sys.path`` holds the checkout and not this project (both packages are named ``latentsync``); nothing
of it is copied. What it needs that cannot or need not exist here is replaced, and each replacement
is named in the report:

* its face detector (InsightFace, whose model files cannot be fetched): a callable that returns, for
  each frame, the landmarks our detector found in our run (the three alignment points written into
  the 106-point layout upstream averages), so both pipelines align the same faces;
* its ``read_video`` (an ffmpeg re-encode at CRF 18 in ``./temp``, then OpenCV): the frames our
  pipeline decoded, so both start from the same pixels;
* modules it imports but never calls on this path, where they are not installed: ``transformers``
  (its Whisper tokenizer) and ``decord`` (whose ``AudioReader`` only feeds the output's audio track;
  read with ``soundfile`` instead).

The rest runs as upstream wrote it (Whisper features, affine warps with kornia, DDIM loop with
classifier-free guidance, restore, imageio/ffmpeg writing); a package it needs that is missing
(kornia, ffmpeg-python, soundfile, an ``ffmpeg`` binary) makes the part report "skipped" with its name.
Both outputs are compared on the frames each pipeline hands to its video encoder.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GUIDANCE_SCALE = 1.5
# InsightFace 2d106det indices upstream averages into [left brow, right brow, nose] (its image processor).
UPSTREAM_POINT_INDICES = ((43, 48, 49, 51, 50), (101, 102, 103, 104, 105), (74, 77, 83, 86))


# --------------------------------------------------------------------------- the upstream child (no project imports)


def landmarks_106(points: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A (106, 2) integer landmark array whose averaged index groups give ``points`` (3, 2), rounded as
    upstream's detector rounds; the other points sit on the box's corners (upstream only uses them for a box)."""
    out = np.empty((106, 2), np.int64)
    corners = np.round([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]]).astype(np.int64)
    out[:] = corners[np.arange(106) % 4]
    for point, indices in zip(np.round(points).astype(np.int64), UPSTREAM_POINT_INDICES):
        out[list(indices)] = point
    return out


class ReplayDetector:
    """Upstream's ``FaceDetector`` interface (frame -> (box, 106 landmarks)) answering from our run, in call order."""

    def __init__(self, landmarks: np.ndarray, boxes: np.ndarray) -> None:
        self.landmarks, self.boxes, self.calls = landmarks, boxes, 0

    def __call__(self, frame, threshold: float = 0.5):
        index = self.calls
        self.calls += 1
        if index >= len(self.landmarks):
            raise RuntimeError(f"upstream asked for the face of frame {index}; our run detected {len(self.landmarks)}")
        box = tuple(int(round(v)) for v in self.boxes[index])
        return box, landmarks_106(self.landmarks[index], self.boxes[index])


def stand_in(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def install_stand_ins() -> list[str]:
    """Register stand-ins for modules upstream imports but never calls here (or, for InsightFace, replaced)."""
    used = []

    class NoFaceAnalysis:  # upstream builds it in its image processor; the replay detector answers instead
        def __init__(self, *args, **kwargs) -> None:
            pass

        def prepare(self, *args, **kwargs) -> None:
            pass

    insightface = stand_in("insightface")
    insightface.app = stand_in("insightface.app", FaceAnalysis=NoFaceAnalysis)
    used.append("insightface (replaced by our landmarks)")
    try:
        import transformers
    except ImportError:
        stand_in("transformers", GPT2TokenizerFast=None)
        used.append("transformers (its Whisper tokenizer, unused)")
    else:
        try:
            transformers.GPT2TokenizerFast  # noqa: B018 - gone from some releases; imported, never called here
        except (AttributeError, ImportError):
            transformers.GPT2TokenizerFast = None
            used.append("transformers.GPT2TokenizerFast (its Whisper tokenizer, unused)")
    try:
        import decord  # noqa: F401
    except ImportError:
        class AudioReader:  # decord's interface as upstream's read_audio uses it
            def __init__(self, path, sample_rate=16000, mono=True):
                import soundfile

                samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
                if rate != sample_rate:
                    raise RuntimeError(f"{path}: {rate} Hz, the stand-in reads {sample_rate} Hz files only")
                self.samples = samples.mean(1, keepdims=True).T if mono else samples.T

            def __getitem__(self, index):
                return types.SimpleNamespace(asnumpy=lambda: self.samples[:, index])

        stand_in("decord", AudioReader=AudioReader, VideoReader=None)
        used.append("decord (audio track read with soundfile)")
    return used


def upstream_child(job_path: str) -> None:
    from tools.benchmark_inference import StageClock  # before this project leaves sys.path (no latentsync import)

    job = json.loads(Path(job_path).read_text())
    result_path = Path(job["result"])
    checkout = os.path.realpath(job["checkout"])
    sys.path[:] = [checkout] + [p for p in sys.path if os.path.realpath(p or ".") != str(PROJECT_ROOT)]
    stand_ins = install_stand_ins()
    try:
        import torch
        from accelerate.utils import set_seed
        from diffusers import AutoencoderKL, DDIMScheduler

        import latentsync.pipelines.lipsync_pipeline as upstream
        from latentsync.models.unet import UNet3DConditionModel
        from latentsync.whisper.audio2feature import Audio2Feature
    except ModuleNotFoundError as err:
        result_path.write_text(json.dumps({"skipped": f"upstream needs {err.name} (not installed)"}))
        return
    if not os.path.realpath(upstream.__file__).startswith(checkout):
        raise SystemExit(f"upstream child imported {upstream.__file__}, not the checkout's")
    if shutil.which("ffmpeg") is None:
        result_path.write_text(json.dumps({"skipped": "upstream needs an ffmpeg binary on PATH (none found)"}))
        return
    device, dtype = torch.device(job["device"]), getattr(torch, job["dtype"])
    load_start = time.perf_counter()
    scheduler = DDIMScheduler.from_pretrained(job["scheduler_dir"])
    audio_encoder = Audio2Feature(model_path=job["whisper"], device=str(device), num_frames=job["num_frames"],
                                  audio_feat_length=job["audio_feat_length"])
    vae = AutoencoderKL.from_pretrained(job["vae"], torch_dtype=dtype)
    vae.register_to_config(scaling_factor=0.18215, shift_factor=0)  # what upstream's script sets
    unet, _ = UNet3DConditionModel.from_pretrained(job["model_config"], job["unet_ckpt"], device="cpu")
    pipe = upstream.LipsyncPipeline(vae=vae, audio_encoder=audio_encoder, unet=unet.to(dtype=dtype),
                                    scheduler=scheduler).to(device)
    load_seconds = time.perf_counter() - load_start

    work = Path(job["work"])
    frames = np.load(work / "input_frames.npy")
    detector = ReplayDetector(np.load(work / "landmarks.npy"), np.load(work / "boxes.npy"))
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    timeline = StageClock(synchronize)
    original_processor, original_writer = upstream.ImageProcessor, upstream.write_video

    def image_processor(resolution=512, device="cpu", mask_image=None):
        processor = original_processor(resolution, device=job["device"], mask_image=mask_image)
        processor.face_detector = detector
        if job["device"] == "cpu":  # upstream warps in fp16, which gives NaNs on a CPU (it only ever ran on CUDA)
            processor.restorer = type(processor.restorer)(resolution=resolution, device="cpu", dtype=torch.float32)
        return processor

    def write_video(path, video_frames, fps):
        np.save(work / "upstream_frames.npy", np.asarray(video_frames))
        return original_writer(path, video_frames, fps=fps)

    upstream.read_video = lambda *args, **kwargs: frames
    upstream.ImageProcessor = image_processor
    upstream.write_video = timeline.wrap("write", write_video)
    audio_encoder.audio2feat = timeline.wrap("audio", audio_encoder.audio2feat)
    pipe.affine_transform_video = timeline.wrap("faces", pipe.affine_transform_video)
    pipe.restore_video = timeline.wrap("restore", pipe.restore_video)
    set_seed(job["seed"])
    call = timeline.wrap("total", pipe.__call__)
    call(video_path=job["video"], audio_path=job["audio"], video_out_path=job["out"], num_frames=job["num_frames"],
         num_inference_steps=job["steps"], guidance_scale=job["guidance"], weight_dtype=dtype, width=job["resolution"],
         height=job["resolution"], mask_image_path=job["mask"], temp_dir=job["temp_dir"])
    marks = timeline.spans
    spans = dict(timeline.seconds)
    spans["denoise"] = marks["restore"][0] - marks["faces"][1]  # latents, the DDIM loop and VAE decoding
    spans["mux"] = marks["total"][1] - marks["write"][1]
    if job["device"] == "cpu":
        stand_ins.append("its fp16 face warps run in fp32 (CPU)")
    result = {"load_seconds": load_seconds, "seconds": spans.pop("total"), "stages": spans,
              "module": upstream.__file__, "stand_ins": stand_ins}
    result_path.write_text(json.dumps(result))


# --------------------------------------------------------------------------- the part (this project's side)


def frame_difference(ours: np.ndarray, theirs: np.ndarray, boxes: np.ndarray) -> dict:
    """Largest difference, share of pixels over 1/255, and how many of those lie inside the face boxes."""
    count = min(len(ours), len(theirs))
    largest, over, inside, total = 0, 0, 0, 0
    for index in range(count):
        diff = np.abs(ours[index].astype(np.int16) - theirs[index].astype(np.int16)).max(axis=2)
        largest = max(largest, int(diff.max()))
        big = diff > 1
        over += int(big.sum())
        total += big.size
        if index < len(boxes):
            x0, y0, x1, y1 = (int(round(v)) for v in boxes[index])
            inside += int(big[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)].sum())
    return {"frames_compared": count, "frames_ours": len(ours), "frames_upstream": len(theirs), "max_diff": largest,
            "share_over_1": over / max(total, 1), "share_of_those_in_face_box": inside / max(over, 1)}


def upstream_part(ctx: SimpleNamespace, emit: Callable[..., None]) -> None:
    from tools.gpu_check_inference import fresh_folder, run_step

    if not ctx.upstream or not (Path(ctx.upstream) / "latentsync" / "pipelines" / "lipsync_pipeline.py").is_file():
        emit("upstream", f"no upstream checkout at {ctx.upstream!r} (--upstream PATH)", status="skipped")
        return
    work = fresh_folder(ctx, "upstream")
    from latentsync.config import load_config, to_container
    from latentsync.paths import SCHEDULER_DIR

    config = ctx.made["unet_config"] if ctx.tiny else str(PROJECT_ROOT / "configs/unet/stage2.yaml")
    unet_config = load_config(config)
    dtype = "float32" if ctx.device == "cpu" else "float16"
    job = {"config": config, "ckpt": ctx.made["unet_ckpt"], "whisper": ctx.made["whisper"], "vae": ctx.made["vae"],
           "video": ctx.made["video"], "audio": ctx.made["compare_speech"], "device": ctx.device, "dtype": dtype,
           "seed": ctx.seed, "steps": 2 if ctx.tiny else 20, "guidance": GUIDANCE_SCALE, "work": str(work),
           "out": str(work / "ours.mp4")}
    (work / "ours_job.json").write_text(json.dumps(job))
    ok, _, _ = run_step(ctx, emit, "ours (upstream settings)",
                        ["-m", "tools.gpu_check_inference", "--ours", str(work / "ours_job.json")], work / "ours.log")
    if not ok:
        return
    ours = json.loads((work / "ours.json").read_text())
    upstream_job = {
        "checkout": ctx.upstream, "model_config": to_container(unet_config.model), "unet_ckpt": ctx.made["unet_ckpt"],
        "whisper": ctx.made["whisper"], "vae": ctx.made["vae"], "scheduler_dir": str(SCHEDULER_DIR),
        "mask": str(Path(ctx.upstream) / "latentsync" / "utils" / "mask.png"), "video": ctx.made["video"],
        "audio": ctx.made["compare_speech"], "out": str(work / "upstream.mp4"), "temp_dir": str(work / "upstream_temp"),
        "num_frames": int(unet_config.data.num_frames), "resolution": int(unet_config.data.resolution),
        "audio_feat_length": list(unet_config.data.get("audio_feat_length", [2, 2])), "device": ctx.device,
        "dtype": dtype, "seed": ctx.seed, "steps": job["steps"], "guidance": GUIDANCE_SCALE, "work": str(work),
        "result": str(work / "upstream.json"),
    }
    (work / "upstream_job.json").write_text(json.dumps(upstream_job))
    # Its own working folder: upstream writes and deletes relative paths (./temp) as it goes.
    ok, _, _ = run_step(ctx, emit, "upstream", [str(Path(__file__).resolve()), "--child", str(work / "upstream_job.json")],
                        work / "upstream.log", cwd=work)
    if not ok:
        return
    theirs = json.loads((work / "upstream.json").read_text())
    if "skipped" in theirs:
        emit("upstream", theirs["skipped"], status="skipped")
        return
    label = f"{Path(config).name}, {ours['frames']} frames, {dtype}, DDIM {job['steps']} steps, deep cache off"
    emit("ours", f"{label}: {ours['seconds']:.1f} s end to end (models loaded in {ours['load_seconds']:.1f} s); "
         + ", ".join(f"{k} {v:.1f} s" for k, v in ours["stages"].items()), **ours)
    emit("upstream", f"{theirs['seconds']:.1f} s end to end (models loaded in {theirs['load_seconds']:.1f} s); "
         + ", ".join(f"{k} {v:.1f} s" for k, v in theirs["stages"].items())
         + f"; stand-ins: {', '.join(theirs['stand_ins'])}; its read_video replaced by our decoded frames", **theirs)
    pairs = [("audio", "audio"), ("faces", "faces"), ("denoise", "denoise + restore"), ("write", "write + mux")]
    up = theirs["stages"]
    up_values = {"audio": up.get("audio", 0.0), "faces": up.get("faces", 0.0),
                 "denoise + restore": up.get("denoise", 0.0) + up.get("restore", 0.0),
                 "write + mux": up.get("write", 0.0) + up.get("mux", 0.0)}
    ratios = {f"{ours_stage}/{up_stage}": up_values[up_stage] / ours["stages"][ours_stage]
              for ours_stage, up_stage in pairs if ours["stages"].get(ours_stage)}
    end_to_end = theirs["seconds"] / ours["seconds"]
    emit("upstream / ours time", f"end to end x{end_to_end:.2f}; per stage (upstream's stage/ours, ours overlap): "
         + ", ".join(f"{k} x{v:.2f}" for k, v in ratios.items()), end_to_end=end_to_end, stages=ratios)
    diff = frame_difference(np.load(work / "ours_frames.npy", mmap_mode="r"),
                            np.load(work / "upstream_frames.npy", mmap_mode="r"), np.load(work / "boxes.npy"))
    emit("largest pixel difference",
         f"{diff['max_diff']}/255 over {diff['frames_compared']} frames (ours {diff['frames_ours']}, upstream "
         f"{diff['frames_upstream']}); pixels differing by more than 1/255: {100 * diff['share_over_1']:.3f}%, "
         f"{100 * diff['share_of_those_in_face_box']:.1f}% of them inside the face box", **diff)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        upstream_child(sys.argv[2])
    else:
        print("error: usage: gpu_check_upstream.py --child JOB (a child of tools/gpu_check.py)", file=sys.stderr)
        sys.exit(2)
