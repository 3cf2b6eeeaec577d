"""The file types the entry points take, by extension: one list for the CLI's batch folders and the web page's uploads.

Anything ffmpeg reads works when named directly; these lists only decide which files of a folder
pair up (``scripts/inference.py --batch FOLDER``) and which uploads the web page accepts.
"""

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")  # a still face: a one-frame video
AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")  # a video's sound works too
