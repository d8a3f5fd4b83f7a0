from __future__ import annotations

from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest

from auflow.engine.types import FaceCrops, FaceResults, Faces, FrameMeta, FramePacket, ModelInfo


def faces(n: int) -> Faces:
    return Faces(np.arange(4 * n, dtype=np.float32).reshape(n, 4), np.linspace(0.5, 1, n), np.zeros((n, 5, 2)))


META = FrameMeta("cam", "sid", 0, 0, (1, 25), 0, 64, 48)


@pytest.mark.parametrize(
    "kwargs, expectation",
    [
        ({"bbox": np.zeros((2, 4)), "score": np.zeros(2), "kps": np.zeros((2, 5, 2))}, does_not_raise()),
        ({"bbox": np.zeros((2, 4)), "score": np.zeros(3), "kps": np.zeros((2, 5, 2))}, pytest.raises(ValueError, match=r"Faces.score must have shape \(2\), got \(3,\)")),
        ({"bbox": np.zeros((2, 4)), "score": np.zeros(2), "kps": np.zeros((2, 4, 2))}, pytest.raises(ValueError, match="Faces.kps")),
        ({"bbox": np.zeros((2, 4)), "score": np.zeros(2), "kps": np.zeros((2, 5, 2)), "track": np.zeros(1)}, pytest.raises(ValueError, match="Faces.track")),
    ],
)
def test_faces_validation(kwargs, expectation):
    with expectation:
        Faces(**kwargs)


def test_faces_index_and_empty():
    f = faces(3)
    assert len(f) == 3 and (f.track == -1).all()
    sub = f[np.array([True, False, True])]
    assert len(sub) == 2 and sub.bbox[1, 0] == 8
    assert len(f[1]) == 1
    assert len(Faces.empty()) == 0 and Faces.empty().kps.shape == (0, 5, 2)
    assert (f.with_track(np.array([4, 5, 6])).track == [4, 5, 6]).all()


def test_frame_packet_checks_image_against_meta():
    FramePacket(META, np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(48, 64, 3\)"):
        FramePacket(META, np.zeros((64, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        FramePacket(META, np.zeros((48, 64, 3), np.float32))


def test_crops_and_results_validate():
    FaceCrops(META, faces(2), np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError):
        FaceCrops(META, faces(2), np.zeros((1, 112, 112, 3), np.uint8))
    ok = dict(outputs={"expr": np.zeros((2, 7), np.float32)}, labels={"expr": tuple("abcdefg")}, models={"expr": ModelInfo("fer", "trained")})
    FaceResults(META, faces(2), **ok)
    with pytest.raises(ValueError, match="no model provenance"):
        FaceResults(META, faces(2), ok["outputs"], ok["labels"], {})
    with pytest.raises(ValueError):
        FaceResults(META, faces(2), {"expr": np.zeros((2, 6), np.float32)}, ok["labels"], ok["models"])
    with pytest.raises(ValueError, match="kind"):
        ModelInfo("x", "pretend")


def test_timestamp():
    assert FrameMeta("c", "s", 3, 50, (1, 25), 0, 1, 1).timestamp == 2.0
    assert FrameMeta("c", "s", 3, None, (1, 25), 0, 1, 1).timestamp is None


def test_shared_types_are_frozen_and_validated_on_replacement():
    import dataclasses

    meta = FrameMeta("cam", "sid", 0, 0, (1, 25), 0, 64, 64)
    faces = Faces(np.zeros((1, 4)), np.ones(1), np.zeros((1, 5, 2)))
    crops = FaceCrops(meta, faces, np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        crops.crops = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        faces.track = np.array([3])
    with pytest.raises(ValueError, match="FaceCrops.crops"):
        dataclasses.replace(crops, crops=np.zeros((2, 8, 8, 3), np.uint8))  # two crops for one face
    res = FaceResults(meta, faces, {"expr": np.zeros((1, 2), np.float32)}, {"expr": ("a", "b")}, {"expr": ModelInfo("m", "trained")})
    with pytest.raises(ValueError, match="FaceResults.features"):
        dataclasses.replace(res, features=np.zeros((3, 4), np.float32))
    assert faces.with_track(np.array([5])).track.tolist() == [5] and faces.track.tolist() == [-1]
