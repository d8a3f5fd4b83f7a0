"""What decides a distillation (``auflow distill``'s options, docs/distillation.md): :class:`DistillConfig`,
read by auflow's one config loader (line-numbered errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from auflow.engine.configfile import Strict, load_yaml_model
from pydantic import Field

#: the teacher's 17 FACS AUs (its further columns are left/right halves of bilateral ones)
FACS_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14", "AU15", "AU17",
            "AU20", "AU23", "AU25", "AU26", "AU45")
#: options that may change between a run and its resumption (they do not change the result on one machine)
RESUME_FREE = ("threads", "device", "eval_every")


class DistillConfig(Strict):
    """Everything that decides a distillation; unknown keys are errors."""

    model: str = Field("me_graphau", description="registered AU model to train (auflow models list), or a temporal "
                       "expression model (arpgnet: trained on windows of its num_frames frames against fer)")
    options: dict[str, Any] = Field(default_factory=dict, description="model factory options; backbone defaults "
                                    "to mobilenet_v2 and input_size to the crop size where the model has them")
    aus: list[str] | None = Field(None, description="teacher AU columns to learn (default: its 17 FACS AUs)")
    teachers: list[str] = Field(["mediapipe_au"], description="mediapipe_au (AUs; its landmark presence filters the "
                                "faces), and fer (expressions; added for an expression student)")
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)
    loss: Literal["bce", "mse"] = Field("bce", description="bce: soft-target binary cross-entropy (AUs), soft "
                                        "cross-entropy with the teacher's distribution (expressions); mse: squared error")
    augment: bool = True
    mix_halves: bool = Field(True, description="augmentation: on half the faces, the lower face (rows below the nose "
                             "bridge) and its AUs come from another face of the batch (FACS codes upper and lower face "
                             "apart); off when an AU is in neither table")
    ema: float = Field(0.99, ge=0, lt=1, description="the checkpoint holds an exponential moving average of the weights "
                       "with this decay per step (0 = the last weights)")
    degrade: bool | None = Field(None, description="augmentation: blur and JPEG compression on 30 % of the faces each "
                                 "(degrade()); None: on when an input is a still image")
    holdout: Literal["auto", "time", "video", "identity"] = Field("auto", description=(
        "identity: whole people held out (every holdout_every-th person, or heldout_people), the only split whose "
        "agreement the default config's gate accepts; video: whole videos; time: segments of every video; "
        "auto: video from 5 videos, else time"))
    identities: dict[str, str] | None = Field(None, description=(
        "identity split: input (a video or image folder, by file/folder name or path) -> person; default: each input "
        "is its own person"))
    heldout_people: list[str] | None = Field(None, description="identity split: the people to hold out (default: "
                                             "every holdout_every-th person in name order, from holdout_offset)")
    segment_s: float = Field(1.0, gt=0, description="time split: segment length")
    holdout_every: int = Field(4, ge=2, description="hold out every N-th segment / video")
    holdout_offset: int = Field(2, ge=0, description="index of the first held-out segment / video")
    gap_s: float = Field(0.25, ge=0, description="time split: training frames this close to a held-out segment are dropped")
    vary_std: float = Field(0.1, gt=0, description="an AU varies when the teacher's std over all cached faces is at least this")
    threshold: float = Field(0.5, gt=0, lt=1, description="occurrence threshold for F1 (teacher and student)")
    min_presence: float = Field(0.5, ge=0, le=1, description="faces the teacher's landmark model finds less likely are not used")
    seed: int = 0
    threads: int = Field(1, ge=0, description="torch threads (0 = torch's default; 1 is fastest on a busy CPU)")
    device: str = "cpu"
    eval_every: int = Field(5, ge=0, description="report held-out agreement every N epochs (0 = only at the end)")


def load_distill_config(path: str | Path | None, overrides: dict[str, Any],
                        sets: list[str] | tuple[str, ...] = ()) -> DistillConfig:
    """A YAML file of DistillConfig keys (optional; read by auflow's one config loader: line-numbered
    errors), then the ``--set key=value`` overrides (``options.input_size=96``), then the command line's
    own options on top."""
    return load_yaml_model(DistillConfig, path, tuple(sets), what="distill options file", updates=overrides)[0]


__all__ = ["FACS_AUS", "RESUME_FREE", "DistillConfig", "load_distill_config"]
