"""The demo's per-segment AUs and fused expressions (engine/timeline.py)."""

from __future__ import annotations

from auflow.engine.timeline import au_activity, fused_timeline


def _result(seq: int, t: float, au: dict) -> dict:
    return {"cam": "c", "sid": "s", "seq": seq, "frame": seq, "pts": int(t * 1000), "time_base": [1, 1000],
            "faces": [{"au": au, "expr": {"happiness": 0.9, "neutral": 0.1}}]}


def test_active_aus_are_the_strong_ones_strongest_first_without_nulls_or_sides():
    rs = [_result(0, 0.5, {"AU12": 0.8, "AU12_L": 0.9, "AU25": 0.4, "AU06": None, "AU07": 0.1}),
          _result(1, 1.5, {"AU12": 0.6, "AU12_L": 0.7, "AU25": 0.3, "AU06": None, "AU07": 0.2}),
          _result(2, 2.5, {"AU12": 0.1, "AU25": 0.0, "AU06": None, "AU07": 0.0})]
    got = au_activity(rs, 2.0)
    assert got == {0: "AU12 0.70, AU25 0.35", 1: "-"}


def test_fused_expression_per_segment_from_the_windows_results():
    rs = [_result(i, i * 0.5, {}) for i in range(8)]
    ws = [{"cam": "c", "sid": "s", "at_seq": 1, "expr": {"sadness": 0.7, "neutral": 0.3}},
          {"cam": "c", "sid": "s", "at_seq": 6, "expr": {"happiness": 0.8, "neutral": 0.2}},
          {"cam": "c", "sid": "other", "at_seq": 2, "expr": {"anger": 1.0}}]  # no such result: left out
    got = fused_timeline(ws, rs, 2.0)
    assert set(got) == {0, 1} and got[0][0] == "sadness" and got[1][0] == "happiness"
