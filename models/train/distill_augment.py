"""Augmentation of a distillation's faces: colour jitter, a small similarity warp, random erasing
(:func:`augment`), blur and JPEG (:func:`degrade`), and upper/lower face halves of two faces put together
with their AUs (:func:`mix_halves`)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _resize_rgb(crops_bgr: np.ndarray, size: int) -> torch.Tensor:
    """BGR crops → (N, 3, size, size) uint8 RGB, resized as the run analyzer does (INTER_AREA down)."""
    import cv2

    if not len(crops_bgr):  # an input with nothing on this side of the split
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    if crops_bgr.shape[1] != size:
        interp = cv2.INTER_AREA if crops_bgr.shape[1] > size else cv2.INTER_LINEAR
        crops_bgr = np.stack([cv2.resize(c, (size, size), interpolation=interp) for c in crops_bgr])
    return torch.from_numpy(np.ascontiguousarray(crops_bgr[..., ::-1].transpose(0, 3, 1, 2)))


def augment(x: torch.Tensor, gen: torch.Generator, repeat: int = 1) -> torch.Tensor:
    """Colour jitter and a small similarity warp on a float batch in [0, 1] (B, 3, S, S); no flip.

    ``repeat``: the same draw for each run of ``repeat`` consecutive images (the T frames of a
    window get one jitter, warp and box, as one camera and one lighting would)."""
    b = x.shape[0]
    if b % repeat:
        raise ValueError(f"augment: a batch of {b} images is not a whole number of groups of {repeat}")

    def u(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(b // repeat, generator=gen)).repeat_interleave(repeat)

    bright, contrast, sat = u(0.75, 1.25), u(0.75, 1.25), u(0.7, 1.3)
    x = x * bright.view(b, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(b, 1, 1, 1) + mean
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (x - gray) * sat.view(b, 1, 1, 1) + gray
    x = x.clamp_(0.0, 1.0)
    scale, angle = u(0.92, 1.08), u(-5.0, 5.0) * math.pi / 180.0
    tx, ty = u(-0.08, 0.08), u(-0.08, 0.08)  # grid units: ±0.08 of the half-width = ±4 % of the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing (half the faces, one grey box of 20-40 % of the side): no single region
    # (closed eyes, say) can stand in for another AU's evidence (lips apart)
    s = x.shape[-1]
    side = (u(0.2, 0.4) * s).long().clamp_(min=1)
    x0 = (u(0.0, 1.0) * (s - side)).long()
    y0 = (u(0.0, 1.0) * (s - side)).long()
    on = (torch.rand(b // repeat, generator=gen) < 0.5).repeat_interleave(repeat)
    r = torch.arange(s)
    box = (((r.view(1, s) >= x0.view(b, 1)) & (r.view(1, s) < (x0 + side).view(b, 1))).view(b, 1, s)
           & ((r.view(1, s) >= y0.view(b, 1)) & (r.view(1, s) < (y0 + side).view(b, 1))).view(b, s, 1)) & on.view(b, 1, 1)
    return torch.where(box.unsqueeze(1), torch.full_like(x, 0.5), x)


def degrade(x: torch.Tensor, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    """Camera-like damage on a float batch in [0, 1] (B, 3, S, S): on a ``p`` share of the images each, a Gaussian
    blur (sigma 0.3-1.2 px) and a JPEG round trip (quality 30-90, OpenCV). For stills (``degrade``): a photo is one
    sharp frame, and what auflow runs on is compressed video."""
    import cv2

    b = x.shape[0]
    blur_on, jpeg_on = torch.rand(b, generator=gen) < p, torch.rand(b, generator=gen) < p
    sigma = 0.3 + 0.9 * torch.rand(b, generator=gen)
    quality = (30 + 60 * torch.rand(b, generator=gen)).long()
    out = x.clone()
    r = torch.arange(-3, 4, dtype=torch.float32)
    for i in range(b):
        if blur_on[i]:
            k = torch.exp(-0.5 * (r / sigma[i]) ** 2)
            k = (k / k.sum()).to(x.dtype)
            img = out[i:i + 1]
            img = F.conv2d(F.pad(img, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).expand(3, 1, 1, 7), groups=3)
            out[i:i + 1] = F.conv2d(F.pad(img, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).expand(3, 1, 7, 1), groups=3)
        if jpeg_on[i]:
            u8 = (out[i].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(u8), [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
            if ok:
                out[i] = torch.from_numpy(cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)).permute(2, 0, 1).to(x.dtype) / 255.0
    return out


#: FACS's upper-face and lower-face AUs (Ekman et al. 2002, ch. 2-3); left/right halves follow their AU
UPPER_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU43", "AU45", "AU46")
LOWER_AUS = ("AU10", "AU11", "AU12", "AU13", "AU14", "AU15", "AU16", "AU17", "AU18", "AU20", "AU22", "AU23", "AU24",
             "AU25", "AU26", "AU27", "AU28")
#: where the halves meet in an ArcFace-aligned crop (scale 1.0): eyes at 0.46, nose tip at 0.64 of the side
HALF_SPLIT = 0.58


def lower_face_mask(aus: tuple[str, ...]) -> torch.Tensor | None:
    """(K,) bool: which AUs are lower-face ones; None when an AU is in neither table."""
    base = [a.split("_")[0] for a in aus]
    if any(b not in UPPER_AUS + LOWER_AUS for b in base):
        return None
    return torch.tensor([b in LOWER_AUS for b in base])


def mix_halves(x: torch.Tensor, y: torch.Tensor, lower: torch.Tensor, gen: torch.Generator,
               split: float = HALF_SPLIT) -> tuple[torch.Tensor, torch.Tensor]:
    """On half the samples, the rows below ``split`` and the lower-face AUs come from another sample
    of the batch: new combinations of upper- and lower-face AUs (e.g. eyes shut while laughing)."""
    b, s = x.shape[0], x.shape[-1]
    partner = torch.randperm(b, generator=gen)
    on = torch.rand(b, generator=gen) < 0.5
    rows = (torch.arange(s) >= round(split * s)).view(1, 1, s, 1)
    x = torch.where(on.view(b, 1, 1, 1) & rows, x[partner], x)
    y = torch.where(on.view(b, 1) & lower.view(1, -1), y[partner], y)
    return x, y


__all__ = ["LOWER_AUS", "UPPER_AUS", "augment", "degrade", "lower_face_mask", "mix_halves"]
