"""The training entry points as a careless or unlucky user meets them (issue 19): typos, wrong kinds, flags in
any order, output folders that hold a run or are files, missing model files, reruns, and the launchers from
another folder. Whatever happens: one ``error:`` line last and exit status 1, or a run that does what was
asked; the inputs and an earlier run's checkpoints byte-identical (unless resumed on purpose, and then its
files are still untouched); nothing of ours left after an error.

The table runs ``main()`` in-process with file-descriptor capture; the launcher tests run ``train_*.sh``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import OmegaConf

from latentsync.paths import PROJECT_ROOT
from latentsync.training.loop import KILL_AT_STEP_ENV
from scripts import train_syncnet, train_unet
from tests.conftest import REPO_ROOT, reset_accelerate_state
from tests.processes import run_group
from tests.scripts.unet_training_fixtures import STAGE1, STAGE2, SYNCNET_CONFIG, tiny_setup  # noqa: F401  (fixture)

MAIN = {"unet": train_unet.main, "syncnet": train_syncnet.main}


def _digest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file below ``folder`` (except under the ``skip`` subfolders)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.relative_to(folder).parts[0] in skip}


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    reset_accelerate_state()


# --------------------------------------------------------------------------- runs the cases start from


def syncnet_args(setup, output_dir: Path, *extra: str) -> list[str]:
    """A 2-step tiny SyncNet run on the tiny setup's clips."""
    return ["--config_path", SYNCNET_CONFIG, "--output_dir", str(output_dir),
            f"data.train_fileslist={setup.train_list}", f"data.val_fileslist={setup.val_list}",
            f"data.audio_mel_cache_dir={setup.cache / 'mel'}", "data.batch_size=4", "data.num_val_samples=4",
            "run.max_train_steps=2", "run.validation_steps=2", "ckpt.save_ckpt_steps=1", "ckpt.keep_last_n=0",
            "run.max_train_minutes=0",
            *extra]


def unet_args(setup, output_dir: Path, *extra: str) -> list[str]:
    """A 2-step tiny stage-1 run, saving every step."""
    return setup.args(STAGE1, output_dir, "ckpt.save_ckpt_steps=1", *extra)


@pytest.fixture(scope="module")
def prior_runs(tiny_setup, tmp_path_factory):  # noqa: F811
    """A finished 2-step run of each script (checkpoints 1 and 2, best), copied into the cases that need one."""
    root = tmp_path_factory.mktemp("prior")
    assert train_unet.main(unet_args(tiny_setup, root / "unet")) == 0
    reset_accelerate_state()
    assert train_syncnet.main(syncnet_args(tiny_setup, root / "syncnet")) == 0
    reset_accelerate_state()
    return root


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Env:
    setup: object  # the TinySetup
    out: Path  # the case's output folder (holds a copy of the prior run when the case has one)
    work: Path  # the case's own files (configs it writes)
    others: Path  # finished runs elsewhere (prior_runs), never to be changed


@dataclass(frozen=True)
class Case:
    name: str
    script: str  # "unet" or "syncnet"
    args: Callable[[Env], list[str]]
    needle: str | None  # in the error line; None: the run must succeed
    prior: bool = False  # the output folder holds an earlier, finished run
    final_step: int | None = None  # success: the step of the newest checkpoint afterwards


def _config(env: Env, base: str, text: str = "", **changes) -> str:
    """``base`` as a file of the case's own, with ``changes`` (dotted keys written with ``__``) applied and ``text`` appended."""
    config = OmegaConf.load(PROJECT_ROOT / base)
    if "mask_image_path" in config.data:  # outside the project, relative paths are relative to the file
        config.data.mask_image_path = str(PROJECT_ROOT / config.data.mask_image_path)
    for key, value in changes.items():
        OmegaConf.update(config, key.replace("__", "."), value, force_add=True, merge=False)
    path = env.work / "custom.yaml"
    path.write_text(OmegaConf.to_yaml(config) + text)
    return str(path)


def _unet(env: Env, *extra: str, config: str | None = None, drop: str = "") -> list[str]:
    """The 2-step stage-1 run with ``extra`` overrides, another ``config``, or without the override starting with ``drop``."""
    args = [a for a in unet_args(env.setup, env.out, *extra) if not drop or not a.startswith(drop)]
    return args if config is None else [*args, "--config_path", config]


def _syncnet(env: Env, *extra: str, config: str | None = None) -> list[str]:
    args = syncnet_args(env.setup, env.out, *extra)
    return args if config is None else [*args, "--config_path", config]


def _file(env: Env, name: str) -> Path:
    path = env.work / name
    path.write_text("not a folder\n")
    return path


def _stage2(env: Env, *extra: str) -> list[str]:
    return env.setup.args(STAGE2, env.out, "run.max_train_steps=1", "run.validation_steps=1", "ckpt.save_ckpt_steps=1",
                          *extra)


def _cases() -> list[Case]:
    prior_ckpt = lambda env, step: str(env.out / "checkpoints" / f"checkpoint-{step}.pt")  # noqa: E731
    return [
        # 2. a misspelled key is an error naming the closest known one; --allow_unknown_keys is the escape hatch
        Case("typo in the YAML", "unet", lambda env: _unet(env, config=_config(env, STAGE1, run__audio_dropout_prb=0.5)),
             "unknown key 'run.audio_dropout_prb' in"),
        Case("typo in an override", "unet", lambda env: _unet(env, "run.audio_dropout_prb=0.5"),
             "did you mean 'run.audio_dropout_prob'?"),
        Case("typo in a model key", "unet", lambda env: _unet(env, config=_config(env, STAGE1, model__use_motion_modul=True)),
             "did you mean 'model.use_motion_module'?"),
        Case("typo in a SyncNet encoder key", "syncnet",
             lambda env: _syncnet(env, config=_config(env, SYNCNET_CONFIG, model__audio_encoder__dropuot=0.1)),
             "did you mean 'model.audio_encoder.dropout'?"),
        Case("misspelled section", "unet", lambda env: _unet(env, "optimiser.lr=1e-4"), "did you mean 'optimizer'?"),
        Case("typo kept with --allow_unknown_keys", "unet", lambda env: _unet(env, "run.audio_dropout_prb=0.5",
                                                                               "--allow_unknown_keys"), None, final_step=2),
        # 4. wrong kinds: one line naming the key, what it must be and the value
        Case("batch_size: four", "unet",
             lambda env: _unet(env, config=_config(env, STAGE1, data__batch_size="four"), drop="data.batch_size="),
             "data.batch_size must be an integer >= 1, got 'four' (in"),
        Case("lr: fast", "syncnet", lambda env: _syncnet(env, config=_config(env, SYNCNET_CONFIG, optimizer__lr="fast")),
             "optimizer.lr must be a number >= 0, got 'fast'"),
        Case("run.max_train_steps=abc", "unet", lambda env: _unet(env, "run.max_train_steps=abc"),
             "run.max_train_steps must be an integer >= -1, got 'abc' (on the command line)"),
        Case("audio_dropout_prob 1.5", "unet", lambda env: _unet(env, "run.audio_dropout_prob=1.5"), "from 0 to 1, got 1.5"),
        Case("unknown LR schedule", "syncnet", lambda env: _syncnet(env, "optimizer.lr_scheduler=cosin"),
             "optimizer.lr_scheduler must be one of"),
        Case("mixed_precision fp8", "unet", lambda env: _unet(env, "run.mixed_precision=fp8"),
             "run.mixed_precision must be one of fp16, bf16"),
        Case("an unknown top-level key", "unet", lambda env: _unet(env, config=_config(env, STAGE1, text="extra: 1\n")),
             "unknown key 'extra' in"),
        Case("a section given a value", "syncnet", lambda env: _syncnet(env, config=_config(env, SYNCNET_CONFIG, run=5)),
             "'run' must be a section of keys such as"),
        Case("unknown device", "syncnet", lambda env: _syncnet(env, "--device", "tpu"), "run.device must be one of"),
        # 5. overrides anywhere on the line
        Case("key=value after flags, flags after key=value", "syncnet", _interleaved, None, final_step=1),
        Case("override without a value", "unet", lambda env: _unet(env, "run.max_train_steps"), "expected a --flag or key=value"),
        Case("unknown flag", "unet", lambda env: _unet(env, "--frobnicate"), "unrecognized arguments: --frobnicate"),
        # config files
        Case("config file missing", "unet", lambda env: _unet(env, config=str(env.work / "none.yaml")), "config file not found"),
        Case("config of YAML syntax errors", "syncnet",
             lambda env: _syncnet(env, config=str(_write(env, "bad.yaml", "run: [1, 2\n"))), "cannot parse config"),
        Case("config that is a list", "syncnet", lambda env: _syncnet(env, config=str(_write(env, "list.yaml", "- 1\n"))),
             "must be a mapping at the top level"),
        Case("required key missing", "unet",
             lambda env: _unet(env, config=str(_write(env, "thin.yaml", "run:\n  seed: 1\n"))), "lacks required keys"),
        # 8. output folders
        Case("--output_dir is a file", "unet", lambda env: [*_unet(env), "--output_dir", str(_file(env, "plain"))],
             "is a file"),
        Case("--output_dir holding a config.yaml of the user's", "unet",
             lambda env: _unet(env, f"--output_dir={_write(env, 'config.yaml', 'mine: 1').parent}"),
             "config.yaml exists and is not a training run's"),
        Case("--output_dir under a file", "syncnet",
             lambda env: [*_syncnet(env), "--output_dir", str(_file(env, "plain") / "run")], "which is a file"),
        # 1. never overwrite a run
        Case("new run into a folder holding a run", "unet", lambda env: _unet(env, "--resume_ckpt_path", ""),
             "already holds a training run (checkpoints up to step 2)", prior=True),
        Case("SyncNet new run into a folder holding a run", "syncnet", lambda env: _syncnet(env, "ckpt.resume_ckpt_path="),
             "already holds a training run", prior=True),
        Case("rerun of a finished command", "unet", lambda env: _unet(env), None, prior=True, final_step=2),
        Case("rerun with more steps resumes", "unet", lambda env: _unet(env, "run.max_train_steps=3"), None, prior=True,
             final_step=3),
        Case("SyncNet rerun resumes by default", "syncnet", lambda env: _syncnet(env, "run.max_train_steps=3"), None,
             prior=True, final_step=3),
        Case("rerun with another learning rate", "unet", lambda env: _unet(env, "optimizer.lr=1e-3"),
             "was trained with other settings (optimizer.lr 0.0002 -> 0.001)", prior=True),
        Case("SyncNet rerun with another batch size", "syncnet", lambda env: _syncnet(env, "data.batch_size=2"),
             "was trained with other settings (data.batch_size 4 -> 2)", prior=True),
        Case("another learning rate with --allow_config_change", "unet",
             lambda env: _unet(env, "optimizer.lr=1e-3", "run.max_train_steps=3", "--allow_config_change"), None,
             prior=True, final_step=3),
        Case("resume an older checkpoint while newer exist", "unet",
             lambda env: _unet(env, "--resume_ckpt_path", prior_ckpt(env, 1)), "would overwrite files of", prior=True),
        Case("resume another run's checkpoint over a run", "unet",
             lambda env: _unet(env, "--resume_ckpt_path", str(env.others / "unet" / "checkpoints" / "checkpoint-2.pt")),
             "would overwrite files of", prior=True),
        Case("continue another run in a new folder", "unet",
             lambda env: _unet(env, "--resume_ckpt_path", str(env.others / "unet" / "checkpoints" / "checkpoint-2.pt"),
                               "run.max_train_steps=3"), None, final_step=3),
        Case("resume checkpoint missing", "syncnet", lambda env: _syncnet(env, "--resume_ckpt_path", str(env.work / "x.pt")),
             "resume checkpoint not found"),
        Case("resumed run that fails names its checkpoint", "unet",
             lambda env: _unet(env, "run.max_train_steps=3", "optimizer.use_8bit_adam=true", "--allow_config_change"),
             "needs a CUDA device", prior=True),
        # 3. a backbone path that is set but missing is an error even with random backbones allowed
        Case("stage 2 SyncNet path set but missing", "unet",
             lambda env: _stage2(env, f"ckpt.syncnet_ckpt_path={env.work / 'syncnet.pt'}"), "SyncNet weights not found"),
        Case("stage 2 LPIPS path set but missing", "unet",
             lambda env: _stage2(env, f"ckpt.lpips_vgg_path={env.work / 'vgg16-397923af.pth'}"),
             "LPIPS VGG16 weights not found"),
        Case("stage 2 LPIPS missing, random not allowed", "unet",
             lambda env: _stage2(env, "run.allow_random_init_backbones=false"), "setup_env.sh --with-training"),
        # already right before: must stay so
        Case("8-bit Adam off CUDA", "unet", lambda env: _unet(env, "optimizer.use_8bit_adam=true"), "needs a CUDA device"),
        Case("train file list missing", "syncnet",
             lambda env: _syncnet(env, f"data.train_fileslist={env.work / 'none.txt'}"), "file list not found"),
        Case("empty file list", "unet", lambda env: _unet(env, f"data.train_fileslist={_write(env, 'empty.txt', '')}"),
             "no videos listed"),
        Case("no step budget", "unet", lambda env: _unet(env, "run.max_train_steps=-1"),
             "set run.max_train_steps or run.max_train_epochs"),
        Case("Whisper file missing", "unet", lambda env: _unet(env, f"data.whisper_path={env.work / 'tiny.pt'}"),
             "not found"),
    ]


def _interleaved(env: Env) -> list[str]:
    """The 1-step SyncNet run with flags and overrides mixed: --device, overrides, --config_path, overrides, --output_dir."""
    a = syncnet_args(env.setup, env.out, "run.max_train_steps=1")  # --config_path C --output_dir O key=value...
    return ["--device", "cpu", *a[4:7], a[0], a[1], *a[7:], a[2], a[3], "--verbose"]


def _write(env: Env, name: str, text: str) -> Path:
    path = env.work / name
    path.write_text(text)
    return path


def _case_names() -> list[str]:
    return [case.name for case in _cases()]


@pytest.mark.parametrize("name", _case_names())
def test_training_entry_point(name, tiny_setup, prior_runs, tmp_path, capfd):  # noqa: F811
    case = next(c for c in _cases() if c.name == name)
    work, out = tmp_path / "work", tmp_path / "run"
    work.mkdir()
    if case.prior:
        shutil.copytree(prior_runs / case.script, out)
    env = Env(tiny_setup, out, work, prior_runs)
    inputs = Path(tiny_setup.train_list).parent
    inputs_before, others_before = _digest(inputs, skip=("cache",)), _digest(prior_runs)
    args = case.args(env)
    out_before, prior_before, work_before = _listing(out), _digest(out) if out.exists() else {}, _listing(work)
    capfd.readouterr()
    code = MAIN[case.script](args)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if case.needle is None:
        assert code == 0, err
        steps = sorted(int(p.stem.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*.pt"))
        assert steps[-1] == case.final_step
        saved = torch.load(out / "checkpoints" / f"checkpoint-{case.final_step}.pt", weights_only=True)
        assert set(saved) == {"state_dict", "global_step"} and saved["global_step"] == case.final_step
    else:
        assert code == 1, err
        assert lines and lines[-1].startswith("error:"), err
        assert case.needle in lines[-1], lines[-1]
        assert sum(line.startswith("error:") for line in lines) == 1, err
        assert _listing(out) == out_before, "the failed run left files in the output folder"
        assert _listing(work) == work_before, "the failed run wrote beside the case's files"
    if case.prior:  # an earlier run's files are never rewritten (a resumed run adds new steps beside them)
        after = _digest(out)
        kept = {k: v for k, v in prior_before.items() if k.startswith("checkpoints/")}
        assert {k: after.get(k) for k in kept} == kept
        if case.needle is not None:
            assert after == prior_before
    if case.name == "resumed run that fails names its checkpoint":
        assert f"(this run resumed from {out / 'checkpoints' / 'checkpoint-2.pt'})" in lines[-1]
    assert _digest(inputs, skip=("cache",)) == inputs_before, "an input changed"
    assert _digest(prior_runs) == others_before, "another run's files changed"
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")], "a temporary file was left"


def test_table_covers_every_case_of_the_issue():
    names = _case_names()
    assert len(names) >= 40 and len(set(names)) == len(names)


# --------------------------------------------------------------------------- 6., 7.: the launchers


def _bare_env(tmp_path: Path, **extra: str) -> dict:
    """No activated environment (no .venv on PATH, no PYTHONPATH), a private temp folder, one thread per process."""
    path = ":".join(p for p in os.environ.get("PATH", "").split(":") if ".venv" not in p)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHON", "VIRTUAL_ENV", KILL_AT_STEP_ENV)}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**env, "PATH": path, "TMPDIR": str(tmp_path / "tmp"), "OMP_NUM_THREADS": "1", **extra}


def _launch(script: str, cwd: Path, env: dict, *args: str) -> tuple[int, list[str], str]:
    done = run_group(["bash", str(REPO_ROOT / script), *args], timeout=600, cwd=cwd, env=env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, lines, done.stderr


def _assert_one_error_last(code: int, lines: list[str], err: str, needle: str) -> None:
    assert code == 1, err[-3000:]
    assert lines[-1].startswith("error:") and needle in lines[-1], err[-3000:]
    assert sum(line.startswith("error:") for line in lines) == 1, err[-3000:]
    assert "Traceback" not in err and "ChildFailedError" not in err


def test_launchers_from_another_folder_end_with_the_error_line_also_with_two_processes(tiny_setup, tmp_path):  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "scripts").mkdir()  # a folder of the user's that must not shadow the project's package
    config = OmegaConf.load(PROJECT_ROOT / SYNCNET_CONFIG)
    config.run.max_train_stepz = 2
    (elsewhere / "my.yaml").write_text(OmegaConf.to_yaml(config))
    code, lines, err = _launch("train_syncnet.sh", elsewhere, _bare_env(tmp_path, NPROC="2", CONFIG_PATH="my.yaml"),
                               *syncnet_args(tiny_setup, Path("out"))[2:])
    _assert_one_error_last(code, lines, err, "unknown key 'run.max_train_stepz' in my.yaml (did you mean 'run.max_train_steps'?)")
    # An error after both processes started (the process group is up) is one line too.
    code, lines, err = _launch("train_unet.sh", elsewhere, _bare_env(tmp_path, NPROC="2"),
                               *unet_args(tiny_setup, Path("out"), "optimizer.use_8bit_adam=true"),
                               "--config_path", str(PROJECT_ROOT / STAGE1))
    _assert_one_error_last(code, lines, err, "optimizer.use_8bit_adam needs a CUDA device")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["my.yaml", "scripts"]  # no output folder of a failed run
    assert list((tmp_path / "tmp").iterdir()) == []  # the launcher's error folder is gone


def test_launcher_runs_from_another_folder_and_reports_a_killed_process(tiny_setup, tmp_path):  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(PROJECT_ROOT / STAGE1, elsewhere / "stage1.yaml")
    env = _bare_env(tmp_path, CONFIG_PATH="stage1.yaml")  # relative to the user's folder
    args = [*unet_args(tiny_setup, Path("out"), "run.max_train_steps=1")[2:], "data.mask_image_path=" +
            str(PROJECT_ROOT / "latentsync" / "face" / "mask.png")]  # [2:]: no --config_path
    code, lines, err = _launch("train_unet.sh", elsewhere, {**env, KILL_AT_STEP_ENV: "1"}, *args)
    _assert_one_error_last(code, lines, err, "training process 0 was killed by SIGKILL")
    assert not (elsewhere / "out" / "checkpoints").exists() or not list((elsewhere / "out" / "checkpoints").iterdir())
    code, lines, err = _launch("train_unet.sh", elsewhere, env, *args)
    assert code == 0, err[-3000:]
    saved = torch.load(elsewhere / "out" / "checkpoints" / "checkpoint-1.pt", weights_only=True)
    assert set(saved) == {"state_dict", "global_step"} and saved["global_step"] == 1
    assert list((tmp_path / "tmp").iterdir()) == []
