"""Quality step: the evaluation's hyperIQA protocol decides, the threshold drops (random-weight model)."""

from __future__ import annotations

import os

import torch

from latentsync.metrics.image_quality import video_quality
from latentsync.models.hyperiqa import HyperNet
from preprocess import data_processing_pipeline as pipeline
from preprocess import filter_visual_quality
from preprocess.runner import Item
from preprocess.settings import Settings


def test_scores_come_from_hyperiqa_and_the_threshold_drops(processed, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "koniq_pretrained.pkl"
    torch.save(HyperNet().state_dict(), weights)  # random weights, in the official file's format
    folder = os.path.join(processed["output_dir"], pipeline.FINAL_DIR)
    clips = [os.path.join(folder, name) for name in ("cut_000.mp4", "long25s_001.mp4")]
    model = HyperNet.from_file(weights)
    scores = [video_quality(model, clip) for clip in clips]
    assert scores[0] != scores[1]
    threshold = sum(scores) / 2
    settings = Settings(output_dir=str(tmp_path), temp_dir=str(tmp_path), quality_model_path=str(weights),
                        quality_threshold=threshold, device="cpu")
    filter_visual_quality.quality_model.cache_clear()
    lines = [filter_visual_quality.filter_quality(Item(os.path.basename(c), c, {"duration_out": 5.0}), settings)[0]
             for c in clips]
    filter_visual_quality.quality_model.cache_clear()
    assert [line["scores"]["hyperiqa"] for line in lines] == [round(s, 3) for s in scores]
    assert [line["kept"] for line in lines] == [s >= threshold for s in scores]
    dropped = next(line for line in lines if not line["kept"])
    assert dropped["reason"] == f"hyperIQA under {threshold:g}" and dropped["output"] is None
