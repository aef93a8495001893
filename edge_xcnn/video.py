"""Video encoding shared by the synthetic clip writer and the runner's mp4 sink (PyAV)."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from edge_xcnn.errors import MissingDependency

ENCODERS = ("libx264", "h264", "mpeg4")


def open_video_stream(
    container: Any,
    fps: Fraction | int | float,
    width: int,
    height: int,
    *,
    preset: str | None = None,
    crf: int = 18,
) -> tuple[Any, str]:
    """Add the first video encoder this PyAV build has (H.264 preferred) to an output ``container``.

    Odd frame sizes cannot be 4:2:0; they keep their exact size as H.264 4:4:4 instead of being
    cropped or padded.
    """
    import av

    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    odd = width % 2 or height % 2
    for name in ENCODERS:
        if odd and name == "mpeg4":
            continue
        try:
            av.Codec(name, "w")
        except ValueError:  # UnknownCodecError: this FFmpeg build has no such encoder
            continue
        options = {"crf": str(crf)} if name in ("libx264", "h264") else {}
        if name == "libx264" and preset:
            options["preset"] = preset
        stream = container.add_stream(name, rate=rate, options=options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if odd else "yuv420p"
        stream.codec_context.time_base = 1 / rate
        return stream, name
    raise MissingDependency("av (with an H.264 or MPEG-4 encoder)", "data")
