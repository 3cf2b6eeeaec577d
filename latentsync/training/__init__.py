"""Training toolkit shared by the SyncNet and U-Net training scripts.

- ``config``: ``Key`` and the schema of the keys every script shares (``TOOLKIT_KEYS``);
  ``load_training_config(path, schema, overrides, allow_unknown)`` (YAML + defaults + key=value, checked).
- ``cli``: the common flags, ``key=value`` anywhere, ``run_training_main`` (one ``error:`` line, exit 1);
  ``resume``: ``start_checkpoint`` (resume 'latest' by default, never write over another run);
  ``launch``: torchrun for ``train_*.sh``, ending with the workers' error line.
- ``setup``: ``build_accelerator`` (--device, mixed precision, accumulation, trackers),
  ``select_trainable``, ``build_optimizer`` (fused AdamW), ``build_lr_scheduler``,
  ``build_train_loader`` (sharded, resumable) / ``build_val_loader``, ``steps_per_epoch``.
- ``run``: ``LoopSettings`` (steps, schedules, clipping, pruning, skip cap, best metric) and
  ``TrainingRun`` (accelerator, model, optimizer, schedule, loader, step, history, best, guard).
- ``checkpoints``: atomic weights + full state, ``load_training_state`` (exact resume),
  ``seed_processes`` (RNG), ``resolve_resume_path`` ('latest'), pruning, the best copy.
- ``loop``: ``train_loop(run, compute_loss, validate)``; ``guard``: non-finite skips;
  ``history``: curves and the PNG chart.

A script: its schema, then ``run_training_main``: parse -> config -> ``start_checkpoint`` -> the script's
``build`` (accelerator, ``set_seed``, model, optimizer, schedule -> ``TrainingRun`` -> ``load_training_state``
if resuming -> ``accelerator.prepare`` -> loaders -> ``seed_processes``) -> ``train_loop`` (see
``scripts/train_syncnet.py``).
"""
