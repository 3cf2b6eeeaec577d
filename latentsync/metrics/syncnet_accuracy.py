"""SyncNet accuracy: how often a SyncNet tells in-sync (mouth, speech) pairs from shifted ones.

A pair is judged "in sync" when the cosine similarity of its embeddings exceeds 0.5, as in
the reference. Used by ``eval/eval_syncnet_acc.py`` and by SyncNet training's validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from latentsync.losses import cosine_loss
from latentsync.models.syncnet_input import syncnet_embeddings

SYNC_THRESHOLD = 0.5  # cosine similarity above which a pair counts as in sync


@dataclass(frozen=True)
class SyncScore:
    """Summed BCE loss, correct decisions and pair count; additive over batches and ranks."""

    loss_sum: float = 0.0
    correct: float = 0.0
    count: float = 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.count, 1)

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.count, 1)

    def as_list(self) -> list[float]:
        return [self.loss_sum, self.correct, self.count]

    @classmethod
    def from_list(cls, values: Sequence[float]) -> "SyncScore":
        return cls(*values)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    vae: torch.nn.Module | None,
    lower_half: bool,
    device: torch.device,
    threshold: float = SYNC_THRESHOLD,
    progress: bool = True,
) -> SyncScore:
    """Sum of losses and of correct in-sync/shifted decisions over ``batches`` of a SyncNet data set."""
    loss_sum = correct = count = 0.0
    for batch in tqdm(batches, desc="SyncNet accuracy", disable=not progress):
        vision, audio = syncnet_embeddings(model, batch, vae, lower_half, device)
        y = batch["y"].to(device).flatten()
        loss_sum += cosine_loss(vision, audio, y).sum().item()
        similarity = F.cosine_similarity(vision.float(), audio.float(), dim=1)
        correct += ((similarity > threshold).float() == y).sum().item()
        count += len(y)
    return SyncScore(loss_sum, correct, count)
