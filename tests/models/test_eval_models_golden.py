"""Classic SyncNet, S3FD and hyperIQA reproduce the upstream outputs (eval_models.pt) and load strictly.

Weights: the golden procedure filled from each official file's ordered key list; tolerance:
relative L2 <= 1e-4 (float32, CPU).
"""

import pytest
import torch

from latentsync.errors import CheckpointError
from latentsync.models.hyperiqa import HyperNet, target_network
from latentsync.models.s3fd import S3FD
from latentsync.models.syncnet_classic import ClassicSyncNet
from tests.golden_weights import eval_golden
from tools.eval_models import golden_state_dict, write_official_file

REL_TOL = 1e-4
MODELS = {"syncnet_v2": ClassicSyncNet, "s3fd": S3FD, "hyperiqa": HyperNet}
FILES = {"syncnet_v2": "syncnet_v2.model", "s3fd": "sfd_face.pth", "hyperiqa": "koniq_pretrained.pkl"}


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


@pytest.fixture(scope="module")
def golden():
    return eval_golden()


@pytest.fixture(scope="module")
def official_files(tmp_path_factory, golden):
    folder = tmp_path_factory.mktemp("auxiliary")
    for name, filename in FILES.items():
        write_official_file(folder / filename, name)
    return folder


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_matches_official_manifest(name, golden):
    with torch.device("meta"):
        model = MODELS[name]()
    actual = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    assert actual == [[key, list(shape)] for key, shape, _ in golden[name]["manifest"]]


def test_classic_syncnet_matches_golden(golden, official_files):
    data = golden["syncnet_v2"]
    model = ClassicSyncNet.from_file(official_files / FILES["syncnet_v2"])
    lips = data["lip_in"].float()
    with torch.no_grad():
        assert _rel(model.forward_lip(lips), data["lip_out"]) <= REL_TOL
        assert _rel(model.forward_lipfeat(lips), data["lipfeat_out"]) <= REL_TOL
        assert _rel(model.forward_aud(data["aud_in"]), data["aud_out"]) <= REL_TOL


def test_s3fd_detection_table_matches_golden(golden, official_files):
    data = golden["s3fd"]
    model = S3FD.from_file(official_files / FILES["s3fd"])
    with torch.no_grad():
        table = model(data["x_in"])
    assert table.shape == data["out"].shape == (1, 2, 750, 5)
    assert _rel(table, data["out"]) <= REL_TOL
    assert (table[0, 1, :, 0] > 0).sum() == (data["out"][0, 1, :, 0] > 0).sum()


def test_hyperiqa_matches_golden(golden, official_files):
    data = golden["hyperiqa"]
    model = HyperNet.from_file(official_files / FILES["hyperiqa"])
    with torch.no_grad():
        params = model(data["img_in"])
        scores = target_network(params)
    assert _rel(params["target_in_vec"], data["target_in_vec"]) <= REL_TOL
    assert scores.shape == (2,)
    assert _rel(scores, data["score"].flatten()) <= REL_TOL


@pytest.mark.parametrize("name", list(MODELS))
def test_wrong_key_is_an_error_naming_it(name, golden, tmp_path):
    state = golden_state_dict(golden[name]["manifest"])
    first = next(iter(state))
    state["not_a_layer.weight"] = state.pop(first)
    path = tmp_path / FILES[name]
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        MODELS[name].from_file(path)
    assert first in str(err.value) and "not_a_layer.weight" in str(err.value) and str(path) in str(err.value)

