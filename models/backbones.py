"""Image backbones for the AU and expression heads, written in plain torch.

``build_backbone(name, **kw)`` returns a module mapping ``(B, 3, H, W)`` to a feature map
``(B, C, h, w)`` (``h = ceil(H / 32)``) with ``.out_channels = C``:

============== ===== ============================================================
name           C     notes
============== ===== ============================================================
resnet18       512   He et al. 2016, BasicBlock [2, 2, 2, 2]
resnet50       2048  He et al. 2016, Bottleneck [3, 4, 6, 3] (the papers' backbone)
mobilenet_v2   1280  Sandler et al. 2018; ``width_mult`` scales every layer (CPU)
============== ===== ============================================================

Module and parameter names follow torchvision's, so a torchvision ImageNet state_dict loads with
:func:`load_torchvision_weights` (its classifier, ``fc.*`` / ``classifier.*``, is dropped: these
modules stop at the last feature map). No weights are downloaded or bundled: every backbone is
randomly initialised the way torchvision initialises it, so an untrained model is exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from auflow.engine.errors import ModelError
from auflow.engine.registry import Registry

__all__ = ["BACKBONES", "MobileNetV2", "ResNet", "build_backbone", "check_input_size", "load_torchvision_weights"]


# ---------------------------------------------------------------------------------------------
# ResNet (torchvision.models.resnet layout: conv1, bn1, relu, maxpool, layer1..layer4)
# ---------------------------------------------------------------------------------------------
def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    # torchvision's v1.5 bottleneck: the stride sits on the 3x3 conv
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet trunk without avgpool/fc: ``(B, 3, H, W) -> (B, 512 * expansion, H/32, W/32)``."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.out_channels = 512 * block.expansion
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion)
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet18() -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2))


def resnet50() -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3))


# ---------------------------------------------------------------------------------------------
# MobileNetV2 (torchvision.models.mobilenetv2 layout: features.0 … features.18)
# ---------------------------------------------------------------------------------------------
def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # never round down by more than 10 %
        new_v += divisor
    return new_v


class ConvBNReLU6(nn.Sequential):
    """torchvision's ``Conv2dNormActivation`` with ReLU6 (children 0, 1, 2)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, kernel_size=1))
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 features: ``(B, 3, H, W) -> (B, 1280 * max(1, width_mult), H/32, W/32)``.

    ``blocks`` keeps only the first of the 17 inverted-residual blocks, then the 1x1 expansion to
    ``out_channels = 8 x`` their channels: a *local* feature extractor whose every output sees only
    a patch of the input (3 blocks: stride 4, receptive field 19 px; 4: stride 8, 27 px; 6: 59 px).
    """

    # t (expansion), c (channels), n (repeats), s (first stride)
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    NUM_BLOCKS = sum(n for _, _, n, _ in SETTINGS)

    def __init__(self, width_mult: float = 1.0, round_nearest: int = 8, blocks: int | None = None) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ModelError(f"mobilenet_v2 width_mult must be > 0, got {width_mult}")
        if blocks is not None and not 1 <= blocks <= self.NUM_BLOCKS:
            raise ModelError(f"mobilenet_v2 blocks must be 1-{self.NUM_BLOCKS} (or none for all), got {blocks}")
        cin = _make_divisible(32 * width_mult, round_nearest)
        features: list[nn.Module] = [ConvBNReLU6(3, cin, stride=2)]
        specs = [(t, c, s if i == 0 else 1) for t, c, n, s in self.SETTINGS for i in range(n)]
        for t, c, s in specs[:blocks]:
            cout = _make_divisible(c * width_mult, round_nearest)
            features.append(InvertedResidual(cin, cout, s, expand_ratio=t))
            cin = cout
        self.out_channels = (_make_divisible(1280 * max(1.0, width_mult), round_nearest) if blocks is None
                             else 8 * cin)
        features.append(ConvBNReLU6(cin, self.out_channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# ---------------------------------------------------------------------------------------------
#: backbones by name: ``factory(**options) -> nn.Module`` with ``.out_channels``
BACKBONES: Registry = Registry("backbone", "Randomly initialised CNN trunks by name; the result has ``.out_channels``.")
for _name, _factory in {"resnet18": resnet18, "resnet50": resnet50, "mobilenet_v2": MobileNetV2}.items():
    BACKBONES.register(_name)(_factory)


def check_input_size(input_size: int) -> None:
    """A :class:`ModelError` for an input side below the backbones' stride of 32 (their maps are ``ceil(H / 32)``)."""
    if input_size < 32:
        raise ModelError(f"input_size={input_size} is below the backbones' stride of 32")


def build_backbone(name: str, **kw) -> nn.Module:
    """Randomly initialised backbone by name; the result has ``.out_channels``.

    ``mobilenet_v2`` takes ``width_mult`` (default 1.0); the ResNets take no options.
    """
    if ":" in name or name not in BACKBONES:
        raise ModelError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    factory = BACKBONES.get(name)
    try:
        return factory(**kw)
    except TypeError as e:
        raise ModelError(f"backbone {name!r} does not take options {sorted(kw)}: {e}") from None


def load_torchvision_weights(backbone: nn.Module, state: Mapping[str, torch.Tensor] | str | Path) -> nn.Module:
    """Load a torchvision ImageNet state_dict (or a file holding one) into a backbone built here.

    The classifier (``fc.*``, ``classifier.*``) is dropped; anything else that does not fit is an
    error. Nothing is downloaded: fetch the file yourself (e.g. ``resnet50-11ad3fa6.pth``).
    """
    if not isinstance(state, Mapping):
        path = Path(state)
        if not path.is_file():
            raise ModelError(f"backbone weights {path} do not exist: download the torchvision file there first")
        state = torch.load(path, map_location="cpu", weights_only=True)
    kept = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = backbone.load_state_dict(kept, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"weights do not fit {type(backbone).__name__}: missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}"
        )
    return backbone
