"""Backbones: torchvision's structure (names, parameter counts), shapes, gradients, weight loading."""

from __future__ import annotations

import pytest
import torch

from auflow.engine.errors import ModelError
from auflow.models.backbones import BACKBONES, build_backbone, load_torchvision_weights

# torchvision's parameter counts (resnet18 11,689,512; resnet50 25,557,032; mobilenet_v2
# 3,504,872) minus their ImageNet classifiers (fc / classifier.1: C·1000 + 1000)
TORCHVISION_TRUNK_PARAMS = {"resnet18": 11_176_512, "resnet50": 23_508_032, "mobilenet_v2": 2_223_872}
OUT_CHANNELS = {"resnet18": 512, "resnet50": 2048, "mobilenet_v2": 1280}
TORCHVISION_KEYS = {
    "resnet18": ["conv1.weight", "bn1.running_var", "layer2.0.downsample.0.weight", "layer4.1.bn2.num_batches_tracked"],
    "resnet50": ["layer1.0.downsample.1.weight", "layer3.5.conv3.weight", "layer4.2.bn3.bias"],
    "mobilenet_v2": ["features.0.0.weight", "features.1.conv.1.weight", "features.2.conv.3.running_mean", "features.18.1.weight"],
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_structure_matches_torchvision(name):
    net = build_backbone(name)
    assert net.out_channels == OUT_CHANNELS[name]
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_TRUNK_PARAMS[name]
    keys = net.state_dict().keys()
    for k in TORCHVISION_KEYS[name]:
        assert k in keys


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_feature_map_shape(name):
    net = build_backbone(name).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, net.out_channels, 4, 4)  # stride 32, 112/32 rounded up
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("width", "channels"), [(0.5, 1280), (1.0, 1280), (1.4, 1792)])
def test_mobilenet_width_mult(width, channels):
    net = build_backbone("mobilenet_v2", width_mult=width)
    assert net.out_channels == channels
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, channels, 2, 2)


def test_every_parameter_gets_a_finite_grad():
    net = build_backbone("resnet18").train()
    net(torch.randn(2, 3, 64, 64)).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_loads_a_torchvision_state_dict_without_its_classifier():
    src = build_backbone("resnet18")
    state = dict(src.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    dst = load_torchvision_weights(build_backbone("resnet18"), state)
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


def test_load_rejects_weights_of_another_network(tmp_path):
    with pytest.raises(ModelError, match="do not fit"):
        load_torchvision_weights(build_backbone("resnet18"), build_backbone("mobilenet_v2").state_dict())
    with pytest.raises(ModelError, match="do not exist"):
        load_torchvision_weights(build_backbone("resnet18"), tmp_path / "missing.pth")


def test_unknown_name_and_option_are_errors():
    with pytest.raises(ModelError, match="mobilenet_v2, resnet18, resnet50"):
        build_backbone("vgg16")
    with pytest.raises(ModelError, match="width_mult"):
        build_backbone("resnet18", width_mult=0.5)


@pytest.mark.parametrize(("blocks", "stride", "field"), [(3, 4, 19), (4, 8, 27), (6, 8, 59)])
def test_truncated_mobilenet_is_local_with_the_documented_receptive_field(blocks, stride, field):
    net = build_backbone("mobilenet_v2", width_mult=0.5, blocks=blocks).eval()
    x = torch.randn(1, 3, 96, 96, requires_grad=True)
    y = net(x)
    assert net.out_channels == 8 * 16  # 8 x the last block's channels (16 at width 0.5)
    assert y.shape == (1, net.out_channels, 96 // stride, 96 // stride)
    c = y.shape[-1] // 2
    y[0, :, c, c].sum().backward()
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == field  # every input row the centre unit sees


def test_truncated_mobilenet_refuses_a_block_count_it_does_not_have():
    with pytest.raises(ModelError, match="blocks must be 1-17"):
        build_backbone("mobilenet_v2", blocks=18)
