"""A local RTSP server for the tests: GStreamer's, from Debian (run with /usr/bin/python3).

    /usr/bin/python3 rtsp_server.py PORT [MOUNT] [FPS]

Serves a live test pattern (H.264, 320x240) at rtsp://127.0.0.1:PORT/MOUNT and prints READY once
listening. Killing this process is the tests' dropped camera.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

port, mount = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "test"
fps = sys.argv[3] if len(sys.argv) > 3 else "25"
Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    f"( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate={fps}/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )"
)
factory.set_shared(True)  # one pipeline for every client: a reconnect gets the same live stream
server.get_mount_points().add_factory(f"/{mount}", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("READY", flush=True)
GLib.MainLoop().run()
