"""A minimal training loop for the expression models on in-memory tensors, and the per-frame
baseline ARPGNet is compared with.

This is deliberately small — Adam, fixed epochs, shuffled mini-batches, no checkpoints or logging
sinks — for trunk pre-training and the per-frame baseline; its steps are the shared step loop of
:mod:`auflow.models.train.loop`. ``auflow train`` (``auflow.models.train``)
trains the expression models themselves, on the papers' datasets or on the generated sets of
``synthetic.py`` wrapped as datasets here (:class:`MotionClipDataset`, :class:`MultiLabelFaceDataset`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auflow.models.card import ModelCard
from auflow.models.expr.small_trunk import build_trunk
from auflow.models.train.loop import StepHooks, run_epoch

log = logging.getLogger(__name__)

__all__ = ["FitResult", "FrameAverageBaseline", "MotionClipDataset", "MultiLabelFaceDataset", "TrunkRegressor", "cross_entropy_step", "fit", "normalise", "predict", "pretrain_trunk"]


def normalise(x: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """[0, 1] images (…, 3, H, W) → ``(x − mean) / std`` per channel, as a model's card says."""
    x = torch.as_tensor(x, dtype=torch.float32)
    shape = (len(mean), 1, 1)
    return (x - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch, over the samples trained on
    seconds: float = 0.0


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    epochs: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    param_groups: list[dict] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    milestones: Sequence[int] = (),
) -> FitResult:
    """Train ``model`` in place with Adam: ``loss_fn(model, x_batch, y_batch)`` → scalar loss.

    ``param_groups`` (Adam's format) overrides the single group built from ``lr`` (paper 003 uses
    a smaller rate for the pre-trained trunk, paper 004 for the feature extractor);
    ``on_epoch(epoch, mean_loss)`` is called after each epoch. Every rate is divided by 10 at each
    epoch in ``milestones`` (paper 004: every 20 of 80 epochs). The model is left in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(param_groups or model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)
    result = FitResult()
    start = time.perf_counter()
    n = len(inputs)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        # a last batch of one is dropped: BatchNorm cannot train on a single sample
        chunks = [idx for idx in order.split(batch_size) if len(idx) > 1 or batch_size == 1]
        mean = run_epoch(((inputs[idx], targets[idx]) for idx in chunks), len(chunks), lambda x, y: {"loss": loss_fn(model, x, y)},
                         opt, None, 0, StepHooks(), f"fit epoch {epoch + 1}", "lower lr", per_sample=True)
        sched.step()
        result.losses.append(mean["loss"])
        log.debug("epoch %d loss %.4f", epoch, result.losses[-1])
        if on_epoch is not None:
            on_epoch(epoch, result.losses[-1])
            model.train()  # the callback may have evaluated
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """``model(inputs)`` in eval mode, batched → numpy."""
    model.eval()
    return torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]).numpy()


class FrameAverageBaseline(nn.Module):
    """An order-blind video classifier: a per-frame CNN (backbone → GAP → FC) whose softmax
    outputs are averaged over the clip — the "appearance only, mean pooling" row of paper 003's
    Table 4. ``forward(clip (B, T, 3, S, S))`` → probabilities (B, C); ``forward_aux`` → logits of
    the averaged probabilities for a cross-entropy."""

    def __init__(self, backbone: str | nn.Module, num_classes: int, labels: Sequence[str] | None = None,
                 input_size: int = 112, backbone_kw: dict | None = None) -> None:
        super().__init__()
        self.backbone = build_trunk(backbone, **(backbone_kw or {})) if isinstance(backbone, str) else backbone
        self.fc = nn.Linear(self.backbone.out_channels, num_classes)
        self.card = ModelCard(name="frame_average_baseline", task="expr", labels=tuple(labels or range(num_classes)),
                              input_size=input_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), multilabel=False)

    def frame_probs(self, clip: torch.Tensor) -> torch.Tensor:
        b, t = clip.shape[:2]
        feat = self.backbone(clip.reshape(b * t, *clip.shape[2:])).mean(dim=(2, 3))
        return torch.softmax(self.fc(feat), dim=-1).view(b, t, -1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.frame_probs(clip).mean(dim=1)

    def forward_aux(self, clip: torch.Tensor) -> dict[str, torch.Tensor]:
        probs = self(clip)
        return {"probs": probs, "logits": torch.log(probs.clamp_min(1e-8))}


def cross_entropy_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss for :func:`fit`: cross-entropy on ``model.forward_aux(x)["logits"]`` (paper 003, RML/AFEW)."""
    return F.cross_entropy(model.forward_aux(x)["logits"], y)


class TrunkRegressor(nn.Module):
    """A backbone with a linear head on its pooled features, regressing per-image targets: the
    pre-training task of :func:`pretrain_trunk`."""

    def __init__(self, backbone: str, num_targets: int, backbone_kw: dict | None = None) -> None:
        super().__init__()
        self.backbone = build_trunk(backbone, **(backbone_kw or {}))
        self.head = nn.Linear(self.backbone.out_channels, num_targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def pretrain_trunk(
    backbone: str,
    images: torch.Tensor,
    targets: torch.Tensor,
    epochs: int,
    backbone_kw: dict | None = None,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], FitResult]:
    """Pre-train a trunk on single images and return its state_dict (trunk names) with the fit
    record: the stand-in for the pre-trained networks the papers start from, which cannot be
    downloaded here. Integer ``targets`` (N,) are classes (cross-entropy, e.g. basic expressions:
    paper 004's ResNet-50 trained on RAF-Basic); float ``targets`` (N, K) are regressed (mean
    squared error, e.g. face parameters).
    """
    torch.manual_seed(seed)
    classes = not torch.is_floating_point(targets)
    model = TrunkRegressor(backbone, int(targets.max()) + 1 if classes else targets.shape[1], backbone_kw)

    def loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(m(x), y) if classes else F.mse_loss(m(x), y)

    result = fit(model, images, targets, loss, epochs, batch_size, lr, seed=seed)
    return model.backbone.state_dict(), result


# -- generated data as datasets for the trainer (auflow train, data.dataset: synthetic_motion | synthetic_multilabel) --
def _to_uint8(x: np.ndarray) -> torch.Tensor:
    """[0, 1] float images → uint8, as decoded frames reach the trainer's normaliser."""
    return torch.from_numpy(np.ascontiguousarray(np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)))


def _stream_seed(seed: int, split: str) -> int:
    """Disjoint train/test streams of one dataset seed: 2·seed + 1 and 2·seed + 2."""
    if split not in ("train", "test"):
        from auflow.models.data.core import DatasetError

        raise DatasetError(f"generated expression data has splits train and test, not {split!r}")
    return 2 * seed + (1 if split == "train" else 2)


class MotionClipDataset(torch.utils.data.Dataset):
    """:func:`auflow.models.expr.synthetic.motion_sequences` as a dataset: items
    ``{"frames": uint8 (T, 3, S, S), "label": int64 ()}`` like the RML/AFEW loaders.

    The test split is *paired* (every clip also played backwards), so a model blind to frame
    order scores exactly 1/2 on it. ``pretraining_set(n)`` gives single generated faces with their
    drawing parameters: the label-free stand-in for paper 003's pre-trained face network.
    """

    def __init__(self, split: str = "train", size: int = 256, seed: int = 0, num_frames: int = 8, input_size: int = 48) -> None:
        from auflow.models.expr.synthetic import MOTION_LABELS, motion_sequences

        stream = _stream_seed(seed, split)
        n = size + (size % 2 if split == "test" else 0)  # paired clips come in twos
        clips, labels = motion_sequences(n, num_frames, input_size, seed=stream, paired=split == "test")
        self.frames, self.labels = _to_uint8(clips), labels
        self.label_names, self.input_size, self.num_frames, self.seed = MOTION_LABELS, input_size, num_frames, seed
        self.description = (f"generated motion clips (auflow.models.expr.synthetic.motion_sequences), seed {seed}, "
                            f"split {split}, {n} clips of {num_frames} frames at {input_size}px"
                            + (", each also played backwards" if split == "test" else ""))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"frames": self.frames[i], "label": torch.tensor(self.labels[i])}

    def pretraining_set(self, n: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
        from auflow.models.expr.synthetic import face_parameter_frames

        faces, params = face_parameter_frames(n, self.input_size, seed=seed)
        return faces, torch.as_tensor(params)


class MultiLabelFaceDataset(torch.utils.data.Dataset):
    """:func:`auflow.models.expr.synthetic.multilabel_faces` as a dataset: items
    ``{"image": uint8 (3, S, S), "labels": float32 (6,)}`` like the RAF-ML loader.

    ``basic_images(per_class)`` gives single-label faces (:func:`single_label_faces`): paper 004's
    basic-expression images, for the visual node features (Eq. 5) and the trunk's pre-training.
    """

    def __init__(self, split: str = "train", size: int = 1024, seed: int = 0, input_size: int = 32) -> None:
        from auflow.models.expr.synthetic import MULTILABEL_LABELS, multilabel_faces

        images, labels = multilabel_faces(size, input_size, seed=_stream_seed(seed, split))
        self.images, self.labels = _to_uint8(images), labels.astype(np.float32)
        self.label_names, self.input_size, self.seed = MULTILABEL_LABELS, input_size, seed
        self.description = (f"generated multi-label faces (auflow.models.expr.synthetic.multilabel_faces), seed {seed}, "
                            f"split {split}, {size} faces at {input_size}px")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "labels": torch.from_numpy(self.labels[i].copy())}

    def basic_images(self, per_class: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
        from auflow.models.expr.synthetic import single_label_faces

        images, classes = single_label_faces(per_class, self.input_size, seed=seed)
        return images, torch.as_tensor(classes)

    def pretraining_set(self, n: int, seed: int) -> tuple[np.ndarray, torch.Tensor]:
        return self.basic_images(max(1, n // len(self.label_names)), seed)
