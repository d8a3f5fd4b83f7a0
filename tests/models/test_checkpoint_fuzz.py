"""Checkpoint files that are not what they claim: each refused with one ModelError line, nothing executed.

Truncated and bit-flipped checkpoints, random bytes, a pickle whose loading would run a command, cards
that are not cards, tensors of the wrong shape: ``load_checkpoint`` / ``create_model(checkpoint=…)``
raise :class:`ModelError` (one line), never another exception, and never run the pickle's code.
"""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch
from auflow.engine.errors import ModelError
from auflow.models import create_model, load_checkpoint, save_checkpoint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SMALL = dict(backbone="mobilenet_v2", backbone_kw={"width_mult": 0.25, "blocks": 3}, input_size=64)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(create_model("baseline_au", **SMALL), path)
    return path


def refused(path, build: bool = False) -> str:
    """The one-line ModelError that loading ``path`` raises (fails on any other outcome)."""
    with pytest.raises(ModelError) as info:
        create_model("baseline_au", checkpoint=path) if build else load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


def test_the_good_checkpoint_loads(good):
    model = create_model("baseline_au", checkpoint=good)
    assert model.card.name == "baseline_au" and model.card.config["input_size"] == 64


class RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"card": {"name": "baseline_au"}, "state_dict": {}, "x": RunsCode(str(marker))}, path)
    assert "could run code" in refused(path)
    plain = tmp_path / "evil.pkl"  # a bare pickle, not even torch's zip format
    plain.write_bytes(pickle.dumps(RunsCode(str(marker))))
    refused(plain)
    assert not marker.exists(), "the pickle's command ran"


@FUZZ
@given(cut=st.floats(0.0, 0.999))
def test_truncated_checkpoints_are_refused(good, tmp_path, cut):
    data = good.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: int(len(data) * cut)])
    refused(path)


@FUZZ
@given(data=st.data())
def test_bit_flipped_checkpoints_load_or_are_refused(good, tmp_path, data):
    raw = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << data.draw(st.integers(0, 7))
    path = tmp_path / "flipped.pt"
    path.write_bytes(bytes(raw))
    try:  # a flip inside a tensor's bytes is still a loadable checkpoint: only another error type fails
        create_model("baseline_au", checkpoint=path)
    except ModelError as e:
        assert "\n" not in str(e)


@FUZZ
@given(blob=st.binary(max_size=2048))
def test_random_bytes_are_refused(tmp_path, blob):
    path = tmp_path / "random.pt"
    path.write_bytes(blob)
    refused(path)


scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                      max_leaves=12)


@FUZZ
@given(card=values | st.dictionaries(st.sampled_from(["name", "task", "labels", "config", "kind", "input_size",
                                                      "mean", "std", "training"]), values, max_size=9),
       state=values)
def test_cards_and_state_dicts_of_any_shape_are_refused(tmp_path, card, state):
    path = tmp_path / "shapes.pt"
    buf = io.BytesIO()
    torch.save({"card": card, "state_dict": state}, buf)
    path.write_bytes(buf.getvalue())
    try:
        create_model("baseline_au", checkpoint=path)
    except ModelError as e:
        assert "\n" not in str(e)
    else:  # only a card and weights that really describe the model may load
        pytest.fail(f"loaded a checkpoint with card {card!r}")


def test_wrong_tensors_are_refused_with_one_line(good, tmp_path):
    card, state = load_checkpoint(good)
    state = dict(state)
    name = next(k for k, v in state.items() if v.ndim == 4)
    state[name] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "wrong.pt"
    torch.save({"card": card.to_dict(), "state_dict": state}, path)
    msg = refused(path, build=True)
    assert "does not fit baseline_au" in msg and "size mismatch" in msg
    torch.save({"card": {**card.to_dict(), "config": {**card.config, "nonsense_option": 1}}, "state_dict": state}, path)
    assert "config does not build" in refused(path, build=True)
    torch.save({"card": card.to_dict(), "state_dict": {"w": "not a tensor"}}, path)
    assert "not a mapping of names to tensors" in refused(path)
