"""Video files as an alpolicy source (PyAV).

``alpolicy run clip.mp4 ...`` (a plain path with a video extension) or ``alpolicy run video:DIR``
(the videos of a folder) triages frames: ``--every N`` (every N-th frame) or ``--fps F`` (F frames
per second of video time, by presentation timestamps; the default is 1 per second). Each frame is
sent as a JPEG named ``STEM_tSSSSSS.mmm.jpg`` with ``video``, ``timestamp`` and ``frame`` in its
metadata, keyed by the video's sha256 and its timestamp. See :mod:`alpolicy_video.source`.
"""

from .selection import DEFAULT_FPS, VIDEO_EXTENSIONS, Sampling

__all__ = ["DEFAULT_FPS", "VIDEO_EXTENSIONS", "Sampling"]
