"""The U-Net proof's loss figures, read from the training states of the stage-1 and stage-2 runs.

  python -m tools.unet_proof_report --stage1 WORKDIR/stage1 --stage2 WORKDIR/stage2

Prints ``stage1_loss_drop=0.NN`` (1 - last-100-step mean / first-20-step mean of the stage-1
recon loss) and ``stage2_sync_loss_drop=0.NN`` (the same for the stage-2 sync loss term).
"""

from __future__ import annotations

import argparse
import glob
import os
import re

import torch


def latest_history(run_dir: str) -> dict:
    """The history of the newest ``checkpoints/state-N.pt`` of a run."""
    states = glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", "state-*.pt"))
    if not states:
        raise SystemExit(f"error: no training state in {run_dir}/checkpoints")
    newest = max(states, key=lambda p: int(re.search(r"state-(\d+)\.pt$", p).group(1)))
    return torch.load(newest, map_location="cpu", weights_only=False)["history"]


def loss_drop(values: list[float], first: int = 20, last: int = 100) -> float:
    """1 - mean(last ``last``) / mean(first ``first``): the share of the loss that training removed."""
    if len(values) < first + 1:
        raise SystemExit(f"error: only {len(values)} recorded steps, need more than {first}")
    head = sum(values[:first]) / first
    tail = values[-last:]
    return 1 - (sum(tail) / len(tail)) / head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True)
    parser.add_argument("--stage2", required=True)
    args = parser.parse_args()
    stage1 = [value for _, value in latest_history(args.stage1)["terms"]["recon"]]
    stage2 = [value for _, value in latest_history(args.stage2)["terms"]["sync"]]
    print(f"stage1: {len(stage1)} steps, recon {stage1[0]:.4f} -> {stage1[-1]:.4f}")
    print(f"stage2: {len(stage2)} steps, sync {stage2[0]:.4f} -> {stage2[-1]:.4f}")
    print(f"stage1_loss_drop={loss_drop(stage1):.2f}")
    print(f"stage2_sync_loss_drop={loss_drop(stage2):.2f}")


if __name__ == "__main__":
    main()
