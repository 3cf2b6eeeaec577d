"""Device and dtype selection, done once at the entry point."""

from __future__ import annotations

import torch

from latentsync.errors import DeviceError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def pick_device(name: str = "auto") -> torch.device:
    """Resolve ``auto`` to cuda, then mps, then cpu; check an explicit choice is available."""
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device '{name}', choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda was requested but CUDA is not available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("--device mps was requested but MPS is not available")
    return torch.device(name)


def pick_dtype(device: torch.device) -> torch.dtype:
    """Inference dtype: fp16 on CUDA GPUs that run it fast (compute capability > 7), fp16 on MPS, else fp32."""
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.float16 if major > 7 else torch.float32
    if device.type == "mps":
        return torch.float16
    return torch.float32
