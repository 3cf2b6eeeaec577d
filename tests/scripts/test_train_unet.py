"""U-Net training on the tiny CPU configs: stage 1 and 2 steps, trainable modules, checkpointing,
audio dropout in the step, SIGKILL (at a step, by the loop's test hook) and resume, and a two-process DDP run."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.utils import set_seed

from latentsync.config import to_container
from latentsync.models.checkpoint import read_checkpoint
from latentsync.models.unet import UNet3DConditionModel
from latentsync.paths import PROJECT_ROOT
from latentsync.training import unet as unet_step
from latentsync.training.loop import KILL_AT_STEP_ENV
from scripts.train_unet import build, load_initial_weights, load_training_config, main, parse_args
from tests.conftest import REPO_ROOT, reset_accelerate_state
from tests.processes import run_group, run_torchrun
from tests.scripts.unet_training_fixtures import STAGE1, STAGE2, tiny_setup  # noqa: F401  (fixture)

TRAINABLE = ("motion_modules.", "attentions.")


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    reset_accelerate_state()


def history(output_dir: Path, step: int) -> dict:
    return torch.load(output_dir / "checkpoints" / f"state-{step}.pt", weights_only=False)["history"]


@pytest.fixture(scope="module")
def stage1_run(tiny_setup, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("stage1")
    assert main(tiny_setup.args(STAGE1, out, f"ckpt.init_ckpt_path={tiny_setup.stage1_init}")) == 0
    reset_accelerate_state()
    return out


def test_stage1_two_steps(stage1_run, tiny_setup):  # noqa: F811
    out = stage1_run
    record = history(out, 2)
    assert [step for step, _ in record["train"]] == [1, 2]
    assert all(0.3 < loss < 3 for _, loss in record["train"])  # noise MSE of a fresh model is about 1
    assert set(record["terms"]) == {"recon"}
    (step, metrics), = record["val"]
    assert step == 2 and set(metrics) == {"loss", "recon"} and 0.3 < metrics["loss"] < 3
    state_dict, saved_step = read_checkpoint(out / "checkpoints" / "checkpoint-2.pt")
    assert saved_step == 2 and not any("motion_modules." in key for key in state_dict)
    initial, init_step = read_checkpoint(tiny_setup.stage1_init)
    assert init_step == 100  # the run counts its own steps from 0
    changed = {key for key in initial if not torch.equal(initial[key], state_dict[key])}
    assert len(changed) > 0.9 * len(initial)  # stage 1 trains everything
    assert read_checkpoint(out / "best_checkpoint.pt")[1] == 2
    assert (out / "loss_charts" / "loss_chart.png").stat().st_size > 1000
    assert (out / "config.yaml").is_file()
    # The Whisper features were computed once per video and cached on disk.
    assert len(list((tiny_setup.cache / "embeds").glob("*.pt"))) == 4


def test_stage2_one_step_from_stage1_changes_only_the_trainable_modules(stage1_run, tiny_setup, tmp_path, caplog):  # noqa: F811
    out = tmp_path / "stage2"
    init = stage1_run / "checkpoints" / "checkpoint-2.pt"
    args = tiny_setup.args(STAGE2, out, f"ckpt.init_ckpt_path={init}", "run.max_train_steps=1",
                           "run.validation_steps=1", "ckpt.save_ckpt_steps=1", "optimizer.lr=1e-3",
                           "optimizer.lr_warmup_steps=0")
    with caplog.at_level("WARNING"):
        assert main(args) == 0
    assert "LPIPS: the VGG16 trunk is RANDOMLY INITIALISED" in caplog.text
    assert "VideoMAE-v2 (TREPA) is RANDOMLY INITIALISED" in caplog.text
    record = history(out, 1)
    assert set(record["terms"]) == {"recon", "sync", "perceptual", "trepa"}
    terms = {name: points[0][1] for name, points in record["terms"].items()}
    assert all(torch.isfinite(torch.tensor(v)) and v > 0 for v in terms.values()), terms
    weights = {"recon": 1, "sync": 0.05, "perceptual": 0.1, "trepa": 10}
    assert record["train"][0][1] == pytest.approx(sum(weights[k] * v for k, v in terms.items()), rel=1e-5)

    reset_accelerate_state()
    config = load_training_config(parse_args(args))
    set_seed(config.run.seed)
    model = UNet3DConditionModel.from_config(to_container(config.model))
    load_initial_weights(model, str(init))
    initial = model.state_dict()
    trained, _ = read_checkpoint(out / "checkpoints" / "checkpoint-1.pt")
    changed = {key for key in initial if not torch.equal(initial[key], trained[key])}
    trainable = {key for key in initial if any(p in key for p in TRAINABLE)}
    assert changed <= trainable
    assert len(changed) > 0.4 * len(trainable)  # zero-initialised motion outputs block gradients above them at step 1
    assert any("motion_modules." in key for key in changed) and any("attn2." in key for key in changed)


def _one_batch_losses(run, checkpointing: bool, seed: int = 5):
    unet = run.accelerator.unwrap_model(run.model)
    if checkpointing:
        unet.enable_gradient_checkpointing()
        run.networks.vae.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()
        run.networks.vae.disable_gradient_checkpointing()
    batch = next(iter(run.train_loader))
    unet.zero_grad(set_to_none=True)
    loss, terms = unet_step.unet_losses(unet, run.networks, batch, run.step_settings, device=torch.device("cpu"),
                                        generator=torch.Generator().manual_seed(seed))
    loss.backward()
    grads = {name: p.grad.clone() for name, p in unet.named_parameters() if p.grad is not None}
    return loss.detach(), {k: v.detach() for k, v in terms.items()}, grads


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_setup, tmp_path):  # noqa: F811
    config = load_training_config(parse_args(tiny_setup.args(STAGE2, tmp_path / "run", "optimizer.lr=1e-3")))
    run = build(config)
    plain = _one_batch_losses(run, checkpointing=False)
    checkpointed = _one_batch_losses(run, checkpointing=True)
    torch.testing.assert_close(checkpointed[0], plain[0], rtol=1e-6, atol=0)
    torch.testing.assert_close(checkpointed[1], plain[1], rtol=1e-6, atol=0)
    assert plain[2].keys() == checkpointed[2].keys() and len(plain[2]) > 50
    for name, grad in plain[2].items():
        torch.testing.assert_close(checkpointed[2][name], grad, rtol=1e-5, atol=1e-8, msg=name)


def test_mixed_precision_on_cpu_runs_every_loss_in_bf16_over_fp32_weights(tiny_setup, tmp_path):  # noqa: F811
    args = tiny_setup.args(STAGE2, tmp_path / "run", "run.mixed_precision_training=true")
    run = build(load_training_config(parse_args(args)))
    assert run.accelerator.mixed_precision == "bf16"
    assert next(run.networks.vae.parameters()).dtype == torch.bfloat16  # frozen networks at the autocast precision
    unet = run.accelerator.unwrap_model(run.model)
    seen = []
    hook = unet.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    loss, terms = unet_step.unet_losses(unet, run.networks, next(iter(run.train_loader)), run.step_settings,
                                        device=torch.device("cpu"), generator=torch.Generator().manual_seed(3),
                                        autocast=run.accelerator.autocast)
    hook.remove()
    loss.backward()
    assert seen == [torch.bfloat16]
    assert set(terms) == {"recon", "sync", "perceptual", "trepa"}
    assert all(torch.isfinite(term) and term > 0 for term in terms.values()), terms
    params = [p for p in unet.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32 for p in params)
    assert all(torch.isfinite(p.grad).all() for p in params)


def test_audio_dropout_gives_the_chosen_samples_the_null_condition(tiny_setup, tmp_path, monkeypatch):  # noqa: F811
    config = load_training_config(parse_args(tiny_setup.args(STAGE1, tmp_path / "run", "run.audio_dropout_prob=0.5")))
    run = build(config)
    unet = run.accelerator.unwrap_model(run.model)
    seen = []
    unet.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["encoder_hidden_states"]),
                                   with_kwargs=True)
    monkeypatch.setattr(unet_step, "audio_dropout_draw", lambda batch, p, generator=None: torch.tensor([True, False]))
    batch = next(iter(run.train_loader))
    with torch.no_grad():
        unet_step.unet_losses(unet, run.networks, batch, run.step_settings, device=torch.device("cpu"))
    audio = batch["audio_embeds"]
    assert audio[0].abs().sum() > 0
    assert torch.equal(seen[0][0], torch.zeros_like(audio[0])) and torch.equal(seen[0][1], audio[1])


def test_sigkill_mid_run_then_resume_reaches_the_unbroken_curve(tiny_setup, tmp_path):  # noqa: F811
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    schedule = ("run.max_train_steps=4", "ckpt.save_ckpt_steps=2", "run.validation_steps=100")
    assert main(tiny_setup.args(STAGE1, unbroken, *schedule)) == 0

    # Killed in the middle of step 3 (after its backward pass), as kill -9 or a crash would: at a step, not a time.
    command = [sys.executable, "-m", "scripts.train_unet", *tiny_setup.args(STAGE1, broken, *schedule)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    killed = run_group(command, timeout=300, cwd=REPO_ROOT, env={**env, KILL_AT_STEP_ENV: "3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    survivors = sorted(p.name for p in (broken / "checkpoints").iterdir())
    assert survivors == ["checkpoint-2.pt", "state-2.pt"]  # step 2's save is whole; nothing of step 3 was written
    for name in survivors:
        torch.load(broken / "checkpoints" / name, weights_only=False)

    done = run_group(command, timeout=300, cwd=REPO_ROOT, env=env)  # the same command: resumes from 'latest'
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resumed from" in done.stderr and "at step 2" in done.stderr
    reference, continued = history(unbroken, 4), history(broken, 4)
    assert [s for s, _ in continued["train"]] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(reference["train"], continued["train"]):
        assert a == pytest.approx(b, rel=1e-5)
    state = torch.load(broken / "checkpoints" / "state-4.pt", weights_only=False)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-4 * 4 / 50)  # warm-up continued
    assert all(int(s["step"]) == 4 for s in state["optimizer"]["state"].values())
    a, _ = read_checkpoint(unbroken / "checkpoints" / "checkpoint-4.pt")
    b, _ = read_checkpoint(broken / "checkpoints" / "checkpoint-4.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_two_processes_end_with_identical_weights_and_only_rank0_writes(tiny_setup, tmp_path):  # noqa: F811
    out, dump = tmp_path / "ddp", tmp_path / "dump"
    args = tiny_setup.args(STAGE1, out, "data.batch_size=1", "--debug_dump_dir", str(dump))
    done = run_torchrun("scripts.train_unet", args, nproc=2, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((dump / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [s["step"] for s in ranks[0]["steps"]] == [s["step"] for s in ranks[1]["steps"]] == [1, 2]
    for s0, s1 in zip(ranks[0]["steps"], ranks[1]["steps"]):
        assert s0["weights_digest"] == s1["weights_digest"]
        assert not set(s0["video_indices"]) & set(s1["video_indices"])  # each rank its share
    assert ranks[1]["files_written"] == []
    written = {Path(p).name for p in ranks[0]["files_written"]}
    assert {"checkpoint-2.pt", "state-2.pt", "best_checkpoint.pt", "loss_chart.png"} <= written
    assert len(torch.load(out / "checkpoints" / "state-2.pt", weights_only=False)["rng_states"]) == 2


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_missing_model_files_stop_the_run_with_the_fetch_command(tiny_setup, tmp_path, capsys):  # noqa: F811
    args = tiny_setup.args(STAGE2, tmp_path / "run", "run.allow_random_init_backbones=false",
                           f"ckpt.lpips_vgg_path={tmp_path / 'vgg16-397923af.pth'}")
    assert main(args) == 1
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "vgg16-397923af.pth" in errors[0] and "setup_env.sh --with-training" in errors[0]


def test_eight_bit_adam_off_cuda_stops_with_one_line(tiny_setup, tmp_path, capsys):  # noqa: F811
    assert main(tiny_setup.args(STAGE1, tmp_path / "run", "optimizer.use_8bit_adam=true")) == 1
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "optimizer.use_8bit_adam needs a CUDA device" in errors[0], errors
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_override_fails_with_one_line(tiny_setup, tmp_path, capsys):  # noqa: F811
    assert main(tiny_setup.args(STAGE1, tmp_path, "run.no_such_key=1")) == 1
    assert _error_lines(capsys) == ["error: unknown key 'run.no_such_key' on the command line; "
                                    "--allow_unknown_keys keeps keys this script does not know"]


def _fake_sync_confidence_modules(monkeypatch, scored: list) -> None:
    """Stand-ins for the evaluation's scorer modules: every video scores 7.5 and is remembered."""
    import types

    metrics = types.ModuleType("latentsync.metrics.sync_confidence")
    metrics.SyncScorer = lambda model, device: ("scorer", model)
    metrics.score_video = lambda video, scorer, detector: scored.append(video) or types.SimpleNamespace(confidence=7.5)
    s3fd = types.ModuleType("latentsync.models.s3fd")
    s3fd.S3FD = types.SimpleNamespace(from_file=lambda path, device: ("s3fd", path))
    s3fd.S3FDDetector = lambda model, device: ("detector", model)
    classic = types.ModuleType("latentsync.models.syncnet_classic")
    classic.ClassicSyncNet = types.SimpleNamespace(from_file=lambda path, device: ("syncnet", path))
    for module in (metrics, s3fd, classic):
        monkeypatch.setitem(sys.modules, module.__name__, module)


def test_validation_renders_the_pair_through_the_inference_pipeline_and_scores_it(tiny_setup, tmp_path, monkeypatch):  # noqa: F811
    from latentsync.media.reader import VideoReader
    from tests.data.synthetic_clips import make_clip

    scored = []
    _fake_sync_confidence_modules(monkeypatch, scored)
    for name in ("syncnet_v2.model", "sfd_face.pth"):
        (tmp_path / name).write_bytes(b"weights")
    video = make_clip(tmp_path / "val_face.mp4", seconds=0.8, seed=5, size=192)
    out = tmp_path / "run"
    args = tiny_setup.args(STAGE1, out, f"ckpt.init_ckpt_path={tiny_setup.stage1_init}", "run.max_train_steps=1",
                           "run.validation_steps=1", "ckpt.save_ckpt_steps=1", f"data.val_video_path={video}",
                           f"data.val_audio_path={video}", "data.val_face_detector=mediapipe", "run.inference_steps=2",
                           f"ckpt.sync_conf_syncnet_path={tmp_path / 'syncnet_v2.model'}",
                           f"ckpt.sync_conf_s3fd_path={tmp_path / 'sfd_face.pth'}")
    assert main(args) == 0
    rendered = out / "val_videos" / "val_video_1.mp4"
    frames = np.stack(list(VideoReader(str(rendered), fps=25)))
    assert len(frames) in (20, 21) and frames.shape[1:] == (192, 192, 3)  # the audio's 0.8 s, rounded up
    source = np.stack(list(VideoReader(video, fps=25)))[:20]
    assert np.abs(frames[:20].astype(int) - source.astype(int)).max() > 30  # a mouth was generated
    assert scored == [str(rendered)]
    state = torch.load(out / "checkpoints" / "state-1.pt", weights_only=False)
    assert state["history"]["val"][0][1]["sync_confidence"] == 7.5
    assert state["best"]["metric"] == "sync_confidence" and state["best"]["value"] == 7.5


def test_without_the_scorer_files_validation_goes_on_without_sync_confidence(tiny_setup, tmp_path, monkeypatch, caplog):  # noqa: F811
    _fake_sync_confidence_modules(monkeypatch, [])
    config = load_training_config(parse_args(tiny_setup.args(
        STAGE1, tmp_path / "run", "data.val_video_path=some.mp4", f"ckpt.sync_conf_syncnet_path={tmp_path / 'absent'}")))
    with caplog.at_level("INFO"):
        run = build(config)
    assert not run.scores_sync_confidence and run.best.metric == "loss"
    assert "validation without sync confidence" in caplog.text


@pytest.mark.parametrize("config_path, pixel, trainable", [
    ("configs/unet/stage1.yaml", False, None),
    ("configs/unet/stage1_512.yaml", False, None),
    ("configs/unet/stage2.yaml", True, ["motion_modules.", "attentions."]),
    ("configs/unet/stage2_512.yaml", True, ["motion_modules.", "attentions."]),
    ("configs/unet/stage2_efficient.yaml", True, ["motion_modules.", "attn2."]),
    ("configs/unet/finetune_person.yaml", True, ["motion_modules.", "attentions."]),
])
def test_every_shipped_config_reads_and_names_its_files(config_path, pixel, trainable):
    from latentsync.training.unet import StepSettings
    from scripts.train_unet import whisper_path

    config = load_training_config(parse_args(["--config_path", config_path]))
    settings = StepSettings.from_config(config)
    assert settings.pixel_space_supervise == pixel and settings.use_syncnet == pixel
    assert (list(config.run.trainable_modules) if config.run.trainable_modules else None) == trainable
    assert config.ckpt.init_ckpt_path == str(PROJECT_ROOT / "checkpoints" / "latentsync_unet.pt")
    assert config.ckpt.resume_ckpt_path == "latest"
    assert whisper_path(config).endswith("checkpoints/whisper/tiny.pt")
    assert Path(config.data.syncnet_config_path).is_file() and Path(config.data.mask_image_path).is_file()
    assert settings.trepa_weight == (0 if "efficient" in config_path or not pixel else 10)
    with torch.device("meta"):
        model = UNet3DConditionModel.from_config(to_container(config.model))
    assert model.config.use_motion_module == pixel


def test_non_finite_losses_are_skipped_then_stop_the_run(tiny_setup, tmp_path, monkeypatch, caplog, capsys):  # noqa: F811
    monkeypatch.setattr(unet_step, "noise_prediction_loss", lambda predicted, target: predicted.sum() * float("nan"))
    args = tiny_setup.args(STAGE1, tmp_path / "run", "run.max_train_steps=5", "run.max_nonfinite_in_a_row=2")
    assert main(args) == 1
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and r.levelno == 30]
    assert skipped[:2] == ["step 1 skipped: non-finite loss (1 in a row, 1 in all)",
                           "step 2 skipped: non-finite loss (2 in a row, 2 in all)"]
    errors = _error_lines(capsys)
    assert len(errors) == 1 and "2 steps in a row were skipped" in errors[0]


def test_max_train_epochs_becomes_steps():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from scripts.train_unet import train_steps

    config = OmegaConf.create({"run": {"max_train_steps": -1, "max_train_epochs": 3},
                               "data": {"batch_size": 2, "gradient_accumulation_steps": 1}})
    two_ranks = SimpleNamespace(num_processes=2, gradient_accumulation_steps=1)
    assert train_steps(config, 10, two_ranks) == 3 * 3  # 5 videos per rank, 3 batches of 2 (the last padded)
    config.run.max_train_steps = 7
    assert train_steps(config, 10, two_ranks) == 7


def test_the_reference_flag_name_and_init_flag():
    args = parse_args(["--unet_config_path", "configs/unet/stage2.yaml", "--init_ckpt_path", "stage1.pt"])
    assert args.config_path == "configs/unet/stage2.yaml"
    assert parse_args([]).config_path == str(PROJECT_ROOT / "configs" / "unet" / "stage1.yaml")
    config = load_training_config(args)
    assert config.ckpt.init_ckpt_path == os.path.abspath("stage1.pt") and config.run.audio_dropout_prob == 0.0
