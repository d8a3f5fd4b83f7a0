"""Which source a URI makes, camera ids, credentials kept out of logs, webcams, folders and globs."""

from __future__ import annotations

import pytest
from stream_media import write_clip

from auflow.engine.config import SourceSection
from auflow.engine.errors import SourceError
from auflow.engine.sources import (FileSource, HttpSource, ImageFolderSource, RtspSource, WebcamSource, cam_id_from,
                                   expand_inputs, make_source, redact)
from auflow.engine.sources import hwaccel
from auflow.engine.sources.webcam import parse_device

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("uri,cls,live", [
    ("rtsp://10.0.0.5:554/stream1", RtspSource, True),
    ("rtsps://cam.example.org/live", RtspSource, True),
    ("http://127.0.0.1:8080/index.m3u8", HttpSource, True),
    ("https://example.org/cam.mjpg", HttpSource, True),
    ("/dev/video0", WebcamSource, True),
    ("webcam:2", WebcamSource, True),
    ("/data/interview.mp4", FileSource, False),
])
def test_kind_from_uri(uri, cls, live):
    src = make_source(uri)
    assert type(src) is cls and src.live is live


def test_image_folder_kind(tmp_path):
    assert isinstance(make_source(str(tmp_path)), ImageFolderSource)


@pytest.mark.parametrize("uri,cam", [
    ("/data/Interview 3.mp4", "Interview_3"),
    ("rtsp://admin:secret@10.0.0.5:554/live", "10.0.0.5_554_live"),
    ("rtsp://10.0.0.6/live", "10.0.0.6_live"),
    ("http://127.0.0.1:8080/hls/index.m3u8", "127.0.0.1_8080_hls_index"),
    ("https://cams.example.org/", "cams.example.org"),
    ("/dev/video2", "video2"),
])
def test_camera_ids(uri, cam):
    assert cam_id_from(uri) == cam
    assert "secret" not in cam


def test_config_cam_wins():
    assert make_source("rtsp://10.0.0.5/live", SourceSection(cam="door")).cam == "door"


def test_password_never_shown():
    uri = "rtsp://admin:s3cr3t@10.0.0.5:554/live"
    assert redact(uri) == "rtsp://admin:***@10.0.0.5:554/live"
    assert "s3cr3t" not in make_source(uri).name
    assert redact("/a/file.mp4") == "/a/file.mp4"


def test_bad_urls_fail_before_any_connection():
    with pytest.raises(SourceError, match="no host"):
        make_source("rtsp:///stream")
    with pytest.raises(SourceError, match="not a valid URL"):
        make_source("rtsp://10.0.0.5:port/x")
    with pytest.raises(SourceError, match=r"unsupported kind of source ftp://.*rtsp://"):
        make_source("ftp://u:pw@host/file.mp4")


@pytest.mark.parametrize("uri,device", [
    ("/dev/video0", "/dev/video0"), ("/dev/video12", "/dev/video12"), ("v4l2:///dev/video1", "/dev/video1"),
    ("webcam:3", "/dev/video3"),
])
def test_webcam_device_paths(uri, device):
    assert parse_device(uri) == device


@pytest.mark.parametrize("uri", ["/dev/videoX", "/dev/video", "webcam:", "/dev/video0/extra"])
def test_webcam_bad_paths(uri):
    with pytest.raises(SourceError, match="not a webcam device; give /dev/videoN"):
        parse_device(uri)


def test_missing_webcam_is_one_clear_error():
    src = make_source("/dev/video97")
    with pytest.raises(SourceError, match=r"/dev/video97: no such webcam device \(devices here: "):
        src.open()


def test_webcam_capture_options():
    src = make_source("/dev/video0", SourceSection(webcam_size="1280x720", webcam_fps=30))
    assert src._format() == "v4l2" and src._options() == {"video_size": "1280x720", "framerate": "30"}
    with pytest.raises(SourceError, match="1280x720"):
        make_source("/dev/video0", SourceSection(webcam_size="big"))


def test_folder_of_videos_is_a_batch_in_natural_order(tmp_path):
    for name in ("clip10.mp4", "clip2.mp4", "clip1.mkv"):
        write_clip(tmp_path / name, frames=2)
    (tmp_path / "readme.txt").write_text("x")
    inputs = expand_inputs([str(tmp_path)])
    assert inputs.batch and [p.rsplit("/", 1)[1] for p in inputs.uris] == ["clip1.mkv", "clip2.mp4", "clip10.mp4"]
    glob = expand_inputs([str(tmp_path / "clip*.mp4")])
    assert glob.batch and len(glob.uris) == 2
    with pytest.raises(SourceError, match="no video files match"):
        expand_inputs([str(tmp_path / "*.avi")])


def test_single_file_is_not_a_batch_and_urls_stay(tmp_path):
    one = expand_inputs([str(tmp_path / "a.mp4"), "rtsp://10.0.0.5/live"])
    assert not one.batch and one.uris == [str(tmp_path / "a.mp4"), "rtsp://10.0.0.5/live"]
    assert expand_inputs([str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]).batch


def test_hwaccel_auto_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(hwaccel, "cuda_device_present", lambda: False)
    assert hwaccel.resolve("auto") == "cpu"
    assert hwaccel.resolve("cpu") == "cpu"
    with pytest.raises(SourceError, match="source.hwaccel is cuda but .*set source.hwaccel: auto"):
        hwaccel.resolve("cuda")


def test_hwaccel_auto_decodes_here(tmp_path):
    src = make_source(str(write_clip(tmp_path / "a.mp4", frames=3)), SourceSection(hwaccel="auto"))
    src.open()
    assert len(list(src.frames())) == 3
    assert src.decoder == ("cuda" if hwaccel.resolve("auto") == "cuda" else "cpu")
    src.close()


def test_network_kinds_are_a_registry_a_new_scheme_plugs_in():
    from auflow.engine.sources import SOURCE_KINDS, FileSource, make_source

    assert sorted(SOURCE_KINDS) == ["http", "https", "rtsp", "rtsps"]
    with pytest.raises(SourceError, match="unsupported kind of source srtx://"):
        make_source("srtx://host:9000/cam")

    @SOURCE_KINDS.register("srtx")
    def srtx(uri, cam, cfg, common):  # e.g. a user's SRT source: here a file source standing in
        return FileSource("clip.mp4", cam or "srtx")

    try:
        src = make_source("srtx://host:9000/cam")
        assert isinstance(src, FileSource) and src.cam == "srtx"
    finally:
        SOURCE_KINDS._entries.pop("srtx")  # the registry is global: leave it as the other tests expect
