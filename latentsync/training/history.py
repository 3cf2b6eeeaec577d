"""Loss and validation curves of a run: kept in the training state, drawn as one PNG."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from latentsync.utils.plotting import Curve, save_chart


@dataclass
class History:
    """``train``: (step, loss) per optimiser step; ``terms``: name -> (step, value) of loss terms;
    ``val``: (step, {metric: value}) per validation."""

    train: list[tuple[int, float]] = field(default_factory=list)
    terms: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    val: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    def record_step(self, step: int, loss: float, terms: Mapping[str, float] | None = None) -> None:
        self.train.append((step, loss))
        for name, value in (terms or {}).items():
            self.terms.setdefault(name, []).append((step, value))

    def record_validation(self, step: int, metrics: Mapping[str, float]) -> None:
        self.val.append((step, dict(metrics)))

    def val_curve(self, metric: str) -> Curve:
        points = [(step, values[metric]) for step, values in self.val if metric in values]
        return tuple(zip(*points)) if points else ((), ())

    def state_dict(self) -> dict:
        return {"train": list(self.train), "terms": {k: list(v) for k, v in self.terms.items()}, "val": list(self.val)}

    @classmethod
    def from_state_dict(cls, state: Mapping) -> "History":
        return cls(
            [tuple(x) for x in state["train"]],
            {k: [tuple(x) for x in v] for k, v in state.get("terms", {}).items()},
            [_validation_entry(entry) for entry in state["val"]],
        )

    def save_chart(self, path: str | os.PathLike, title: str | None = None) -> None:
        """Panel "loss": train and val loss; one panel per loss term set and per other validation metric."""
        train: Curve = tuple(zip(*self.train)) if self.train else ((), ())
        panels: dict[str, dict[str, Curve]] = {"loss": {"train loss": train, "val loss": self.val_curve("loss")}}
        if self.terms:
            panels["loss terms"] = {name: tuple(zip(*points)) for name, points in self.terms.items()}
        metrics = sorted({name for _, values in self.val for name in values} - {"loss"})
        for name in metrics:
            panels[name] = {f"val {name}": self.val_curve(name)}
        save_chart(path, panels, title)


def _validation_entry(entry) -> tuple[int, dict[str, float]]:
    # SyncNet states written before the shared toolkit hold (step, loss, accuracy) triples.
    if len(entry) == 3:
        return entry[0], {"loss": entry[1], "accuracy": entry[2]}
    return entry[0], dict(entry[1])
