from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

from helpers import write_face_video  # noqa: E402

try:  # the fuzz tests (tests/**/test_*fuzz*.py): bounded counts here, the big ones in bench/fuzz.py
    from hypothesis import settings

    # derandomize: the suite's verdict does not hang on the draw (CI once drew an override key holding a
    # newline that no local run had); new examples are bench/fuzz.py's job (its seed printed), and what it
    # finds becomes an explicit example here
    settings.register_profile("auflow", database=None, deadline=None, print_blob=True, derandomize=True)
    settings.load_profile("auflow")
except ImportError:  # hypothesis is a dev dependency; the fuzz tests import it and fail loudly without it
    pass


def pytest_collection_modifyitems(config, items):
    """gpu tests skip cleanly where torch sees no CUDA device."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="no CUDA device on this machine")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def face_video(tmp_path_factory) -> Path:
    """40 frames, 320×240, one real face (scikit-image's astronaut) moving across."""
    return write_face_video(tmp_path_factory.mktemp("video") / "astronaut.mp4")


@pytest.fixture(scope="session")
def not_a_video(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("bad") / "notes.mp4"
    p.write_text("this is a text file, not a video\n")
    return p
