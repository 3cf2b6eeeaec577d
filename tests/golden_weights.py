"""The golden data's weight procedure: deterministic tensors from the ordered key list alone.

Tensor i draws from ``torch.Generator().manual_seed(i)``: running_var 0.5 + U[0,1), running_mean
0.1 N, num_batches_tracked unchanged, >= 2-D N / sqrt(fan_in), 1-D "...weight" 1 + 0.1 N, other 1-D 0.1 N.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from tests.conftest import load_golden


def golden_tensor(index: int, name: str, shape: Sequence[int], dtype: str = "float32") -> torch.Tensor:
    """Tensor ``index`` of a state dict filled by the golden procedure."""
    shape = tuple(shape)
    if name.endswith("num_batches_tracked") or dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    gen = torch.Generator().manual_seed(index)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=gen)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=gen)
    if len(shape) >= 2:
        fan_in = math.prod(shape) / shape[0]
        return torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    if name.endswith("weight"):
        return 1 + 0.1 * torch.randn(shape, generator=gen)
    return 0.1 * torch.randn(shape, generator=gen)


def golden_state_dict(manifest: Iterable[Sequence]) -> dict[str, torch.Tensor]:
    """A state dict in manifest order ``[key, shape, dtype]`` filled by the golden procedure."""
    return {key: golden_tensor(i, key, shape, *rest) for i, (key, shape, *rest) in enumerate(manifest)}


def eval_golden() -> dict:
    return load_golden("eval_models.pt")


def write_official_file(path, manifest_name: str) -> None:
    """Write ``path`` as the official model file of ``manifest_name`` (a bare state dict) with golden weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(golden_state_dict(eval_golden()[manifest_name]["manifest"]), path)
