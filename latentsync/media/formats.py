"""The file types the entry points take, by extension: one list for every folder a command scans and the web
page's uploads.

Anything ffmpeg reads works when named directly; these lists only decide which files of a folder count
(``scripts/inference.py --batch FOLDER`` pairs them, the preprocessing pipeline and the evaluation scripts
take them) and which uploads the web page accepts.
"""

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # a still face: a one-frame video
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")  # a video's sound works too
