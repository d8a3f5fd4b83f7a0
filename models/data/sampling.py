"""Frame sampling of ARPGNet's protocols (paper 003, Sec. 4.2.1), as frame indices.

- RML and AFEW (video-level labels): sparse temporal sampling (TSN, Wang et al. 2016, ref. [56]).
  The video is cut into T = 16 equal segments; training takes one random frame from each segment,
  testing the middle frame of each, "to ensure the consistency of the prediction results".
- Aff-Wild2 (a label per frame): "eight surrounding frames are sampled from each frame with a
  dilation rate of three" (ref. [57]). Centred on the labelled frame by default; ``causal=True``
  ends the window at that frame, which is what a live stream can have.

Indices past either end of a video are clamped to it (a short video repeats its edge frames), so
every clip has exactly T frames: the static shape the model was built for.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AFFWILD2_DILATION", "AFFWILD2_FRAMES", "SPARSE_FRAMES", "dilated_indices", "sparse_indices"]

#: frames per clip on RML and AFEW
SPARSE_FRAMES = 16
#: frames per clip and dilation on Aff-Wild2
AFFWILD2_FRAMES = 8
AFFWILD2_DILATION = 3


def sparse_indices(
    num_video_frames: int,
    num_frames: int = SPARSE_FRAMES,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Sparse temporal sampling: ``num_frames`` indices into a video of ``num_video_frames``.

    Segment k covers frames [k·L/T, (k+1)·L/T); training picks a uniform random frame in each
    (``rng`` required), testing its middle frame. Videos shorter than T frames repeat frames.
    Returns int64 (T,), non-decreasing.
    """
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_video_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    edges = np.arange(num_frames + 1) * num_video_frames / num_frames
    start, length = edges[:-1], np.diff(edges)
    if train:
        if rng is None:
            raise ValueError("training-time sparse sampling is random: pass rng=np.random.default_rng(seed)")
        pos = start + rng.random(num_frames) * length
    else:
        pos = start + length / 2
    return np.clip(np.floor(pos), 0, num_video_frames - 1).astype(np.int64)


def dilated_indices(
    center: int,
    num_video_frames: int,
    num_frames: int = AFFWILD2_FRAMES,
    dilation: int = AFFWILD2_DILATION,
    causal: bool = False,
) -> np.ndarray:
    """Dilated sampling around frame ``center``: ``num_frames`` indices ``dilation`` apart.

    Centred: offsets ``dilation · (k − T//2)``, k = 0 … T−1 (for T = 8, d = 3: −12 … +9), so the
    labelled frame is in the clip at position T//2. Causal: offsets ``−dilation · (T−1−k)``, the
    clip ends at ``center``. Indices are clamped to the video. Returns int64 (T,).
    """
    if not 0 <= center < num_video_frames:
        raise ValueError(f"center {center} is outside a video of {num_video_frames} frames")
    if num_frames < 1 or dilation < 1:
        raise ValueError(f"num_frames and dilation must be >= 1, got {num_frames} and {dilation}")
    k = np.arange(num_frames)
    offsets = -dilation * (num_frames - 1 - k) if causal else dilation * (k - num_frames // 2)
    return np.clip(center + offsets, 0, num_video_frames - 1).astype(np.int64)
