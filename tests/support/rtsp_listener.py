"""FFmpeg's own RTSP server (``rtsp_flags=listen``, through PyAV) receiving one pushed stream.

``python rtsp_listener.py PORT MOUNT`` prints ``ready`` once the socket listens, then accepts one
ANNOUNCE/RECORD session, decodes every frame it gets, prints ``frame N WxH`` for each, then ``span S``
(seconds from the first frame's arrival to the last's: a paced push of 40 frames at 25 FPS spans
about 1.56 s, a burst almost nothing) and ``end N`` when the sender sends TEARDOWN. Unlike
GStreamer's server it drains its decoder at the end, so the count is exactly what the sender delivered.
"""

from __future__ import annotations

import sys
import threading
import time

import av


def _wait_listening(port: int) -> None:
    """FFmpeg gives no callback when it listens: poll /proc/net/tcp for the socket (LISTEN = 0A)."""
    needle = f":{port:04X} "
    for _ in range(200):
        with open("/proc/net/tcp") as table:
            if any(needle in line and line.split()[3] == "0A" for line in table):
                print("ready", flush=True)
                return
        time.sleep(0.05)
    print("ready (not seen listening)", flush=True)


def main() -> None:
    port, mount = int(sys.argv[1]), sys.argv[2]
    threading.Thread(target=_wait_listening, args=(port,), daemon=True).start()
    url = f"rtsp://127.0.0.1:{port}{mount}"
    # No stream probing on open: it would buffer the first frames and hand them over at once (the span).
    options = {"rtsp_flags": "listen", "listen_timeout": "60", "analyzeduration": "0", "probesize": "32"}
    with av.open(url, options=options) as container:
        count, arrivals = 0, []
        for frame in container.decode(video=0):
            arrivals.append(time.monotonic())
            print(f"frame {count} {frame.width}x{frame.height}", flush=True)
            count += 1
    print(f"span {arrivals[-1] - arrivals[0] if arrivals else 0.0:.3f}", flush=True)
    print(f"end {count}", flush=True)


if __name__ == "__main__":
    main()
