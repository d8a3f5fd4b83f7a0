"""Decoded frames that stay in GPU memory: NV12 planes → torch by DLPack → BGR on the device.

The hand-over ``engine/sources/hwaccel.py`` describes (the all-GPU placement): PyAV ≥ 18 exports
the planes of an NVDEC frame (``is_hw_owned``) and of a software NV12 frame through DLPack. The
conversion is the BT.601/BT.709 matrix FFmpeg's swscale applies for ``bgr24``, in float on the
device (not bit-exact with swscale's fixed point: mean 1.2-1.3 gray levels, max 3 on the demo clip).
"""

from __future__ import annotations

from typing import Any

import torch

#: (Kr, Kb) of the YCbCr matrices: BT.601 (FFmpeg's default for SD/unspecified) and BT.709 (HD)
YCBCR = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def nv12_to_bgr(y: torch.Tensor, uv: torch.Tensor, matrix: str = "bt601", full_range: bool = False) -> torch.Tensor:
    """NV12 planes on any device (what NVDEC decodes to) → a (3, H, W) uint8 BGR frame on that device.

    y (H, W) uint8, uv (H/2, W/2, 2) uint8 interleaved Cb, Cr — the two planes of a PyAV frame,
    e.g. ``torch.from_dlpack(frame.planes[i])``. Chroma is repeated 2×2 (nearest). Not bit-exact
    with FFmpeg's swscale ``bgr24``: on the demo clip (BT.601, limited range) the mean |Δ| is
    1.2–1.3 gray levels and the max 3 (swscale's fixed point is ~1 level darker).
    """
    kr, kb = YCBCR[matrix]
    kg = 1.0 - kr - kb
    h, w = y.shape
    cb = uv[..., 0].float().repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w] - 128.0
    cr = uv[..., 1].float().repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w] - 128.0
    yy = y.float()
    if not full_range:
        yy, cb, cr = (yy - 16.0) * (255 / 219), cb * (255 / 224), cr * (255 / 224)
    r = yy + 2 * (1 - kr) * cr
    b = yy + 2 * (1 - kb) * cb
    g = yy - (2 * kb * (1 - kb) / kg) * cb - (2 * kr * (1 - kr) / kg) * cr
    return torch.stack([b, g, r]).round_().clamp_(0, 255).to(torch.uint8)



def frame_to_bgr_tensor(vf: Any) -> torch.Tensor:
    """A PyAV NV12 frame — NVDEC's, in GPU memory, or a software one — as a (3, H, W) uint8 BGR tensor
    on the device that holds its planes (no copy of the planes; the BGR frame is new).

    The planes go to torch as DLPack capsules: given the planes themselves, torch would pass its
    stream to ``__dlpack__``, which PyAV refuses for CUDA frames. No synchronisation is needed
    beyond stream order: with ``current_ctx`` FFmpeg's NVDEC copies run on the context's default
    stream, which torch's default stream is.
    """
    fmt = vf.format.name
    sw = vf.sw_format.name if fmt == "cuda" and getattr(vf, "sw_format", None) is not None else fmt
    if sw != "nv12":
        raise ValueError(f"frames on the device are NV12 (8-bit 4:2:0); this stream decodes to {sw} "
                         "(set source.device_frames: false)")
    y = torch.from_dlpack(vf.planes[0].__dlpack__())
    uv = torch.from_dlpack(vf.planes[1].__dlpack__())
    matrix = "bt709" if vf.colorspace == 1 else "bt601"  # AVCOL_SPC_BT709; unspecified = swscale's BT.601
    return nv12_to_bgr(y, uv, matrix, full_range=vf.color_range == 2)  # AVCOL_RANGE_JPEG
