"""Speed of the real-size UNet (``bench_unet``), of a denoised clip and of samplers and stage overlap.

``forward`` (the default) times one UNet forward on the CFG batch inference runs (2 x 16 frames)
for a real config (``stage2.yaml`` = 1.5 at 256 px, ``stage2_512.yaml`` = 1.6 at 512 px) in
several set-ups, each written as ``+``-joined words: a dtype (fp32, fp16, bf16), an SDPA
backend (math, flash, efficient, cudnn; none = PyTorch's choice), ``cl`` (channels-last
weights), ``compile`` (``torch.compile``), ``graph`` (the forward captured once as a CUDA graph
and replayed: no per-kernel launch cost), ``dc<N>`` (deep cache, full deep blocks every N
steps: the row is the mean over N steps). Each row gives ms per step and the achieved TFLOP/s
(the full forward's FLOPs, counted by ``FlopCounterMode``, over the time) against the
device's matmul peak measured in the same run; a set-up that cannot run here (a backend without
a kernel for this input, CUDA graphs on a CPU) is reported as such and the others still run.
``--weights`` times an existing ``{"state_dict", ...}`` file instead of fresh random weights;
``--json`` also writes the rows to a file. ``--compare-upstream PATH`` also runs the
UNet code of an upstream LatentSync checkout on the same weights and input (in a child
process whose ``sys.path`` holds the checkout and not this project) and prints the ratio.

  python -m tools.benchmark_unet --config configs/unet/stage2.yaml --frames 2 --compare-upstream /tmp/upstream
  python -m tools.benchmark_unet --config configs/unet/stage2_512.yaml --setups fp16 fp16+math fp16+dc3 fp16+compile

``clip`` (CUDA) times one ``LipsyncPipeline`` call on a 16-frame clip (VAE encode, 20 DDIM
steps with CFG, decode) with an SD-sized VAE:

  python -m tools.benchmark_unet clip --steps 20 --resolution 512

``pipeline`` (tiny random-weight models, CPU) runs the whole pipeline on a synthetic talking head
once per ``scheduler:steps[:seq]`` and prints the time and PSNR/SSIM of the face box against the
first run: the quality cost of a faster sampler, and the gain of overlapping the CPU stages with
the denoiser (``seq`` turns that off; the frames must come out identical):

  python -m tools.benchmark_unet pipeline --runs ddim:20 dpm++:10 ddim:10
  python -m tools.benchmark_unet pipeline --runs ddim:2:seq ddim:2 --size 1080 1920 --seconds 4
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Nothing from this project is imported at module level: the upstream child runs this file with
# the upstream checkout's ``latentsync`` package on its path instead of ours.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
ATTENTION = ("default", "math", "flash", "efficient", "cudnn")


# --------------------------------------------------------------------------- set-ups


@dataclass(frozen=True)
class Setup:
    """One way of running the UNet; ``Setup.parse("fp16+math+dc3")``."""

    dtype: str = "fp32"
    attention: str = "default"
    channels_last: bool = False
    compile: bool = False
    graph: bool = False
    deepcache: int = 0

    @classmethod
    def parse(cls, spec: str) -> "Setup":
        setup = cls()
        for word in spec.lower().split("+"):
            if word in DTYPES:
                setup = replace(setup, dtype=word)
            elif word in ATTENTION:
                setup = replace(setup, attention=word)
            elif word == "cl":
                setup = replace(setup, channels_last=True)
            elif word == "compile":
                setup = replace(setup, compile=True)
            elif word == "graph":
                setup = replace(setup, graph=True)
            elif word.startswith("dc") and word[2:].isdigit() and int(word[2:]) >= 1:
                setup = replace(setup, deepcache=int(word[2:]))
            else:
                raise argparse.ArgumentTypeError(
                    f"unknown set-up word {word!r} in {spec!r}: use {', '.join(DTYPES)}, "
                    f"{', '.join(ATTENTION[1:])}, cl, compile, graph, dc<N>"
                )
        if setup.graph and (setup.compile or setup.deepcache):
            raise argparse.ArgumentTypeError(f"{spec!r}: graph replays the plain forward; it takes no compile or dc<N>")
        return setup

    @property
    def label(self) -> str:
        words = [self.dtype]
        words += [self.attention] if self.attention != "default" else []
        words += ["cl"] if self.channels_last else []
        words += ["compile"] if self.compile else []
        words += ["graph"] if self.graph else []
        words += [f"dc{self.deepcache}"] if self.deepcache else []
        return "+".join(words)


def default_setups(device: torch.device) -> list[Setup]:
    """Each option alone against the device's inference dtype (the first row is the baseline)."""
    if device.type == "cuda":
        specs = ["fp16", "fp16+math", "fp16+flash", "fp16+efficient", "fp16+cudnn", "fp16+cl", "fp16+dc3",
                 "fp16+compile", "fp16+graph", "bf16", "fp32"]
    else:
        specs = ["fp32", "fp32+math", "fp32+cl", "fp32+dc3", "bf16"]
    return [Setup.parse(s) for s in specs]


def attention_backend(name: str):
    """A context that restricts ``scaled_dot_product_attention`` to one backend (none for "default")."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    return sdpa_kernel([backends[name]])


# --------------------------------------------------------------------------- timing helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Best of a few square matmuls in ``dtype``: the device's practical dense peak."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    best = float("inf")
    for _ in range(10 if device.type == "cuda" else 3):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def time_calls(fn, device: torch.device, repeats: int, warmup: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` more untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def forward_flops(unet: nn.Module, inputs: dict) -> int:
    """FLOPs of one forward (matmuls, convolutions, attention), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(**inputs)
    return counter.get_total_flops()


# --------------------------------------------------------------------------- the model and its input


def random_weights_file(config_path: str, folder: str, seed: int, device: torch.device | str = "cpu") -> str:
    """Build the UNet of ``config_path`` with random weights (drawn on ``device``) and save them in the
    official format.

    The initialiser leaves ``conv_in``, ``conv_out`` and the motion modules' output projections at
    zero; they get small random values so every block contributes to the output.
    """
    from latentsync.models.checkpoint import save_checkpoint
    from latentsync.models.unet import UNet3DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet3DConditionModel.from_config_file(config_path)
    with torch.no_grad():
        for param in unet.parameters():
            if not param.any():
                param.normal_(std=0.02)
    path = os.path.join(folder, "unet.pt")
    save_checkpoint(path, unet, global_step=0)
    return path


def load_mapped(model: nn.Module, weights_path: str) -> nn.Module:
    """Load a ``{"state_dict", ...}`` file into a meta-device model, its tensors memory-mapped from the file.

    Processes that map the same file share its pages, so the upstream child adds no second copy.
    """
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    nn.Module.load_state_dict(model, state_dict, strict=True, assign=True)
    return model


def our_unet(config_path: str, weights_path: str) -> nn.Module:
    from latentsync.models.unet import UNet3DConditionModel

    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config_file(config_path)
    return load_mapped(unet, weights_path).eval()


def make_inputs(model_config: dict, frames: int, resolution: int, seed: int) -> dict:
    """The CFG batch of one denoising step: 2 clips x ``frames`` frames, audio tokens for each frame."""
    generator = torch.Generator().manual_seed(seed)
    side = resolution // 8
    sample = torch.randn(2, model_config["in_channels"], frames, side, side, generator=generator)
    audio = torch.randn(2 * frames, 50, model_config["cross_attention_dim"], generator=generator)
    return {"sample": sample, "timestep": torch.tensor(501), "encoder_hidden_states": audio}


def inputs_to(inputs: dict, device: torch.device, dtype: torch.dtype) -> dict:
    return {k: v.to(device) if k == "timestep" else v.to(device, dtype) for k, v in inputs.items()}


def time_setup(
    unet: nn.Module, setup: Setup, inputs: dict, device: torch.device, repeats: int, warmup: int
) -> tuple[list[float], torch.Tensor]:
    """Seconds per denoising step (each of ``repeats``) and the output of a full step, for one set-up."""
    from latentsync.pipelines.deep_cache import DeepFeatureCache

    model = unet
    if setup.channels_last:
        model = nn.Module.to(model, memory_format=torch.channels_last)
    if setup.compile:
        model = torch.compile(model)

    def forward(deep_cache=None):
        return model(**inputs, deep_cache=deep_cache).sample

    with torch.no_grad(), attention_backend(setup.attention):
        output = forward().float().cpu()
        if setup.graph:
            forward = captured_graph(forward, device)
        if not setup.deepcache:
            return time_calls(forward, device, repeats, warmup), output
        cache = DeepFeatureCache(unet, setup.deepcache)

        def cycle():  # one full step, then interval - 1 steps that replay the deep blocks
            for _ in range(setup.deepcache):
                with cache.step():
                    forward(cache)

        times = time_calls(cycle, device, repeats, warmup)
    return [t / setup.deepcache for t in times], output


def captured_graph(forward, device: torch.device):
    """``forward`` recorded once as a CUDA graph (after warm-up on a side stream); returns its replay.

    The inputs stay where they are, so each replay recomputes the same step from the same tensors.
    """
    if device.type != "cuda":
        raise SetupUnavailable("CUDA graphs need a CUDA device")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(2):
            forward()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_output = forward()

    def replay():
        graph.replay()
        return static_output

    return replay


class SetupUnavailable(RuntimeError):
    """A set-up this device cannot run (reported as a row, the other set-ups still run)."""


# --------------------------------------------------------------------------- upstream


UPSTREAM_CHILD_FLAG = "--upstream-child"
UPSTREAM_UNET = os.path.join("latentsync", "models", "unet.py")  # what a checkout must hold


def upstream_child(job_path: str) -> None:
    """Runs in a fresh process: upstream's UNet on the saved weights and input; results to a file.

    Upstream's ``latentsync.utils.util`` (imported by its UNet for a log helper) imports ``decord``
    at module level; where that is not installed a stand-in module without content is registered,
    which is enough because the UNet never calls into it.
    """
    job = torch.load(job_path, weights_only=True)
    sys.path[:] = [job["checkout"]] + [p for p in sys.path if os.path.realpath(p or ".") != str(PROJECT_ROOT)]
    stubbed = []
    try:
        import decord  # noqa: F401
    except ImportError:
        import types

        stub = types.ModuleType("decord")
        stub.AudioReader = stub.VideoReader = None
        sys.modules["decord"] = stub
        stubbed.append("decord")
    torch.set_num_threads(job["threads"])
    from latentsync.models.unet import UNet3DConditionModel

    module_file = sys.modules[UNet3DConditionModel.__module__].__file__
    if not os.path.realpath(module_file).startswith(os.path.realpath(job["checkout"])):
        raise SystemExit(f"upstream child imported {module_file}, not the checkout's")
    device, dtype = torch.device(job["device"]), DTYPES[job["dtype"]]
    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(job["model_config"])
    unet = load_mapped(unet, job["weights"]).eval().to(device, dtype)
    inputs = inputs_to(job["inputs"], device, dtype)
    with torch.no_grad():
        output = unet(**inputs).sample.float().cpu()
        times = time_calls(lambda: unet(**inputs).sample, device, job["repeats"], job["warmup"])
    torch.save({"times": times, "output": output, "module": module_file, "stubbed": stubbed}, job["result"])


def run_upstream(checkout: str, job: dict, folder: str) -> dict:
    """Start :func:`upstream_child` in a process with the checkout, not this project, on its path."""
    job = {**job, "checkout": os.path.realpath(checkout), "result": os.path.join(folder, "upstream_result.pt")}
    job_path = os.path.join(folder, "upstream_job.pt")
    torch.save(job, job_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [sys.executable, str(Path(__file__).resolve()), UPSTREAM_CHILD_FLAG, job_path]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-6:])
        raise RuntimeError(f"upstream UNet from {checkout} did not run with this environment's packages:\n{tail}")
    return torch.load(job["result"], weights_only=True)


# --------------------------------------------------------------------------- forward benchmark


def forward_main(args: argparse.Namespace) -> None:
    from latentsync.config import load_config, to_container
    from latentsync.utils.device import pick_device

    if args.compare_upstream and not os.path.isfile(os.path.join(args.compare_upstream, UPSTREAM_UNET)):
        raise SystemExit(f"error: --compare-upstream {args.compare_upstream!r} has no {UPSTREAM_UNET}")
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    config = load_config(args.config)
    model_config = to_container(config.model)
    resolution = args.resolution or config.data.resolution
    setups = args.setups or default_setups(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}, torch {torch.__version__}; load: {os.getloadavg()[0]:.2f}")
    print(f"config: {args.config}, {resolution}px, CFG batch 2 x {args.frames} frames; "
          f"best of {args.repeats} after {1 + args.warmup} warm-up")

    inputs = make_inputs(model_config, args.frames, resolution, args.seed)
    peaks = {dtype: matmul_peak_tflops(device, DTYPES[dtype]) for dtype in dict.fromkeys(s.dtype for s in setups)}
    rows, report = [], []

    def save() -> None:  # after every row, so that a run stopped early keeps what it measured
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"flops": flops, "config": args.config, "frames": args.frames, "resolution": resolution,
                           "rows": report}, f, indent=1)

    with tempfile.TemporaryDirectory(prefix="latentsync-bench-unet-") as folder:
        weights = args.weights or random_weights_file(args.config, folder, args.seed)
        flops = forward_flops(our_unet(args.config, weights), inputs)
        print(f"one forward: {flops / 1e12:.4g} TFLOP; matmul peak: "
              + ", ".join(f"{k} {v:.4g} TFLOP/s" for k, v in peaks.items()))
        for setup in setups:
            try:
                unet = nn.Module.to(our_unet(args.config, weights), device, DTYPES[setup.dtype])
                times, output = time_setup(unet, setup, inputs_to(inputs, device, DTYPES[setup.dtype]), device,
                                           args.repeats, args.warmup)
            except (SetupUnavailable, RuntimeError) as err:  # e.g. "No available kernel" for a forced backend
                message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                print(f"{setup.label:24s} cannot run here: {message}", flush=True)
                report.append({"setup": setup.label, "error": message})
                save()
                continue
            finally:
                unet = None
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append((setup.label, min(times), output))
            # The peak is measured again beside each row and the best kept: a busy moment would understate it.
            peaks[setup.dtype] = max(peaks[setup.dtype], matmul_peak_tflops(device, DTYPES[setup.dtype]))
            report.append(print_row(rows[-1], rows[0], flops, peaks[setup.dtype]))
            save()
        if args.compare_upstream and rows:
            compare_upstream(args, model_config, inputs, weights, device, rows, folder)


def print_row(row, baseline, flops: int, peak: float) -> dict:
    label, seconds, output = row
    tflops = flops / seconds / 1e12
    diff = (output - baseline[2]).abs().max().item()
    print(f"{label:24s} {seconds * 1e3:10.1f} ms/step  {tflops:8.4f} TFLOP/s  {100 * tflops / peak:5.1f}% of peak  "
          f"x{baseline[1] / seconds:5.2f} vs {baseline[0]}  max|diff| {diff:.3g}", flush=True)
    return {"setup": label, "ms": seconds * 1e3, "tflops": tflops, "peak_tflops": peak,
            "percent_of_peak": 100 * tflops / peak, "speedup": baseline[1] / seconds, "baseline": baseline[0],
            "max_diff": diff}


def compare_upstream(args, model_config, inputs, weights, device, rows, folder) -> None:
    """Upstream's UNet in the baseline set-up, alternating with ours for ``--rounds`` rounds (the load drifts).

    Each round times upstream (in its child process), then ours again; the ratio of each pair is shown,
    and their median is the figure to quote.
    """
    setup = (args.setups or default_setups(device))[0]
    dtype = DTYPES[setup.dtype]
    job = {"model_config": model_config, "weights": weights, "inputs": inputs, "device": str(device),
           "dtype": setup.dtype, "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup}
    ratios = []
    for round_number in range(1, args.rounds + 1):
        try:
            upstream = run_upstream(args.compare_upstream, job, folder)
        except RuntimeError as err:
            print(f"upstream: {err}")
            return
        unet = nn.Module.to(our_unet(args.config, weights), device, dtype)
        again, _ = time_setup(unet, setup, inputs_to(inputs, device, dtype), device, args.repeats, args.warmup)
        del unet
        ours, theirs = min(again), min(upstream["times"])
        ratios.append(theirs / ours)
        if round_number == 1:
            diff = (upstream["output"] - rows[0][2]).abs().max().item()
            stub = f" (stand-in modules: {', '.join(upstream['stubbed'])})" if upstream["stubbed"] else ""
            print(f"upstream: {upstream['module']}{stub}; outputs vs ours max|diff| {diff:.3g} "
                  f"(max|out| {rows[0][2].abs().max().item():.3g})")
        print(f"round {round_number}: upstream {setup.label} {theirs * 1e3:.1f} ms/step, ours {ours * 1e3:.1f} "
              f"ms/step: ours runs at x{ratios[-1]:.3f} upstream's speed (load {os.getloadavg()[0]:.2f})", flush=True)
    print(f"ours vs upstream, median of {len(ratios)} paired rounds: x{statistics.median(ratios):.3f} "
          "(> 1: ours faster)")


# --------------------------------------------------------------------------- whole-clip benchmark (CUDA)


def build_pipeline(config_path: str, device: torch.device, dtype: torch.dtype):
    from latentsync.config import load_config, to_container
    from latentsync.models.unet import UNet3DConditionModel
    from latentsync.pipelines.loading import assemble_pipeline
    from tools.tiny_models import SD_VAE_WIDTHS
    from tools.train_tiny_vae import build_vae

    with torch.device(device):
        unet = UNet3DConditionModel.from_config(to_container(load_config(config_path).model))
        vae = build_vae(512, SD_VAE_WIDTHS, layers_per_block=2, groups=32)  # SD's VAE
    # Random, non-zero weights everywhere (a fresh UNet has zero conv_in/conv_out).
    for module in (unet.conv_in, unet.conv_out):
        torch.nn.init.normal_(module.weight, std=0.02)
    return assemble_pipeline(vae.eval(), unet.eval(), device=device, dtype=dtype)


def time_clip(pipe, args, device, attention: str, deepcache: int | None) -> tuple[float, float, torch.Tensor]:
    from latentsync.face.mask import load_fixed_mask
    from latentsync.pipelines.sampling import Sampling

    generator = torch.Generator(device).manual_seed(0)
    faces = torch.randint(0, 256, (args.frames, args.resolution, args.resolution, 3), dtype=torch.uint8).numpy()
    audio = torch.randn(args.frames, 50, pipe.unet.config.cross_attention_dim, generator=None).to(device)
    mask = load_fixed_mask(args.resolution)
    noise = pipe.initial_noise(args.resolution, generator)
    sampling = Sampling(args.steps, "ddim", args.guidance_scale, bool(deepcache), deepcache or 1)
    with attention_backend(attention):
        pipe(faces, audio, noise, mask, replace(sampling, inference_steps=2))  # warm-up
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        out = pipe(faces, audio, noise, mask, sampling)
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return args.frames / seconds, torch.cuda.max_memory_allocated(device) / 2**30, out.float().cpu()


def clip_main(args: argparse.Namespace) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("benchmark_unet clip needs a CUDA device")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    print(f"clip: {args.frames} frames at {args.resolution}px, {args.steps} DDIM steps, CFG {args.guidance_scale}")

    results = {}
    runs = [("fp16", torch.float16, "default", None), ("fp16", torch.float16, "math", None),
            ("fp16", torch.float16, "default", 3), ("bf16", torch.bfloat16, "default", None)]
    if not args.skip_fp32:
        runs.append(("fp32", torch.float32, "default", None))
    pipes = {}
    for name, dtype, attention, deepcache in runs:
        if name not in pipes:
            pipes.clear()
            torch.cuda.empty_cache()
            torch.manual_seed(0)
            pipes[name] = build_pipeline(args.config, device, dtype)
        fps, peak, out = time_clip(pipes[name], args, device, attention, deepcache)
        label = f"{name} attention={attention} deepcache={deepcache or 'off'}"
        results[label] = (fps, out)
        print(f"{label:44s} {fps:7.2f} frames/s  peak {peak:6.2f} GiB  finite={bool(torch.isfinite(out).all())}")

    base_fps, base_out = results["fp16 attention=default deepcache=off"]
    for label, (fps, out) in results.items():
        diff = (out - base_out).abs().max().item()
        print(f"ratio vs fp16 default: {label:44s} speed x{fps / base_fps:5.2f}  max|diff| {diff:.3g}")


# --------------------------------------------------------------------------- whole pipeline (tiny models, CPU)


def pipeline_main(args: argparse.Namespace) -> None:
    """Whole-pipeline runs (sampler, steps, stages overlapped or not) on a synthetic talking head, one after
    another in this process: time of each, and PSNR/SSIM of the face box against the first run's output."""
    from latentsync.media.reader import VideoReader
    from latentsync.metrics.image_similarity import psnr, ssim
    from latentsync.pipelines.loading import load_pipeline
    from latentsync.pipelines.video_runner import sync_video
    from latentsync.settings import InferenceSettings
    from tools.synthetic_media import speak, write_talking_video, write_wav
    from tools.tiny_models import write_all

    torch.set_num_threads(args.threads)
    runs = [run.split(":") for run in args.runs]
    with tempfile.TemporaryDirectory(prefix="latentsync-bench-pipeline-") as folder:
        models = write_all(Path(folder) / "models", seed=args.seed)
        speech = speak("The quick brown fox jumps over the lazy dog.", os.path.join(folder, "speech.wav"))
        if args.seconds:
            speech = np.resize(speech, int(args.seconds * 16000))
            write_wav(os.path.join(folder, "speech.wav"), speech)
        video = os.path.join(folder, "talking.mp4")
        width, height = args.size
        boxes = write_talking_video(video, speech, size=(width, height), with_audio=False)["face_boxes"]
        pipe = load_pipeline(models.unet_config, models.unet_ckpt, whisper_path=models.whisper, vae_path=models.vae,
                             device="cpu", face_detector="mediapipe")
        pipe.set_progress_bar_config(disable=True)
        print(f"tiny random-weight models, {width}x{height} video of {len(speech) / 16000:.1f} s, CPU "
              f"{args.threads} torch thread(s); load {os.getloadavg()[0]:.2f}; reference: {':'.join(runs[0])}")
        # The project's defaults without deep cache; each run picks its sampler and steps.
        base = InferenceSettings.from_config(video_path=video, audio_path=os.path.join(folder, "speech.wav"),
                                             seed=args.seed, enable_deepcache=False)
        # Untimed warm-up (one step): first-call costs of mediapipe, Whisper and torch are not the first row's.
        sync_video(pipe, base.replace(video_out_path=os.path.join(folder, "warmup.mp4"), inference_steps=1))
        reference = None
        for run in runs:
            name, steps, overlap = run[0], int(run[1]), run[2:] != ["seq"]
            out = os.path.join(folder, f"{'_'.join(run)}.mp4")
            start = time.perf_counter()
            sync_video(pipe, base.replace(video_out_path=out, scheduler=name, inference_steps=steps),
                       overlap_stages=overlap)
            seconds = time.perf_counter() - start
            crops = [face_crop(frame, box) for frame, box in zip(VideoReader(out), boxes)]
            reference = reference or crops
            pairs = [(r, c) for r, c in zip(reference, crops) if r is not None]
            print(f"{':'.join(run):14s} {seconds:7.1f} s {len(crops) / seconds:6.2f} frames/s  face box vs reference: "
                  f"PSNR {statistics.mean(min(psnr(r, c), 99.0) for r, c in pairs):6.2f} dB (99: identical)  "
                  f"SSIM {statistics.mean(ssim(r, c) for r, c in pairs):.4f}", flush=True)
        pipe.face_detector.close()


def face_crop(frame, box):
    """The face box (x0, y0, x1, y1; NaN when there is none) of an (H, W, 3) frame, or None."""
    if not all(map(math.isfinite, box)):
        return None
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return frame[max(y0, 0):y1, max(x0, 0):x1]


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("forward", "clip", "pipeline"), default="forward")
    parser.add_argument("--config", default=str(PROJECT_ROOT / "configs" / "unet" / "stage2_512.yaml"))
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    parser.add_argument("--resolution", type=int, help="face side in pixels (default: the config's; clip: 512)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (inference: 16; fewer for a CPU run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads (default: torch's)")
    group = parser.add_argument_group("forward")
    group.add_argument("--setups", nargs="+", type=Setup.parse, help="set-ups to time, e.g. fp16 fp16+math bf16+dc3")
    group.add_argument("--repeats", type=int, default=5, help="timed forwards per set-up (the best is shown)")
    group.add_argument("--warmup", type=int, default=0,
                       help="untimed forwards besides the first, whose output is kept (compile: 2 or more)")
    group.add_argument("--compare-upstream", metavar="PATH", help="an upstream LatentSync checkout to time too")
    group.add_argument("--weights", help="a {'state_dict', ...} file of --config's UNet (default: random weights)")
    group.add_argument("--json", help="also write the rows (and errors) to this JSON file, after each row")
    group.add_argument("--rounds", type=int, default=3, help="upstream/ours timing pairs with --compare-upstream")
    group = parser.add_argument_group("clip")
    group.add_argument("--steps", type=int, default=20)
    group.add_argument("--guidance_scale", type=float, default=1.5)
    group.add_argument("--skip_fp32", action="store_true", help="leave out the slow single-precision run")
    group = parser.add_argument_group("pipeline")
    group.add_argument("--runs", nargs="+", default=["ddim:20", "dpm++:10", "ddim:10"],
                       help="scheduler:steps[:seq] (seq: stages not overlapped); the first is the reference")
    group.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("W", "H"), help="video size")
    group.add_argument("--seconds", type=float, help="loop the speech to this length (default: its own, ~3 s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [UPSTREAM_CHILD_FLAG]:
        upstream_child(argv[1])
        return
    args = build_parser().parse_args(argv)
    if args.mode == "clip":
        args.resolution = args.resolution or 512
        clip_main(args)
    elif args.mode == "pipeline":
        pipeline_main(args)
    else:
        forward_main(args)


if __name__ == "__main__":
    main()
