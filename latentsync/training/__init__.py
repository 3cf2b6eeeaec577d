"""Training toolkit shared by the SyncNet and U-Net training scripts.

config (YAML + optional keys + key=value overrides), setup (accelerator, optimizer, LR
schedule, trainable modules, sharded loaders), history (loss curves and charts), checkpoints
(atomic weights + full training state, exact resume, pruning, best-by-validation copy),
guard (non-finite loss/gradient skips) and loop (the accumulate / clip / step / validate /
checkpoint cycle around a script's own loss and validation functions).
"""
