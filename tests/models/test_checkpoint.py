import logging

import pytest
import torch
from torch import nn

from latentsync.errors import CheckpointError
from latentsync.models.checkpoint import load_checkpoint, load_weights, read_checkpoint, save_checkpoint


class TwoLayers(nn.Module):
    def __init__(self, width: int = 4, extra: bool = False):
        super().__init__()
        self.conv_in = nn.Linear(3, width)
        self.body = nn.Linear(width, width)
        if extra:
            self.motion_modules = nn.Linear(width, width)


def test_round_trip_preserves_weights_and_step(tmp_path):
    source = TwoLayers()
    save_checkpoint(tmp_path / "m.pt", source, global_step=42)
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(payload) == {"state_dict", "global_step"} and payload["global_step"] == 42
    target = TwoLayers()
    assert load_checkpoint(target, tmp_path / "m.pt") == 42
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_bare_state_dict_is_accepted(tmp_path):
    torch.save(TwoLayers().state_dict(), tmp_path / "bare.pt")
    state_dict, step = read_checkpoint(tmp_path / "bare.pt")
    assert step == 0 and "body.weight" in state_dict


def test_renamed_key_is_named_in_the_error():
    state_dict = TwoLayers().state_dict()
    state_dict["body.weights"] = state_dict.pop("body.weight")
    with pytest.raises(CheckpointError) as info:
        load_weights(TwoLayers(), state_dict, "renamed.pt")
    message = str(info.value)
    assert "missing keys: body.weight" in message and "unexpected keys: body.weights" in message
    assert "renamed.pt" in message


def test_shape_mismatch_names_key_and_shapes():
    with pytest.raises(CheckpointError, match=r"body\.weight \(checkpoint \(8, 8\), model \(4, 4\)\)"):
        load_weights(TwoLayers(4), {**TwoLayers(4).state_dict(), **{"body.weight": torch.zeros(8, 8)}})


def test_partial_loads_only_when_named(caplog):
    old = TwoLayers()
    new = TwoLayers(extra=True)
    init = new.motion_modules.weight.clone()
    with pytest.raises(CheckpointError, match="motion_modules.weight"):
        load_weights(new, old.state_dict())
    with caplog.at_level(logging.INFO):
        load_weights(new, old.state_dict(), "stage1.pt", new_modules=("motion_modules.",))
    assert torch.equal(new.body.weight, old.body.weight)
    assert torch.equal(new.motion_modules.weight, init)
    assert "2 tensors are new" in caplog.text


def test_reshaped_tensors_keep_their_initialisation(caplog):
    wide = TwoLayers(4).state_dict()
    wide["conv_in.weight"] = torch.ones(4, 9)  # e.g. a Stable Diffusion conv_in with other input channels
    model = TwoLayers(4)
    init = model.conv_in.weight.clone()
    with caplog.at_level(logging.INFO):
        load_weights(model, wide, "sd.pt", reshaped=("conv_in.",))
    assert torch.equal(model.conv_in.weight, init)
    assert torch.equal(model.body.weight, wide["body.weight"])
    assert "conv_in.weight" in caplog.text


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="setup_env.sh"):
        read_checkpoint(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        read_checkpoint(corrupt)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, TwoLayers(), global_step=1)

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, TwoLayers(), global_step=2)
    monkeypatch.undo()
    assert read_checkpoint(path)[1] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
