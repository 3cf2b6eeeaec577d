"""Pack the Python packages ``tools/gpu_check.py`` needs on the lent GPU machine, which has no network.

That machine's image holds torch, torchvision, transformers, accelerate, OpenCV, scikit-image and
the scientific stack (``/work/.library/device/KINDS.md``), but not diffusers, PyAV, mediapipe,
openai-whisper, an ffmpeg binary and the rest of ``requirements.txt``. Its Python is 3.12 and each
call may carry at most 64 MiB, the project's tracked files (~20 MB) included, so the wheels are
installed here into two staging folders (cp312 manylinux builds), pruned of what no check loads
(bitsandbytes' libraries for other CUDA versions, mediapipe's pose/hand/segmentation models) and
packed as two xz tarballs, each small enough to travel with the project in one call:

* ``.gpucheck/a/bundle.tar.xz``: diffusers, whisper, omegaconf, LPIPS, librosa, bitsandbytes, PyAV...
* ``.gpucheck/b/bundle.tar.xz``: an ffmpeg binary, mediapipe, kornia and ffmpeg-python (upstream),
  plus ``.gpucheck/b/speech.wav`` (espeak-ng speech: the GPU machine has no espeak-ng).

``tools/gpu_check.sh`` unpacks whichever bundles travelled into ``/tmp/latentsync-gpucheck/site``,
which stays while the machine is warm, so the second call finds the first call's packages. It
also links ``.gpucheck/upstream`` to the upstream checkout, so that its ``latentsync`` folder can
travel as a carried path. Run here, once, from the project root:

  .venv/bin/python -m tools.gpu_check_bundle            # then see tools/gpu_check.sh for the run calls
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = PROJECT_ROOT / ".gpucheck"
DEFAULT_UPSTREAM = PROJECT_ROOT.parent / "shared" / "upstream" / "LatentSync"
TARGET_PYTHON = "3.12"  # the GPU image's python3
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")
TORCH_CUDA = "130"  # the GPU image's torch is built for CUDA 13.0: bitsandbytes loads libbitsandbytes_cuda130.so
LIMIT_BYTES = 64 * 2**20  # what one call may carry, the project included

# Wheels per bundle: binary ones for cp312; (name, version, sdist-only) where the package ships no wheel.
BUNDLES: dict[str, list[tuple[str, str, bool]]] = {
    "a": [
        ("diffusers", "0.42.1", False), ("importlib-metadata", "10.2.0", False), ("openai-whisper", "20250625", True),
        ("more-itertools", "11.2.1", False), ("omegaconf", "2.3.0", False), ("antlr4-python3-runtime", "4.9.3", True),
        ("lpips", "0.1.4", False), ("librosa", "0.11.0", False), ("audioread", "3.1.0", False),
        ("soundfile", "0.14.0", False), ("soxr", "1.1.0", False), ("pooch", "1.9.0", False),
        ("decorator", "5.3.1", False), ("platformdirs", "4.14.9", False), ("python_speech_features", "0.6", True),
        ("torch-fidelity", "0.4.0", False), ("bitsandbytes", "0.50.2", False), ("av", "16.0.1", False),
    ],
    "b": [
        # imageio-ffmpeg 0.4.9 carries a 70 MB ffmpeg 4.2 binary (0.8.1's is twice the size): the CLI only
        # decodes audio and muxes with it; PyAV (bundle a) does the video.
        ("imageio-ffmpeg", "0.4.9", False), ("mediapipe", "0.10.14", False), ("protobuf", "4.25.9", False),
        ("kornia", "0.8.0", False), ("kornia_rs", "0.2.0", False), ("ffmpeg-python", "0.2.0", False),
        ("future", "1.0.0", False),
    ],
}
# mediapipe model folders the face detector and FaceMesh read (the others hold pose, hand... models).
MEDIAPIPE_KEEP = ("face_detection", "face_landmark")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], check=True)


def fetch_wheels(packages: list[tuple[str, str, bool]], folder: Path) -> None:
    """Binary wheels for the GPU machine's Python; pure-Python wheels built here for sdist-only packages."""
    platform_flags = [flag for p in PLATFORMS for flag in ("--platform", p)]
    binary = [f"{name}=={version}" for name, version, sdist in packages if not sdist]
    built = [f"{name}=={version}" for name, version, sdist in packages if sdist]
    if binary:
        pip("download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", TARGET_PYTHON,
            "--implementation", "cp", *platform_flags, "-d", str(folder), *binary)
    if built:
        pip("wheel", "-q", "--no-deps", "-w", str(folder), *built)


def install(wheels: Path, site: Path) -> None:
    platform_flags = [flag for p in PLATFORMS for flag in ("--platform", p)]
    pip("install", "-q", "--no-deps", "--no-index", "--no-compile", "--only-binary=:all:", "--python-version",
        TARGET_PYTHON, "--implementation", "cp", *platform_flags, "--target", str(site),
        *sorted(str(w) for w in wheels.glob("*.whl")))


def prune(site: Path) -> None:
    """Drop files no check loads: bitsandbytes' other builds, unused mediapipe models, tests, caches."""
    for lib in (site / "bitsandbytes").glob("libbitsandbytes_*.so"):  # CUDA, ROCm and XPU builds
        if lib.name not in (f"libbitsandbytes_cuda{TORCH_CUDA}.so", "libbitsandbytes_cpu.so"):
            lib.unlink()
    shutil.rmtree(site / "tests", ignore_errors=True)  # torch-fidelity ships its tests as a top-level package
    modules = site / "mediapipe" / "modules"
    if modules.is_dir():
        for model in modules.rglob("*"):
            if model.suffix in (".tflite", ".binarypb") and model.parent.name not in MEDIAPIPE_KEEP:
                model.unlink()
        for extra in (modules / "face_landmark").glob("face_landmark_with_attention.tflite"):
            extra.unlink()  # FaceMesh runs with refine_landmarks=False
    for path in list(site.rglob("*")):
        if path.is_dir() and path.name == "__pycache__":
            shutil.rmtree(path)
        elif path.is_file() and path.name.endswith("_test.py"):
            path.unlink()


def pack(site: Path, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    with tarfile.open(partial, "w:xz", preset=9) as tar:
        tar.add(site, arcname=".")
    os.replace(partial, target)
    return target.stat().st_size


def tracked_bytes() -> int:
    """Bytes of the project's tracked files: they travel with every call."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return sum(os.path.getsize(PROJECT_ROOT / n) for n in names.decode().split("\0") if n and (PROJECT_ROOT / n).is_file())


def write_speech(target: Path) -> None:
    """Ten seconds of espeak-ng speech (the GPU machine has no espeak-ng to make it)."""
    from tools.gpu_check_prepare import make_speech

    make_speech(target, seconds=10.0)


def link_upstream(upstream: Path) -> Path:
    link = BUNDLE_DIR / "upstream"
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == upstream:
            return link
        raise SystemExit(f"error: {link} exists and is not a link to {upstream}; remove it first")
    link.symlink_to(upstream, target_is_directory=True)
    return link


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundles", nargs="+", choices=sorted(BUNDLES), default=sorted(BUNDLES))
    parser.add_argument("--upstream", type=Path, default=DEFAULT_UPSTREAM, help="upstream LatentSync checkout to link")
    args = parser.parse_args(argv)
    if not (args.upstream / "latentsync").is_dir():
        print(f"error: --upstream {args.upstream} has no latentsync/ folder", file=sys.stderr)
        return 1
    project = tracked_bytes()
    BUNDLE_DIR.mkdir(exist_ok=True)
    for name in args.bundles:
        with tempfile.TemporaryDirectory(prefix="latentsync-gpucheck-bundle-") as tmp:
            wheels, site = Path(tmp) / "wheels", Path(tmp) / "site"
            fetch_wheels(BUNDLES[name], wheels)
            install(wheels, site)
            prune(site)
            size = pack(site, BUNDLE_DIR / name / "bundle.tar.xz")
        print(f"bundle {name}: {size / 2**20:.1f} MiB ({', '.join(p for p, _, _ in BUNDLES[name])})")
    if "b" in args.bundles:
        write_speech(BUNDLE_DIR / "b" / "speech.wav")
    link = link_upstream(args.upstream.resolve())
    upstream_bytes = sum(p.stat().st_size for p in (link / "latentsync").rglob("*") if p.is_file())
    for name in args.bundles:
        carried = sum(p.stat().st_size for p in (BUNDLE_DIR / name).rglob("*") if p.is_file())
        total = project + carried + (upstream_bytes if name == "b" else 0)
        verdict = "fits" if total <= LIMIT_BYTES else "TOO LARGE"
        print(f"call with bundle {name}: project {project / 2**20:.1f} MiB + carried {(total - project) / 2**20:.1f} MiB"
              f" = {total / 2**20:.1f} MiB of {LIMIT_BYTES / 2**20:.0f}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
