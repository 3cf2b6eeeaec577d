"""Reuse the UNet's deep features across denoising steps (the DeepCache idea, Ma et al. 2023).

Between neighbouring DDIM steps the deep, low-resolution features of the UNet change little;
the shallow path (``conv_in``, the first down block, the last up block, ``conv_out``) carries
the fine detail. So on a *full* step every block runs and the outputs of the deep blocks (down
blocks 1.., mid block, up blocks ..-2) are recorded; on the following ``interval - 1`` *cached*
steps those blocks are not run: they replay the recorded outputs, and only the shallow path is
computed on the new input. With interval 3 a 20-step clip costs 7 full and 13 shallow passes.

This relies only on the UNet calling its blocks as sub-modules (``unet.down_blocks``,
``unet.mid_block``, ``unet.up_blocks``), not on how it calls them, so it follows the model's own
forward. The cache is per clip: :meth:`DeepFeatureCache.reset` at the start of every clip.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from torch import nn


class _Replay(nn.Module):
    """Stands in for a block during a cached step: returns the block's recorded output.

    Other attributes (e.g. ``resnets``, which the UNet counts to split its skip connections)
    are read from the block it replaces.
    """

    def __init__(self, block: nn.Module, output: Any) -> None:
        super().__init__()
        self._block = (block,)  # a tuple, so the block is not registered as a sub-module
        self._output = output

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["_block"][0], name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._output


class DeepFeatureCache:
    """Decides per step whether the UNet runs fully (and records) or replays its deep blocks."""

    def __init__(self, unet: nn.Module, interval: int = 3) -> None:
        if interval < 1:
            raise ValueError(f"deep-cache interval must be >= 1, got {interval}")
        if len(unet.down_blocks) < 2 or len(unet.up_blocks) < 2:
            raise ValueError("deep caching needs a UNet with at least two down and two up blocks")
        self.unet = unet
        self.interval = interval
        self.reset()

    def _deep_blocks(self) -> list[tuple[nn.ModuleList | None, int | str]]:
        """(container, key) of every block whose output is cached; the mid block is an attribute."""
        blocks: list[tuple[nn.ModuleList | None, int | str]] = []
        blocks += [(self.unet.down_blocks, i) for i in range(1, len(self.unet.down_blocks))]
        blocks.append((None, "mid_block"))
        blocks += [(self.unet.up_blocks, i) for i in range(len(self.unet.up_blocks) - 1)]
        return blocks

    def _get(self, container, key) -> nn.Module:
        return getattr(self.unet, key) if container is None else container[key]

    def _set(self, container, key, module: nn.Module) -> None:
        if container is None:
            setattr(self.unet, key, module)
        else:
            container[key] = module

    def reset(self) -> None:
        """Forget recorded features (a new clip: different latents and conditioning)."""
        self._outputs: dict[tuple[int, int | str], Any] | None = None
        self._step = 0

    @contextlib.contextmanager
    def step(self) -> Iterator[bool]:
        """Context for one UNet evaluation; yields True when this step replays cached features."""
        cached = self._outputs is not None and self._step % self.interval != 0
        self._step += 1
        if cached:
            with self._replaying():
                yield True
        else:
            with self._recording():
                yield False

    @contextlib.contextmanager
    def _recording(self) -> Iterator[None]:
        outputs: dict[tuple[int, int | str], Any] = {}
        handles = []
        for index, (container, key) in enumerate(self._deep_blocks()):
            block = self._get(container, key)

            def keep(module, args, output, slot=(index, key)):
                outputs[slot] = output

            handles.append(block.register_forward_hook(keep))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        self._outputs = outputs

    @contextlib.contextmanager
    def _replaying(self) -> Iterator[None]:
        originals = []
        try:
            for index, (container, key) in enumerate(self._deep_blocks()):
                block = self._get(container, key)
                originals.append((container, key, block))
                self._set(container, key, _Replay(block, self._outputs[(index, key)]))
            yield
        finally:
            for container, key, block in originals:
                self._set(container, key, block)
