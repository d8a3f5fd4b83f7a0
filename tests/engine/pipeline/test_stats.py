"""The status heartbeat's rates: never a few frames divided by a few microseconds."""

from __future__ import annotations

from auflow.engine.pipeline.stats import StreamStats


def test_rates_repeat_within_the_minimum_window():
    st = StreamStats(cam="c", uri="u", t_start=0.0, _last_t=0.0)
    st.frames_out = 30
    assert st.rates(1.0) == (0.0, 30.0)  # 30 results over 1 s
    st.frames_out = 32  # a session's end right after that heartbeat: 2 more results, 1 ms later
    assert st.rates(1.001) == (0.0, 30.0)  # the last figures, not 2 / 0.001 = 2000
    assert st.rates(1.5) == (0.0, 4.0)  # the 2 results counted once the window has passed
