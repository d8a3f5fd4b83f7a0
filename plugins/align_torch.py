"""norm_crop on any torch device: the same similarity transform as ``plugins/align.py``, warped by ``grid_sample``.

For the all-GPU path (DESIGN.md, "GPU path"): frames already on the device are cropped there, so
crops go to the models without visiting host memory. The transform is the one ``align.py`` solves
(``similarity_transform`` onto ``arcface_template``, closed-form Umeyama), written here in torch
so it runs batched on the device; the template itself comes from ``align.arcface_template``.

Warp convention, matching ``cv2.warpAffine(frame, M, (work, work), borderValue=0)``: pixel
(x, y) of the crop samples the frame at ``M⁻¹ · (x, y, 1)``, integer coordinates being pixel
centres, bilinear, zero outside the frame. ``grid_sample(align_corners=False)`` reads normalised
coordinate g of an axis of n pixels at pixel ``((g + 1) · n − 1) / 2``, and ``affine_grid`` (also
``align_corners=False``) puts output pixel x at ``g = (2x + 1) / n − 1``; the theta below is
``M⁻¹`` conjugated by those two maps. cv2 quantises the sampling position to 1/32 pixel and the
weights to 15 bits, grid_sample does not: the crops differ by interpolation error only (measured
on the demo clip in tests/plugins/test_align_torch.py). Sizes that norm_crop cannot warp directly
warp at ``warp_size(size)`` and are then area-resized like cv2's INTER_AREA (its exact pixel-overlap
weights, as two small matrix products).

On the CPU it is no substitute for the Aligner: it converts whole frames to float for grid_sample
(16 faces in 640×360 frames, 112 crops, one thread: 125 ms against the Aligner's 10 ms with cv2,
measured on the 2-core EPYC at load 3.0); it is for frames that are already on a GPU.

torch is imported by this module: import it only where torch is wanted (the GPU face stage).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .align import arcface_template, warp_size


def _solve_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64


def similarity_transform_torch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """``align.similarity_transform`` in torch: (..., K, 2) onto (..., K, 2) → (..., 2, 3) affine matrices."""
    ms, md = src.mean(dim=-2, keepdim=True), dst.mean(dim=-2, keepdim=True)
    p, q = src - ms, dst - md
    norm = (p ** 2).sum(dim=(-2, -1))
    a = (p * q).sum(dim=(-2, -1)) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(dim=-1) / norm
    rot = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = md[..., 0, :] - (rot @ ms[..., 0, :, None])[..., 0]
    return torch.cat([rot, t[..., None]], dim=-1)


def estimate_transform_torch(kps: torch.Tensor, size: int = 112, scale: float = 1.0) -> torch.Tensor:
    """Frame → warp-size crop transforms for landmarks (M, 5, 2) on any device: (M, 2, 3), float64 (float32 on MPS)."""
    dt = _solve_dtype(kps.device)
    dst = torch.as_tensor(arcface_template(warp_size(size), scale), dtype=dt, device=kps.device)
    return similarity_transform_torch(kps.to(dt), dst.expand(kps.shape[0], 5, 2))


def _theta(mats: torch.Tensor, height: int, width: int, work: int) -> torch.Tensor:
    """affine_grid's theta (M, 2, 3) for frame→crop matrices ``mats`` (cv2 convention, see the module doc)."""
    dt = mats.dtype
    m = mats.shape[0]
    full = torch.zeros(m, 3, 3, dtype=dt, device=mats.device)
    full[:, :2] = mats
    full[:, 2, 2] = 1.0
    inv = torch.linalg.inv(full)  # crop pixel → frame pixel
    # crop normalised → crop pixel: x = ((g + 1) · work − 1) / 2
    out_n2p = torch.tensor([[work / 2, 0, (work - 1) / 2], [0, work / 2, (work - 1) / 2], [0, 0, 1]], dtype=dt, device=mats.device)
    # frame pixel → frame normalised: g = (2x + 1) / n − 1
    in_p2n = torch.tensor([[2 / width, 0, 1 / width - 1], [0, 2 / height, 1 / height - 1], [0, 0, 1]], dtype=dt, device=mats.device)
    return (in_p2n @ inv @ out_n2p)[:, :2]


def _area_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) weights of cv2's INTER_AREA downscale along one axis: the share of input pixel j in output pixel i."""
    r = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64)[:, None] * r
    j = torch.arange(n_in, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(lo + r, j + 1) - torch.maximum(lo, j)).clamp(min=0)
    return (overlap / r).to(dtype=dtype, device=device)


def warp_crops(frames: torch.Tensor, kps: torch.Tensor | np.ndarray, size: int = 112, scale: float = 1.0,
               frame_index: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Aligned crops of faces in a batch of frames, on the frames' device.

    frames (N, C, H, W) uint8 or float, any device, channel order kept (BGR in auflow);
    kps (M, 5, 2) landmarks in frame pixels (arcface order); ``frame_index`` (M,) says which frame
    each face is in (default: face i in frame i, so M == N). Returns (M, C, size, size) in the
    frames' dtype (uint8 rounded and clamped like cv2), the same crops as ``Aligner(size, scale)``
    up to interpolation error.
    """
    if frames.ndim != 4:
        raise ValueError(f"frames must be (N, C, H, W), got shape {tuple(frames.shape)}")
    dev = frames.device
    kps = torch.as_tensor(kps, device=dev)
    if kps.ndim != 3 or kps.shape[1:] != (5, 2):
        raise ValueError(f"kps must be (M, 5, 2), got shape {tuple(kps.shape)}")
    n, c, h, w = frames.shape
    m = kps.shape[0]
    out_dtype = frames.dtype
    if m == 0:
        return torch.zeros(0, c, size, size, dtype=out_dtype, device=dev)
    if frame_index is None:
        if m != n:
            raise ValueError(f"{m} faces for {n} frames: pass frame_index")
        frame_index = torch.arange(n, device=dev)
    frame_index = torch.as_tensor(frame_index, device=dev, dtype=torch.long)
    work = warp_size(size)
    theta = _theta(estimate_transform_torch(kps, size, scale), h, w, work)
    grid = F.affine_grid(theta.float(), [m, 1, work, work], align_corners=False)  # (M, work, work, 2)
    # grid_sample needs one grid per input image: stack each frame's faces along the grid's height,
    # so every frame is converted to float once however many faces it holds.
    used, slot = torch.unique(frame_index, return_inverse=True)
    counts = torch.bincount(slot, minlength=len(used))
    per_frame = int(counts.max())
    # rank of each face among the faces of its frame
    order = torch.argsort(slot, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(slot)
    rank[order] = torch.arange(m, device=dev) - starts[slot[order]]
    big = torch.full((len(used), per_frame, work, work, 2), -2.0, device=dev)  # -2: outside, sampled as 0
    big[slot, rank] = grid
    src = frames[used]
    src = src.double() if src.dtype == torch.float64 else src.float()  # fp16 coordinates would be ~1 px off at 1080p
    out = F.grid_sample(src, big.reshape(len(used), per_frame * work, work, 2).to(src.dtype), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    out = out.reshape(len(used), c, per_frame, work, work).permute(0, 2, 1, 3, 4)[slot, rank]  # (M, C, work, work)
    if work != size:
        if out_dtype == torch.uint8:
            out = out.round_().clamp_(0, 255)  # cv2 resizes the uint8 crop the warp gave
        r = _area_matrix(work, size, out.dtype, dev)
        out = r @ out @ r.T  # cv2.INTER_AREA as two matrix products
    if out_dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(out_dtype)
