"""eval_sync_conf and syncnet_detect / draw_syncnet_lines end to end on fixture videos."""

import csv
import json

from eval import draw_syncnet_lines, eval_sync_conf, syncnet_detect
from tests.eval.conftest import SYNC_FLAGS, sync_model_flags

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_folder_table_with_a_failed_video_row(auxiliary, clips, tmp_path, capsys):
    out = tmp_path / "sync"
    code = eval_sync_conf.main(["--videos_dir", str(clips), "--output", str(out), *sync_model_flags(auxiliary), *SYNC_FLAGS])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "sync.json").read_text())
    rows = {row["video"].rsplit("/", 1)[-1]: row for row in report["rows"]}
    assert set(rows) == {"clip1.mp4", "clip2.mp4", "corrupt.mp4"}
    assert "cannot open video" in rows["corrupt.mp4"]["error"]
    for name in ("clip1.mp4", "clip2.mp4"):
        row = rows[name]
        assert row["error"] == "" and row["tracks"] == 2
        assert -15 <= row["offset"] <= 15 and row["lse_c"] >= 0 and row["lse_d"] > 0
    assert report["summary"]["videos"] == 3 and report["summary"]["failed"] == 1
    assert report["summary"]["lse_c"] == (rows["clip1.mp4"]["lse_c"] + rows["clip2.mp4"]["lse_c"]) / 2
    assert report["summary"]["sync_protocol"] == "upstream"  # the default: numbers comparable with upstream's
    with open(tmp_path / "sync.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["video"].rsplit("/", 1)[-1] for r in csv_rows] == ["clip1.mp4", "clip2.mp4", "corrupt.mp4"]
    assert {r["sync_protocol"] for r in csv_rows} == {"upstream"}  # the CSV alone says it too
    assert "| lse_c |" in printed and "| sync_protocol | upstream |" in printed
    assert (tmp_path / "sync.md").read_text().strip() == printed.strip()


def test_both_protocols_end_to_end(auxiliary, clips, tmp_path, capsys):
    reports = {}
    for protocol in ("clean", "upstream"):
        out = tmp_path / protocol
        code = eval_sync_conf.main(["--video_path", str(clips / "clip1.mp4"), "--sync_protocol", protocol,
                                    "--output", str(out), *sync_model_flags(auxiliary), *SYNC_FLAGS])
        assert code == 0
        reports[protocol] = json.loads((tmp_path / f"{protocol}.json").read_text())
        with open(tmp_path / f"{protocol}.csv", newline="") as f:
            assert [r["sync_protocol"] for r in csv.DictReader(f)] == [protocol]
    capsys.readouterr()
    for protocol, report in reports.items():
        (row,) = report["rows"]
        assert report["summary"]["sync_protocol"] == protocol
        assert row["error"] == "" and row["tracks"] == 2 and row["lse_d"] > 0
    clean, upstream = reports["clean"]["rows"][0], reports["upstream"]["rows"][0]
    assert clean["lse_c"] != upstream["lse_c"] and clean["lse_d"] != upstream["lse_d"]  # the lossy route shows


def test_missing_model_files_are_one_error_line(clips, tmp_path, capsys):
    code = eval_sync_conf.main(["--video_path", str(clips / "clip1.mp4"), "--syncnet_path", str(tmp_path / "syncnet_v2.model"),
                                "--s3fd_path", str(tmp_path / "sfd_face.pth")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: 2 model files not found")
    assert "hf download ByteDance/LatentSync-1.6 auxiliary/syncnet_v2.model auxiliary/sfd_face.pth --local-dir checkpoints" in err


def test_per_frame_curves_and_drawing(auxiliary, clips, tmp_path, capsys):
    out = tmp_path / "curves"
    code = syncnet_detect.main(["--video_path", str(clips / "clip1.mp4"), "--output_dir", str(out),
                                *sync_model_flags(auxiliary), *SYNC_FLAGS])
    assert code == 0
    with open(out / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 2 tracks of 40 frames: 35 windows each (min(frames, samples // 640) - 5)
    assert [sum(r["track"] == t for r in rows) for t in ("0", "1")] == [35, 35]
    assert {r["sync_protocol"] for r in rows} == {"upstream"}
    assert (out / "clip1.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((out / "sync.json").read_text())["rows"][0]["png"] == str(out / "clip1.png")
    capsys.readouterr()
    png = tmp_path / "overlay.png"
    assert draw_syncnet_lines.main([str(out / "curves.csv"), str(out / "curves.csv"), "--output", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC and "4 curves" not in capsys.readouterr().out  # same labels merge
    assert draw_syncnet_lines.main([str(tmp_path / "absent.csv"), "--output", str(png)]) == 1
