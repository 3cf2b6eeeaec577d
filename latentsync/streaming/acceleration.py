"""The UNet of a session, compiled where that can help (CUDA), with the plain UNet as the fallback.

``acceleration`` (:class:`~latentsync.streaming.options.StreamOptions`): "none" runs the UNet as
loaded; "compile" wraps it in ``torch.compile``; "cudagraphs" in ``torch.compile(mode="reduce-overhead")``,
which replays CUDA graphs of the compiled kernels (a clip has fixed shapes, so each is captured once).
Both only on CUDA: elsewhere, or when compiling fails (at wrapping or on the first call), the session
runs the plain UNet and says so in the log. A compiled UNet is made once per loaded UNet and shared by
its sessions; nothing of the loaded pipeline is changed.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable

import torch
from torch import nn

logger = logging.getLogger(__name__)

_COMPILE_MODES = {"compile": None, "cudagraphs": "reduce-overhead"}
_made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # UNet -> {acceleration: wrapper}
_making = threading.Lock()


class FallbackUNet:
    """Calls ``compiled``; if it raises, logs why and calls ``eager`` (the same weights) from then on."""

    def __init__(self, compiled: Callable[..., Any], eager: nn.Module, name: str) -> None:
        self.compiled, self.eager, self.name = compiled, eager, name
        self.failed: BaseException | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                self.failed = err
                logger.warning("%s UNet failed (%s: %s); running it eagerly", self.name, type(err).__name__, err)
        return self.eager(*args, **kwargs)


def accelerated_unet(unet: nn.Module, acceleration: str) -> nn.Module | FallbackUNet:
    """The UNet to call for ``acceleration`` (see the module docstring); the UNet itself when none applies."""
    if acceleration == "none":
        return unet
    if acceleration not in _COMPILE_MODES:
        raise ValueError(f"unknown acceleration {acceleration!r}, choose none, {', '.join(_COMPILE_MODES)}")
    device = next(unet.parameters()).device
    if device.type != "cuda":
        logger.info("acceleration %s needs CUDA; the UNet runs eagerly on %s", acceleration, device)
        return unet
    with _making:
        made = _made.setdefault(unet, {})
        if acceleration not in made:
            try:
                compiled = torch.compile(unet, mode=_COMPILE_MODES[acceleration], dynamic=False)
            except Exception as err:  # noqa: BLE001 - e.g. no compiler on this machine
                logger.warning("cannot %s the UNet (%s); it runs eagerly", acceleration, err)
                return unet
            made[acceleration] = FallbackUNet(compiled, unet, acceleration)
        return made[acceleration]
