"""Which colours a video's YUV samples stand for: decoding them as ffmpeg does, encoding RGB with the
matrix the output is tagged with.

Decoding follows each frame's colour matrix and range tags, as ``ffmpeg -i x -pix_fmt rgb24`` does:
BT.709-tagged frames (most HD video, upstream's demo videos) through the BT.709 matrix, full-range
frames as full range, and untagged frames as ffmpeg takes them (BT.601, limited range unless the
pixel format is a full-range "yuvj" one). Primaries and transfer are not converted (ffmpeg's rgb24 and
browsers leave them too).

Encoding tags every stream (matrix, primaries, transfer, limited range) and converts with the tagged
matrix: BT.709 for HD, BT.601 (SMPTE 170M) for SD, the matrices players also assume for untagged
video of those sizes, so players that honour tags and players that guess read the same colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np

__all__ = ["BT601", "BT709", "ColourStandard", "output_standard", "rgb_conversion", "rgb_to_i420"]

# FFmpeg's codes (AVColorSpace; swscale's SWS_CS_* share them) for the matrices it can convert with.
_SPC_BT709, _SPC_FCC, _SPC_BT470BG, _SPC_SMPTE170M, _SPC_SMPTE240M = 1, 4, 5, 6, 7
_SPC_BT2020_NCL, _SPC_BT2020_CL = 9, 10
_SWS_DEFAULT = _SPC_BT470BG  # swscale's own default matrix code (BT.601)
_RANGE_MPEG, _RANGE_JPEG = 1, 2  # AVColorRange: limited (16-235) and full (0-255)

# The matrix a frame is converted with, by its colorspace tag; any other tag (unspecified, RGB, YCgCo,
# ...) gets BT.601, as in ffmpeg. BT.470BG is the same matrix as SMPTE 170M, sent as the latter because
# PyAV skips setting a matrix equal to swscale's default code.
_DECODE_MATRIX = {
    _SPC_BT709: _SPC_BT709,
    _SPC_FCC: _SPC_FCC,
    _SPC_BT470BG: _SPC_SMPTE170M,
    _SPC_SMPTE170M: _SPC_SMPTE170M,
    _SPC_SMPTE240M: _SPC_SMPTE240M,
    _SPC_BT2020_NCL: _SPC_BT2020_NCL,
    _SPC_BT2020_CL: _SPC_BT2020_CL,
}


def rgb_conversion(frame: av.VideoFrame) -> dict:
    """``reformat`` arguments that turn ``frame`` into RGB with its own matrix and range, as ffmpeg does
    (PyAV's defaults use BT.601 whatever the tags say); empty for frames that are not YUV."""
    if not any(component.is_chroma for component in frame.format.components):
        return {}
    full = frame.color_range == _RANGE_JPEG or frame.format.name.startswith("yuvj")
    return {
        "src_colorspace": _DECODE_MATRIX.get(frame.colorspace, _SPC_SMPTE170M),
        # Any code other than the source's makes PyAV install the source matrix (the destination
        # table of a YUV -> RGB conversion is not used).
        "dst_colorspace": _SWS_DEFAULT,
        "src_color_range": _RANGE_JPEG if full else _RANGE_MPEG,
        "dst_color_range": _RANGE_JPEG,
    }


# swscale's default YUV -> RGB (ffmpeg's rgb24, decord's, VideoReader's) rounds down to whole levels,
# so a decoded level v stands for [v, v + 1). Frames are encoded for v + 0.5 (a lift of luma only:
# it moves R, G and B alike), so that read -> write -> read is unbiased rather than half a level
# darker per generation: 220 of the 256 flat greys come back exactly, against 130.
DECODED_LEVEL_CENTRE = 0.5


@dataclass(frozen=True)
class ColourStandard:
    """A Y'CbCr standard: luma weights ``kr``, ``kb`` of R and B, and its FFmpeg/H.264 code, the same
    number for the matrix, the primaries and the transfer tags."""

    name: str
    kr: float
    kb: float
    code: int

    def limited_range_matrix(self) -> np.ndarray:
        """(3, 4) float32 RGB [0, 255] -> limited-range Y'CbCr: rows Y, Cb, Cr, last column the offsets
        (luma lifted by ``DECODED_LEVEL_CENTRE`` of an RGB level)."""
        kg = 1 - self.kr - self.kb
        luma = np.array([self.kr, kg, self.kb])
        cb = (np.array([0.0, 0.0, 1.0]) - luma) / (2 * (1 - self.kb))
        cr = (np.array([1.0, 0.0, 0.0]) - luma) / (2 * (1 - self.kr))
        rows = np.stack([luma * 219 / 255, cb * 224 / 255, cr * 224 / 255])
        offsets = [[16 + DECODED_LEVEL_CENTRE * 219 / 255], [128.0], [128.0]]
        return np.hstack([rows, offsets]).astype(np.float32)


BT709 = ColourStandard("bt709", 0.2126, 0.0722, 1)
BT601 = ColourStandard("smpte170m", 0.299, 0.114, 6)


def output_standard(width: int, height: int) -> ColourStandard:
    """BT.709 for HD frames (1280 wide or 720 high, either orientation), BT.601 below."""
    return BT709 if max(width, height) >= 1280 or min(width, height) >= 720 else BT601


def rgb_to_i420(frame: np.ndarray, standard: ColourStandard) -> np.ndarray:
    """An (H, W, 3) uint8 RGB frame (even H, W) as limited-range YUV 4:2:0 planes stacked as
    (H * 3 / 2, W) uint8 (Y, then U, then V), chroma averaged over 2x2 pixels."""
    height, width = frame.shape[:2]
    matrix = standard.limited_range_matrix()
    luma = cv2.transform(frame, matrix)[..., 0]  # the 3-row transform is the vectorised one
    # Chroma is linear in RGB: converting the 2x2 means equals averaging the converted pixels.
    half = cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    chroma = cv2.transform(half, matrix)
    return np.concatenate([luma.ravel(), chroma[..., 1].ravel(), chroma[..., 2].ravel()]).reshape(-1, width)
