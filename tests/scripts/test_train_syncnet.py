"""SyncNet training: golden forward, a few real steps, atomic checkpoints, exact resume, two-process DDP.

Runs use the tiny CPU config on a handful of 2-second 64x64 clips made here.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from pathlib import Path

import pytest
import torch

from latentsync.losses import cosine_loss
from latentsync.errors import CheckpointError
from latentsync.models.checkpoint import read_checkpoint, save_checkpoint
from latentsync.models.stable_syncnet import StableSyncNet
from latentsync.models.syncnet_input import syncnet_embeddings as forward_pair
from latentsync.training.checkpoints import resolve_resume_path, save_training_state
from scripts.train_syncnet import (
    build,
    load_training_config,
    main,
    parse_args,
)
from tests.conftest import REPO_ROOT, load_golden, reset_accelerate_state
from tests.data.synthetic_clips import make_clip_set
from tests.processes import run_group
from tools.write_fileslist import write_fileslist

CONFIG = "configs/syncnet/syncnet_tiny_cpu.yaml"


@pytest.fixture(scope="module")
def clip_lists(tmp_path_factory):
    root = tmp_path_factory.mktemp("syncnet_data")
    make_clip_set(root / "train", 4, seconds=2.0, seed=10)
    make_clip_set(root / "val", 1, seconds=2.0, seed=20)
    lists = {split: str(root / f"{split}.txt") for split in ("train", "val")}
    for split, path in lists.items():
        write_fileslist(path, [root / split])
    return {**lists, "cache": str(root / "mel")}


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    # accelerate keeps process-wide singletons; each in-process run starts from scratch.
    yield
    reset_accelerate_state()


def tiny_args(clip_lists, output_dir, *extra):
    return [
        "--config_path", CONFIG,
        "--output_dir", str(output_dir),
        f"data.train_fileslist={clip_lists['train']}",
        f"data.val_fileslist={clip_lists['val']}",
        f"data.audio_mel_cache_dir={clip_lists['cache']}",
        "data.batch_size=4",
        "data.num_val_samples=4",
        "run.validation_steps=3",
        "ckpt.save_ckpt_steps=3",
        "ckpt.keep_last_n=0",
        *extra,
    ]


def history(output_dir, step):
    state = torch.load(Path(output_dir) / "checkpoints" / f"state-{step}.pt", weights_only=False)
    return state["history"]["train"]


def test_golden_vector_through_the_training_forward():
    golden = load_golden("syncnet_tiny.pt")
    model = StableSyncNet(golden["config"])
    model.load_state_dict(golden["state_dict"], strict=True)
    model.eval()
    images = golden["inputs"]["image_sequences"].float()
    batch = {
        "frames": images.reshape(1, 16, 3, *images.shape[-2:]),  # what the data set yields
        "audio_samples": golden["inputs"]["audio_sequences"].float(),
        "y": torch.zeros(1, 1),
    }
    with torch.no_grad():
        vision, audio = forward_pair(model, batch, None, lower_half=True, device=torch.device("cpu"))
        loss = cosine_loss(vision, audio, batch["y"]).mean()
    torch.testing.assert_close(vision, golden["outputs"]["vision_embeds"].float(), atol=2e-7, rtol=1e-4)
    torch.testing.assert_close(audio, golden["outputs"]["audio_embeds"].float(), atol=2e-7, rtol=1e-4)
    torch.testing.assert_close(loss, golden["outputs"]["sync_loss_y0"].float().reshape(()), atol=2e-7, rtol=1e-4)


def test_a_few_steps_train_and_move_the_loss(clip_lists, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_args(clip_lists, out, "run.max_train_steps=6")) == 0
    losses = [loss for _, loss in history(out, 6)]
    assert [step for step, _ in history(out, 6)] == [1, 2, 3, 4, 5, 6]
    assert all(0 < loss < 10 for loss in losses) and len(set(losses)) > 1
    state_dict, step = read_checkpoint(out / "checkpoints" / "checkpoint-6.pt")  # the official format
    assert step == 6
    torch.manual_seed(42)
    initial = StableSyncNet(load_training_config(parse_args(tiny_args(clip_lists, out))).model).state_dict()
    changed = [k for k in initial if not torch.equal(initial[k], state_dict[k])]
    assert len(changed) > len(initial) // 2
    assert (out / "loss_charts" / "loss_chart.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()


def _crash_on_call(number):
    """A torch.save that writes half a file and raises on its ``number``-th call (1-based), else saves."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) != number:
            return real_save(obj, f, *args, **kwargs)
        with open(f, "wb") as handle:
            handle.write(b"half a checkpoint")
        raise OSError("disk full")

    return save


def test_checkpoint_write_is_atomic(clip_lists, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run = build(load_training_config(parse_args(tiny_args(clip_lists, out))))
    run.global_step = 3
    save_training_state(run)
    folder = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert set(before) == {"checkpoint-3.pt", "state-3.pt"}
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(1.0)

    monkeypatch.setattr(torch, "save", _crash_on_call(1))  # while writing the training state of step 3 again
    with pytest.raises(OSError, match="disk full"):
        save_training_state(run)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no partial or temporary file

    monkeypatch.setattr(torch, "save", _crash_on_call(1))  # the weights file alone
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(folder / "checkpoint-3.pt", run.model, 3)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before

    run.global_step = 6
    monkeypatch.setattr(torch, "save", _crash_on_call(2))  # state of step 6 written, its weights crash
    with pytest.raises(OSError, match="disk full"):
        save_training_state(run)
    monkeypatch.undo()
    assert not (folder / "checkpoint-6.pt").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-3.pt", "state-3.pt", "state-6.pt"]
    assert resolve_resume_path("latest", str(out)) == str(folder / "checkpoint-3.pt")  # resumes from intact step 3
    assert read_checkpoint(folder / "checkpoint-3.pt")[1] == 3


def test_state_and_weights_of_different_saves_are_refused(clip_lists, tmp_path):
    out = tmp_path / "run"
    run = build(load_training_config(parse_args(tiny_args(clip_lists, out))))
    run.global_step = 3
    save_training_state(run)
    weights = out / "checkpoints" / "checkpoint-3.pt"
    with torch.no_grad():
        for p in run.model.parameters():
            p.add_(1.0)
    save_checkpoint(weights, run.model, 3)  # as if the state write had been lost
    _fresh_state()
    with pytest.raises(CheckpointError, match="different saves"):
        build(load_training_config(parse_args(tiny_args(clip_lists, out))), resume=str(weights))


def test_resume_reproduces_the_unbroken_run(clip_lists, tmp_path):
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    # A warmup that is still running at the break: the resumed run must continue the schedule too.
    warmup = ("optimizer.lr=1e-4", "optimizer.lr_scheduler=constant_with_warmup", "optimizer.lr_warmup_steps=5")
    assert main(tiny_args(clip_lists, unbroken, "run.max_train_steps=6", *warmup)) == 0
    _fresh_state()
    assert main(tiny_args(clip_lists, broken, "run.max_train_steps=3", *warmup)) == 0
    state = torch.load(broken / "checkpoints" / "state-3.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4 * 3 / 5)
    _fresh_state()
    resumed = tiny_args(clip_lists, broken, "run.max_train_steps=6", *warmup, "--resume_ckpt_path",
                        str(broken / "checkpoints" / "checkpoint-3.pt"))
    assert main(resumed) == 0
    state = torch.load(broken / "checkpoints" / "state-6.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-4)

    reference, continued = history(unbroken, 6), history(broken, 6)
    assert [s for s, _ in continued] == [1, 2, 3, 4, 5, 6]  # the step count went on from 3
    assert continued[:3] == history(broken, 3)
    for (_, a), (_, b) in zip(reference, continued):
        assert a == pytest.approx(b, abs=1e-5)
    assert read_checkpoint(broken / "checkpoints" / "checkpoint-6.pt")[1] == 6
    a, _ = read_checkpoint(unbroken / "checkpoints" / "checkpoint-6.pt")
    b, _ = read_checkpoint(broken / "checkpoints" / "checkpoint-6.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)

    _fresh_state()  # 'latest' on a finished run finds step 6 and has nothing left to do
    assert main(tiny_args(clip_lists, broken, "run.max_train_steps=6", *warmup, "--resume_ckpt_path", "latest")) == 0


def test_bad_override_fails_with_one_line(clip_lists, tmp_path, capsys):
    assert main(tiny_args(clip_lists, tmp_path, "data.no_such_key=1")) == 1
    assert capsys.readouterr().err.startswith("error: unknown key 'data.no_such_key' on the command line")


def test_two_processes_share_data_and_weights(clip_lists, tmp_path):
    out, dump = tmp_path / "ddp", tmp_path / "dump"
    args = tiny_args(clip_lists, out, "run.max_train_steps=2", "data.batch_size=2",
                     "run.validation_steps=2", "ckpt.save_ckpt_steps=2", "--debug_dump_dir", str(dump))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = run_group(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "scripts.train_syncnet", *args],
        cwd=REPO_ROOT, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for s0, s1 in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert s0["step"] == s1["step"]
        # 4 clips, 2 ranks, batch 2: each step is one epoch split into disjoint halves.
        assert not set(s0["video_indices"]) & set(s1["video_indices"])
        assert s0["weights_digest"] == s1["weights_digest"]  # gradients were averaged
        assert s0["loss"] == s1["loss"]  # the logged loss is the mean over ranks
    assert len(ranks[0]["steps"]) == 2
    assert ranks[1]["files_written"] == []
    written = {Path(p).name for p in ranks[0]["files_written"]}
    assert {"checkpoint-2.pt", "state-2.pt", "loss_chart.png"} <= written
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2.pt", "state-2.pt"]
    assert len(torch.load(out / "checkpoints" / "state-2.pt", weights_only=False)["rng_states"]) == 2


@pytest.mark.slow
def test_prove_syncnet_reaches_85_percent(tmp_path):
    done = run_group(["bash", "tools/prove_syncnet.sh", str(tmp_path)], cwd=REPO_ROOT, timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"syncnet_val_accuracy=(\d\.\d+)", last)
    assert match, last
    assert float(match.group(1)) >= 0.85


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_state():
    reset_accelerate_state()


def test_bad_device_fails_with_one_line(clip_lists, tmp_path, capsys):
    assert main(tiny_args(clip_lists, tmp_path, "--device", "tpu")) == 1
    assert capsys.readouterr().err == "error: run.device must be one of auto, cuda, mps, cpu, got 'tpu' (on the command line)\n"
