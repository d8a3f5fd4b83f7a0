"""File sources: every frame of a clean file, everything before the damage of a broken one."""

from __future__ import annotations

import numpy as np
import pytest
from stream_media import damage, plain_decode, write_clip

from auflow.engine.errors import SourceError
from auflow.engine.sources import FileSource, ImageFolderSource, make_source

pytestmark = pytest.mark.timeout(60)


def read_all(src) -> list:
    src.open()
    try:
        return list(src.frames())
    finally:
        src.close()


@pytest.mark.parametrize("name,kw", [("plain.mp4", {}), ("bframes.mkv", {"bframes": 3}), ("stream.ts", {"fmt": "mpegts"})])
def test_full_speed_yields_exactly_the_plain_decode(tmp_path, name, kw):
    path = write_clip(tmp_path / name, frames=47, **kw)
    expected = plain_decode(path)
    pkts = read_all(FileSource(str(path)))
    assert len(pkts) == len(expected) == 47
    assert [p.meta.frame for p in pkts] == list(range(47))
    assert all(np.array_equal(p.image, e) for p, e in zip(pkts, expected))
    pts = [p.meta.pts for p in pkts]
    assert pts == sorted(pts) and len(set(pts)) == 47  # display order, one timestamp each
    assert pkts[0].meta.time_base[1] > 0 and pkts[0].meta.t_capture_ns > 0


def test_real_face_video_frame_count(face_video):
    assert len(read_all(FileSource(str(face_video)))) == len(plain_decode(face_video))


@pytest.mark.parametrize("fmt,suffix,how", [
    (None, ".mp4", "truncate"), (None, ".mp4", "garbage"), ("mpegts", ".ts", "truncate"), ("mpegts", ".ts", "garbage"),
    (None, ".mkv", "truncate"), (None, ".mkv", "garbage"),
])
def test_damaged_file_keeps_every_frame_before_the_damage(tmp_path, fmt, suffix, how):
    clean = write_clip(tmp_path / f"clean{suffix}", frames=60, fmt=fmt, faststart=suffix == ".mp4")
    broken = tmp_path / f"{how}{suffix}"
    intact = damage(clean, broken, how)
    assert 10 < intact < 50
    expected = plain_decode(clean)
    src = FileSource(str(broken))
    pkts = read_all(src)
    assert len(pkts) >= intact
    for p in pkts[:intact]:
        assert np.array_equal(p.image, expected[p.meta.frame]), f"frame {p.meta.frame} differs before the damage"
    assert src.decode_errors >= 1, "damage went uncounted"
    if how == "truncate":
        assert len(pkts) < 60


def test_mp4_cut_before_its_index_says_so(tmp_path):
    clean = write_clip(tmp_path / "rec.mp4", frames=30)  # index (moov) written last
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clean.read_bytes()[: clean.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cut\.mp4: not a readable video: its index \(moov atom\).*cut short"):
        FileSource(str(cut)).open()


def test_missing_and_folder_and_text(tmp_path):
    with pytest.raises(SourceError, match="nope.mp4: no such file"):
        FileSource(str(tmp_path / "nope.mp4")).open()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(SourceError, match=r"notes.mp4: not a readable video \("):
        FileSource(str(text)).open()


def test_each_open_is_a_new_session(tmp_path):
    src = FileSource(str(write_clip(tmp_path / "a.mp4", frames=5)))
    src.open()
    first = src.sid
    src.open("given-sid")
    assert src.sid == "given-sid" != first
    src.close()
    src.close()  # twice is fine


def test_image_folder_in_natural_order(tmp_path):
    import cv2

    folder = tmp_path / "stills"
    folder.mkdir()
    for i in (10, 2, 1):
        img = np.full((60, 80, 3), i * 20, np.uint8)
        cv2.imwrite(str(folder / f"img{i}.png"), img)
    (folder / "img5.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    src = make_source(str(folder))
    assert isinstance(src, ImageFolderSource) and src.cam == "stills"
    pkts = read_all(src)
    assert [int(p.image[0, 0, 0]) for p in pkts] == [20, 40, 200]  # img1, img2, img10
    assert [p.meta.frame for p in pkts] == [0, 1, 3]  # img5 (unreadable) is a counted jump
    assert src.decode_errors == 1 and pkts[0].meta.pts is None
