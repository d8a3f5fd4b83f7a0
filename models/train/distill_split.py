"""Which cached faces a distillation trains on and which it holds out (:func:`split_rows`): by time
segments, whole videos, or whole people (docs/distillation.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from auflow.engine.errors import ConfigError

from .distill_cache import CachedVideo
from .distill_config import DistillConfig


def split_rows(videos: list[CachedVideo], cfg: DistillConfig) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Per video, the row indices to train on and to hold out; and the split's description."""
    mode = cfg.holdout if cfg.holdout != "auto" else ("video" if len(videos) >= 5 else "time")
    train, test = [], []
    if mode == "identity":
        return _split_identity(videos, cfg)
    if mode == "video":
        if len(videos) < 2:
            raise ConfigError("holdout=video needs at least 2 videos; use holdout=time for one")
        order = sorted(range(len(videos)), key=lambda i: videos[i].meta["video"])
        held = {order[j] for j in range(len(order)) if j % cfg.holdout_every == cfg.holdout_offset % cfg.holdout_every}
        if len(held) == len(videos):
            raise ConfigError("holdout=video would hold out every video")
        for i, v in enumerate(videos):
            idx = np.arange(len(v.rows))
            (test if i in held else train).append(idx)
            (train if i in held else test).append(np.zeros(0, np.int64))
        desc = {"mode": "video", "every": cfg.holdout_every, "offset": cfg.holdout_offset,
                "heldout_videos": [videos[i].meta["name"] for i in sorted(held)],
                "meaning": "whole videos held out: agreement on recordings the student never saw"}
        return train, test, desc
    seg, gap = cfg.segment_s, cfg.gap_s
    k, off = cfg.holdout_every, cfg.holdout_offset % cfg.holdout_every
    for v in videos:
        t = _times(v)
        s = np.floor(t / seg).astype(np.int64)
        held = s % k == off
        start = s * seg
        near_prev = ((s - 1) % k == off) & (t - start < gap)
        near_next = ((s + 1) % k == off) & (start + seg - t < gap)
        test.append(np.flatnonzero(held))
        train.append(np.flatnonzero(~held & ~near_prev & ~near_next))
    desc = {"mode": "time", "segment_s": seg, "every": k, "offset": off, "gap_s": gap,
            "meaning": (f"in each video, {seg:g}-s segments number {off}, {off + k}, {off + 2 * k}, … held out "
                        f"({gap:g} s of training frames dropped on each side): unseen frames of the same videos "
                        "and people, not other people")}
    return train, test, desc


def person_of(meta: dict, identities: dict[str, str] | None) -> str:
    """Whose faces a cached input holds: the ``identities`` entry for its path or name, else the input itself."""
    ids = identities or {}
    path = str(meta.get("video", ""))
    name = meta.get("name") or Path(path).name
    for key in (path, name, Path(name).stem):
        if key in ids:
            return ids[key]
    return Path(name).stem


def _split_identity(videos: list[CachedVideo], cfg: DistillConfig) -> tuple[list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Whole people held out: every input of a held-out person goes to the test side, nothing of them trains."""
    who = [person_of(v.meta, cfg.identities) for v in videos]
    people = sorted(set(who))
    if len(people) < 2:
        raise ConfigError(f"holdout=identity needs faces of at least 2 people; these inputs hold {people or 'none'} "
                          "(give more people, or an identities manifest that tells them apart)")
    if cfg.heldout_people:
        unknown = sorted(set(cfg.heldout_people) - set(people))
        if unknown:
            raise ConfigError(f"heldout_people {unknown} are not among the inputs' people {people}")
        held = set(cfg.heldout_people)
    else:
        held = {p for j, p in enumerate(people) if j % cfg.holdout_every == cfg.holdout_offset % cfg.holdout_every}
    if len(held) == len(people):
        raise ConfigError(f"holdout=identity would hold out every person ({people})")
    if not held:
        raise ConfigError(f"holdout=identity holds out nobody with every={cfg.holdout_every}, offset={cfg.holdout_offset} "
                          f"over {len(people)} people: give heldout_people")
    train, test = [], []
    for v, p in zip(videos, who):
        idx = np.arange(len(v.rows))
        empty = np.zeros(0, np.int64)
        train.append(empty if p in held else idx)
        test.append(idx if p in held else empty)
    desc = {"mode": "identity", "heldout_people": sorted(held), "train_people": sorted(set(people) - held),
            "heldout_inputs": [v.meta.get("name") for v, p in zip(videos, who) if p in held],
            "meaning": "whole people held out: agreement on faces of people the student never saw"}
    return train, test, desc


def _times(v: CachedVideo) -> np.ndarray:
    """Seconds of each cached row: the container's timestamps, else frame / fps."""
    ts = v.rows["timestamp"].to_numpy(dtype=np.float64, na_value=np.nan) if "timestamp" in v.rows else None
    frames = v.rows["frame"].to_numpy(np.float64)
    by_frame = frames / (v.fps or 25.0)
    if ts is None:
        return by_frame
    t = np.where(np.isfinite(ts), ts, by_frame)
    return t - (np.nanmin(t) if len(t) else 0.0)


__all__ = ["person_of", "split_rows"]
