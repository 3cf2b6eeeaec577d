import os

import pytest

from latentsync.utils.files import atomic_output


def test_success_replaces_target_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out dir" / "video 'a';b.mp4"
    with atomic_output(target) as tmp:
        assert tmp.endswith(".mp4") and os.path.dirname(tmp) == str(target.parent)
        with open(tmp, "w") as f:
            f.write("new")
    assert target.read_text() == "new"
    # Like a plain open(): readable by others under the usual umask, not mkstemp's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~umask
    assert os.listdir(target.parent) == [target.name]


def test_failure_keeps_previous_file_and_removes_temp(tmp_path):
    target = tmp_path / "ckpt.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half-written")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt.pt"]
