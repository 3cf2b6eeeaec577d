"""Media I/O: probe, read and write video, decode audio, mux.

The one place that talks to ffmpeg (as an argument list, never a shell string) and to PyAV. Every
failure a user can cause (missing file, undecodable data, missing stream, empty media) becomes a
:class:`~latentsync.errors.MediaError` naming the file.
"""
