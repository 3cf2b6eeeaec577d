"""What every preprocessing step may read: the command line's choices, as one picklable value."""

from __future__ import annotations

from dataclasses import dataclass

FPS = 25  # frames per second of every clip from the resampling step on
SAMPLE_RATE = 16000  # Hz, mono


@dataclass(frozen=True)
class Settings:
    output_dir: str
    temp_dir: str  # private working folders (created and removed by the steps)
    resolution: int = 256
    min_clip_seconds: float = 5.0
    max_clip_seconds: float = 10.0
    shot_threshold: float = 27.0  # scenedetect ContentDetector threshold
    face_detector: str = "mediapipe"
    max_face_lost: float = 0.1  # share of a clip's frames where the face may be missed
    max_alignment_residual: float = 0.3  # landmark fit error / brow distance (implausible above)
    check_every: int = 25  # frames between checks of the aligned crop (one face must be found)
    sync_scorer: str = "classic"
    syncnet_config: str = ""
    syncnet_ckpt: str = ""
    classic_syncnet_path: str = ""
    s3fd_path: str = ""
    sync_conf_threshold: float = 3.0
    max_offset: int = 6
    vshift: int = 15
    quality_model_path: str = ""
    quality_threshold: float = 40.0
    device: str = "cpu"
