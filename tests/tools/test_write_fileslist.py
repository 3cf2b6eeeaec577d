"""tools.write_fileslist: folders and lists in, one list out; a held-out split by source video; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.write_fileslist import main, split_by_source


def _clips(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"video")
    return [str(folder / name) for name in names]


def _read(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_split_keeps_the_clips_of_one_source_video_together(tmp_path):
    names = [f"{video}_{k:03d}.mp4" for video in ("a", "b", "c", "d", "e") for k in range(3 if video == "a" else 1)]
    paths = _clips(tmp_path / "clips", names)
    for seed in range(6):
        train, val = split_by_source(paths, val_count=2, seed=seed)
        assert sorted(train + val) == sorted(paths) and not set(train) & set(val)
        assert len(val) >= 2
        held = {Path(p).name.rsplit("_", 1)[0] for p in val}
        assert all(Path(p).name.rsplit("_", 1)[0] not in held for p in train)  # no sibling of a held-out clip trains
        assert train == [p for p in paths if p in train]  # the input order is kept
    assert split_by_source(paths, val_count=2, seed=3) == split_by_source(paths, val_count=2, seed=3)
    assert len({tuple(split_by_source(paths, val_fraction=0.3, seed=s)[1]) for s in range(8)}) > 1  # the seed picks


def test_cli_writes_train_and_val_lists_from_folders_and_lists(tmp_path, capsys):
    first = _clips(tmp_path / "set1", ["x_000.mp4", "y_000.mp4"])
    second = _clips(tmp_path / "set2" / "deep", ["z_000.mp4", "w_000.mp4"])
    listing = tmp_path / "more.txt"
    listing.write_text("set2/deep/z_000.mp4\n\n" + second[1] + "\n")  # relative to the list, and absolute
    train, val = tmp_path / "out" / "train.txt", tmp_path / "out" / "val.txt"
    code = main([str(tmp_path / "set1"), str(listing), "--output", str(train), "--val_output", str(val),
                 "--val_count", "1", "--seed", "2"])
    assert code == 0, capsys.readouterr().err
    assert len(_read(val)) == 1 and len(_read(train)) == 3
    assert sorted(_read(train) + _read(val)) == sorted(first + second)


def _one_source(tmp: Path) -> list[str]:
    _clips(tmp / "one", ["solo_000.mp4", "solo_001.mp4"])
    return [str(tmp / "one"), "--val_output", str(tmp / "v.txt"), "--val_count", "1"]


@pytest.mark.parametrize("make, needle", [
    (lambda tmp: [str(tmp / "missing")], "not found:"),
    (lambda tmp: [str(_empty(tmp))], "no .mp4 videos in"),
    (lambda tmp: [str(_listing(tmp, "gone.mp4\n"))], "lists 1 videos that do not exist"),
    (lambda tmp: [str(_empty(tmp)), "--val_output", str(tmp / "v.txt")], "needs --val_count"),
    (_one_source, "leaves no training clips"),
])
def test_bad_sources_are_one_error_line(tmp_path, capsys, make, needle):
    args = make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main([*args, "--output", str(tmp_path / "train.txt")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error:") and needle in err.strip().splitlines()[-1], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no list written


def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no videos here")
    return tmp / "empty"


def _listing(tmp: Path, text: str) -> Path:
    path = tmp / "list.txt"
    path.write_text(text)
    return path
