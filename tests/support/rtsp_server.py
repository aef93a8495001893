"""A real RTSP server (GStreamer's gst-rtsp-server) serving a video file on 127.0.0.1, for the tests.

Run with the system Python, which has PyGObject: ``/usr/bin/python3 rtsp_server.py PORT VIDEO [MOUNT]``.
It prints ``ready`` once it listens and serves until killed. The file is sent as H.264 RTP in real
time; every client that connects starts at the beginning.

``VIDEO`` = ``record`` makes it a server that receives instead (RTSP ANNOUNCE/RECORD, what
``edge-xcnn run -o rtsp://...`` pushes): it decodes the H.264 it gets and prints ``frame N WxH`` for
every decoded frame, as soon as it is decoded. Its sink neither waits for display times
(``sync=false``: a frame waiting for its time is lost at TEARDOWN) nor for a first frame before the
media may play (``async=false``: the media then goes to PLAYING at RECORD, 0.1 ms later, instead of
after its first frame has been decoded and the preroll handshake has gone through). It tears the
media down on TEARDOWN, so the last few frames still in its jitter buffer are lost: counting every
frame is ``rtsp_listener.py``'s job (FFmpeg's RTSP server).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def _count_frames(factory, media) -> None:
    count = [0]

    def handoff(sink, buffer, pad) -> None:
        caps = pad.get_current_caps().get_structure(0)
        print(f"frame {count[0]} {caps.get_value('width')}x{caps.get_value('height')}", flush=True)
        count[0] += 1

    media.get_element().get_by_name("sink").connect("handoff", handoff)


def main() -> None:
    port, video = sys.argv[1], sys.argv[2]
    mount = sys.argv[3] if len(sys.argv) > 3 else "/stream"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    if video == "record":
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        factory.set_launch(
            "( rtph264depay name=depay0 ! h264parse ! avdec_h264 max-threads=1"
            " ! fakesink name=sink signal-handoffs=true sync=false async=false )"
        )
        factory.connect("media-configure", _count_frames)
    else:
        factory.set_launch(
            f'( filesrc location="{video}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
        )
        factory.set_shared(True)
    server.get_mount_points().add_factory(mount, factory)
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        sys.exit(1)
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
