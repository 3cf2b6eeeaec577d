"""Samplers and the per-call sampling options of :class:`~latentsync.pipelines.lipsync_pipeline.LipsyncPipeline`.

Every sampler is built from the one noise schedule in ``configs/scheduler_config.json``, fresh for
each clip: a scheduler carries per-run state (its timesteps, a multistep solver's history), so one
shared between calls or threads would let one job's run leak into another's. Building one is cheap
(a few small tensors). This module imports diffusers only when a sampler is built, so that the
settings (:mod:`latentsync.settings`) and the command line's checks stay light.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from latentsync import paths
from latentsync.errors import ConfigError

# Sampler names and their diffusers classes. DDIM at 20 steps is the reference; DPM-Solver++
# (2nd-order multistep) gets close in about half the steps.
SCHEDULERS = {"ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler"}
SCHEDULE_FILE = paths.SCHEDULER_DIR / "scheduler_config.json"


def scheduler_class(name: str) -> type:
    """The diffusers scheduler class of a sampler name (ConfigError naming the choices for an unknown one)."""
    if name not in SCHEDULERS:
        raise ConfigError(f"unknown scheduler {name!r}, choose one of {', '.join(SCHEDULERS)}")
    import diffusers  # here: see the module docstring

    return getattr(diffusers, SCHEDULERS[name])


@lru_cache(maxsize=None)
def _schedule_config() -> dict:
    """The noise schedule (paths.SCHEDULER_DIR) as diffusers reads it, read once per process."""
    return dict(scheduler_class("ddim").load_config(paths.SCHEDULER_DIR))


def max_inference_steps() -> int:
    """The most steps the project's schedule allows (its training timesteps less its offset); reads only the JSON."""
    with open(SCHEDULE_FILE, encoding="utf-8") as f:
        config = json.load(f)
    return config["num_train_timesteps"] - config.get("steps_offset", 0)


def make_scheduler(name: str):
    """A fresh sampler of the project's noise schedule: "ddim" or "dpm++" (DPM-Solver++ multistep)."""
    return scheduler_class(name).from_config(dict(_schedule_config()))


@dataclass(frozen=True)
class Sampling:
    """How one call samples: the sampler and its step count, classifier-free guidance, deep caching, DDIM's eta.

    The names are the settings' (configs/inference.yaml); ``InferenceSettings.sampling()`` makes
    one. ``deepcache_interval`` counts only with ``enable_deepcache``; ``eta`` (DDIM's noise) must be
    0 for samplers without one.
    """

    inference_steps: int
    scheduler: str
    guidance_scale: float
    enable_deepcache: bool
    deepcache_interval: int
    eta: float = 0.0
