"""The run configuration: pydantic models with ``extra="forbid"``, YAML files, dotted overrides.

``load_config(path, overrides)`` reads YAML through the safe loader, applies ``--set a.b=v``
overrides, validates the whole tree including every plugin's own options (a detector's, a
tracker's, a sink's, an analyzer model's), and raises one :class:`ConfigError` that names the bad
key, its line in the file, and the valid keys.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .configfile import Strict, format_validation_error, load_yaml_model, parse_override, where_
from .errors import ConfigError, RegistryError

__all__ = ["Backend", "PluginSpec", "Precision", "Tta", "RunConfig", "Section", "default_config_path", "dump_config", "load_config",
           "parse_override", "validate_plugins"]

#: how a registry model runs: engine/analyzer/backends (BACKENDS), named here so configs validate them
Backend = Literal["eager", "graphs", "compile", "onnx", "tensorrt"]
#: the number format a registry model runs in (fp16/bf16 need a CUDA device)
Precision = Literal["fp32", "fp16", "bf16"]
#: test-time augmentation of a registry model (plugins/analyzers/torch_model.tta_views)
Tta = Literal["none", "flip", "flip_shift2", "flip_shift"]


#: the base of the run config's sections (the one base of every config auflow validates)
Section = Strict


class PluginSpec(BaseModel):
    """``{name: <registered name or package.module:Class>, <that plugin's options>...}``.

    The options are checked against the plugin's own ``Config`` by :func:`validate_plugins`.
    """

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ReconnectSection(Section):
    """How a live source (RTSP, HTTP, webcam) comes back after it drops."""

    initial_s: float = Field(1.0, gt=0, description="wait before the first reconnect attempt; doubles after each failure")
    max_s: float = Field(30.0, gt=0, description="longest wait between attempts")
    jitter: float = Field(0.2, ge=0, le=1, description="each wait varies by up to this fraction, so cameras that "
                                                       "fell together do not retry together")
    max_attempts: int | None = Field(None, ge=1, description="failed attempts in a row before the stream is given up; "
                                                             "null = never give up")
    retry_first: bool = Field(False, description="also retry when the very first connection fails "
                                                 "(default: fail at once with a clear error)")
    on_end: Literal["auto", "reconnect", "end"] = Field(
        "auto", description="a live stream that ends: auto = reconnect unless it has a known length (an HLS playlist "
                            "with an end)")
    max_restarts: int = Field(3, ge=0, description="times a live stream's worker process is restarted after it crashes")


class SourceSection(Section):
    cam: str | None = Field(None, description="camera id used in topics; default: derived from the file name or URL")
    decode_threads: int = Field(0, ge=0, description="FFmpeg decoder threads, 0 = FFmpeg's choice")
    queue: int = Field(32, ge=1, description="files: decoded frames buffered before the face stage; decode waits "
                                             "when it is full")
    live_queue: int = Field(2, ge=1, description="live sources: newest frames kept; older ones are dropped and counted")
    open_timeout_s: float = Field(5.0, gt=0, description="seconds an open (connect, probe) may take")
    read_timeout_s: float = Field(5.0, gt=0, description="seconds a read may block before the stream counts as broken")
    watchdog_s: float = Field(5.0, gt=0, description="live sources: no decoded frame for this long = the stream is "
                                                     "dead, reconnect")
    rtsp_transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP over TCP (default: nothing lost behind NAT) "
                                                                     "or UDP")
    hwaccel: Literal["auto", "cpu", "cuda"] = Field("auto", description="decode on the GPU (NVDEC) when one exists "
                                                                        "(auto), or force cpu/cuda")
    analyze_fps: float | None = Field(None, gt=0, description="analyse at most this many frames per second "
                                                              "(deterministic; skipped frames are counted)")
    realtime: bool = Field(False, description=(
        "files: play at the file's own frame rate, as a camera would deliver it, and treat it as live (the newest "
        "live_queue frames kept, older ones dropped and counted): replaying a recording as a camera, measuring live "
        "latency; a source with no rate (an image folder) ends with an error. Default: as fast as the pipeline "
        "goes, every frame"))
    workers: Literal["process", "thread"] = Field("process", description="each stream decodes and finds faces in its "
                                                                         "own spawned process, or thread")
    device_frames: bool = Field(True, description=(
        "face.device on CUDA with thread workers: NVDEC's frames stay in GPU memory and become BGR tensors there "
        "(DLPack, no host copy; engine/sources/hwaccel.py); false, or any other placement: downloaded to the host"))
    parallel: int = Field(1, ge=1, description="files of a batch (a folder, a glob, several files) processed at once")
    resume: bool = Field(True, description="batches: skip files the run directory's manifest.json marks done")
    webcam_size: str | None = Field(None, description="webcams: capture size such as 1280x720 (default: the device's)")
    webcam_fps: float | None = Field(None, gt=0, description="webcams: capture rate (default: the device's)")
    reconnect: ReconnectSection = ReconnectSection()


class ContextCrop(Section):
    """A second, looser aligned crop of every face, for analyzers that look beyond the aligned crop."""

    size: int = Field(256, ge=64, le=1024, description="context crop side in pixels")
    scale: float = Field(1.5, ge=1.0, le=4.0, description="how much looser than norm_crop (1.5: the face at 2/3 of the side)")
    border: Literal["replicate", "black"] = Field("replicate", description=(
        "beyond the frame's edge: its border pixels repeated (as MediaPipe's ImageToTensor does), or black (as "
        "norm_crop's crops; the distillation teacher pass's v1 crop, which the shipped starter student learnt from)"))


class FaceSection(Section):
    detector: PluginSpec = PluginSpec(name="yunet")
    align: PluginSpec = PluginSpec(name="norm_crop")
    tracker: PluginSpec = PluginSpec(name="bytetrack")
    context: ContextCrop | None = Field(None, description=(
        "null: none. {size, scale}: the face stage also cuts this looser crop of each face (FaceCrops.context), "
        "from which mediapipe_au places its landmark ROI from each person's previous landmarks, as MediaPipe's "
        "video mode does, so its AUs do not move with the detector's landmarks (docs/teachers.md)"))
    max_faces: int = Field(16, ge=1, description="keep at most this many faces per frame (highest score first)")
    device: str | None = Field(None, description=(
        "null (default): each stream's worker runs the face stage on the CPU, any detector. cpu | cuda | cuda:N | "
        "auto: one face stage for all streams in the pipeline's process, on that torch device (the all-GPU "
        "placement, DESIGN.md): frames of every stream batched for retinaface and the norm_crop warp; workers "
        "only decode (use source.workers: thread, so frames are not copied between processes)"))
    batch: int = Field(16, ge=1, description="face.device set: most frames per detection batch (across streams)")
    max_wait_ms: float = Field(5.0, ge=0, description="face.device set: longest a frame waits for its batch to fill")
    cuda_graphs: bool = Field(True, description=(
        "face.device on CUDA: the detector's network replayed from CUDA graphs, one per batch size bucket and input "
        "size (the first GPU run found it bound by Python's per-kernel launch cost); false = eager calls"))


class ModelSpec(Section):
    """A model run on every face: a registered analyzer, or a registered model wrapped as one."""

    name: str
    output: str | None = Field(None, description="output key (default: the model's task, 'au' or 'expr')")
    checkpoint: str | None = Field(None, description="weights + card written by auflow; none = the model's own default")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory/analyzer")
    backend: Backend = Field("eager", description=(
        "how the model runs (registry models only): eager | graphs (eager kernels replayed from CUDA graphs, one per "
        "batch size bucket: no per-kernel launch cost; CUDA only) | compile (torch.compile) | onnx | tensorrt"))
    precision: Precision = Field("fp32", description="fp16/bf16 need a CUDA device")
    channels_last: bool = False
    tta: Tta = Field(
        "none", description="test-time augmentation, outputs averaged: flip (2 views) | flip_shift2 (2: a window moved "
        "up-left, one moved down-right and mirrored) | flip_shift (6: three windows, each mirrored); registry models "
        "whose labels have no left/right side")


class AnalyzerSection(Section):
    device: str = Field("cpu", description="cpu | cuda | cuda:N | auto")
    batch: int = Field(16, ge=1, description="max faces per model call (batches gather across frames and streams)")
    max_wait_ms: float = Field(5.0, ge=0, description="longest a face waits for its batch to fill")
    threads: int = Field(0, ge=0, description="torch intra-op threads, 0 = torch's default")
    parallel_models: bool = Field(False, description=(
        "run the models on each batch at the same time, one thread each (ONNX Runtime and torch release the GIL): "
        "uses cores the face stage leaves idle; false = one after the other"))
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec(name="fer")])
    au_baseline: Literal["none", "track"] = Field("none", description=(
        "track: each tracked person's resting level per AU (the au_baseline_percentile-th percentile of the values "
        "seen so far, from 30 values on) is subtracted from the `au` output, as OpenFace calibrates per person "
        "(engine/au_baseline.py); off by default: measured on one unseen person only (bench/au_agreement.py)"))
    au_baseline_percentile: float = Field(10.0, ge=0.0, le=50.0, description="au_baseline: the resting percentile")


class PublishSection(Section):
    endpoint: str | None = Field("tcp://127.0.0.1:5555", description="ZeroMQ endpoint to bind; null = do not publish")
    hwm: int = Field(1000, ge=1, description="messages queued per subscriber before dropping (never blocks)")
    wait_subscribers: int = Field(0, ge=0, description="file runs: wait for this many subscribers before the first frame")
    wait_timeout_s: float = Field(30.0, gt=0)
    status_interval_s: float = Field(0.5, gt=0, le=1.0, description="status heartbeat period (at least 1 per second)")
    curve_secret_key_file: str | None = Field(None, description="CURVE-encrypt the stream with this server key (auflow keys NAME)")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from .wire.endpoint import check_endpoint

        try:
            return check_endpoint(v, bind=True)
        except ConfigError as e:
            raise ValueError(str(e)) from None


class TemporalSection(Section):
    """Fusion over a sliding window per tracked person (engine/temporal.py; ``window`` messages)."""

    enabled: bool = Field(False, description="publish `window` messages: the temporal model fused over each track's frames")
    model: str = Field("arpgnet", description="a registered model with an encode_frames/fuse split; T is its num_frames")
    checkpoint: str | None = Field(None, description="its weights + card; none = untrained (windows say so)")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory")
    stride: int = Field(4, ge=1, description="a window every this many frames of a track")
    mode: Literal["auto", "causal", "centred"] = Field(
        "auto", description="causal: window ends at its frame (live); centred: window centred on it (files); "
                            "auto: causal for live sources, centred for files")
    evict_after: int = Field(30, ge=1, description="a track absent from this many results of its session is lost: "
                                                   "its last windows are flushed and its state dropped")


class ExecutorSection(Section):
    """Where the videos of a batch run: here (``local``), or as Ray tasks over a cluster (``ray``,
    the ``auflow[ray]`` extra; docs/scale-out.md)."""

    kind: Literal["local", "ray"] = Field("local", description=(
        "local: this machine's pipeline (source.parallel files at once); ray: one Ray task per video, each running "
        "this same per-video pipeline on whichever node has the resources, results written by this process"))
    address: str | None = Field(None, description=(
        "ray: the cluster to join: null = start a private one on this machine; auto = the one `ray start` made "
        "here; HOST:PORT of its head (GCS); ray://HOST:10001 (Ray Client)"))
    cpus_per_video: float = Field(1.0, gt=0, description="ray: CPUs each video's task reserves (fractions allowed)")
    gpus_per_video: float = Field(0.0, ge=0, description="ray: GPUs each video's task reserves (fractions allowed, "
                                                         "e.g. 0.25 = four videos share a GPU)")
    max_retries: int = Field(3, ge=0, description=(
        "ray: times Ray reruns a video whose worker or node died (its partial outputs are discarded); an error in "
        "the video itself is never retried: it is one `failed` entry"))


class RunConfig(Section):
    source: SourceSection = SourceSection()
    face: FaceSection = FaceSection()
    analyzer: AnalyzerSection = AnalyzerSection()
    publish: PublishSection = PublishSection()
    temporal: TemporalSection = TemporalSection()
    executor: ExecutorSection = ExecutorSection()
    sinks: list[PluginSpec] = Field(default_factory=lambda: [PluginSpec(name="jsonl")])
    out: str = Field("runs", description="folder under which each run writes its own directory")


# ------------------------------------------------------------------------------------------------
def default_config_path() -> Path:
    return Path(str(importlib.resources.files("auflow.configs") / "default.yaml"))


def validate_plugins(cfg: RunConfig, lines: dict[tuple, int | str] | None = None, path: Path | str | None = None) -> None:
    """Check every plugin's options against its own Config without starting anything."""
    from . import registry as reg

    def check(registry, spec_name: str, options: dict, where: str) -> None:
        try:
            cls = registry.get(spec_name)
        except RegistryError as e:
            raise ConfigError(where_(path, lines or {}, tuple(where.split(".")) + ("name",)) + f"{where}.name: {e}") from None
        cfg_cls = getattr(cls, "Config", None)
        if cfg_cls is None:
            return
        try:
            cfg_cls(**options)
        except ValidationError as e:
            loc = tuple(where.split(".")) + tuple(e.errors()[0]["loc"])
            raise ConfigError(where_(path, lines or {}, loc) + format_validation_error(e, where, cfg_cls)) from None

    check(reg.DETECTORS, cfg.face.detector.name, cfg.face.detector.options, "face.detector")
    check(reg.ALIGNERS, cfg.face.align.name, cfg.face.align.options, "face.align")
    check(reg.TRACKERS, cfg.face.tracker.name, cfg.face.tracker.options, "face.tracker")
    for i, sink in enumerate(cfg.sinks):
        check(reg.SINKS, sink.name, sink.options, f"sinks.{i}")
    for i, m in enumerate(cfg.analyzer.models):
        if m.name in reg.ANALYZERS or ":" in m.name:
            check(reg.ANALYZERS, m.name, m.options, f"analyzer.models.{i}.options")
        elif m.name not in reg.MODELS:
            valid = sorted(set(reg.ANALYZERS.names()) | set(reg.MODELS.names()))
            raise ConfigError(where_(path, lines or {}, ("analyzer", "models", i, "name"))
                              + f"analyzer.models.{i}.name: unknown model or analyzer {m.name!r}; valid: {', '.join(valid)}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, check_plugins: bool = True) -> RunConfig:
    """Read, override, validate. ``path=None`` reads the packaged ``configs/default.yaml``.

    Every problem is one :class:`ConfigError` line: bad bytes, bad YAML, a recursive or exploding
    alias, an unknown key or a bad value, named by its line in the file or by the override that set it.
    """
    path = Path(path) if path is not None else default_config_path()
    cfg, lines = load_yaml_model(RunConfig, path, list(overrides or []))
    if check_plugins:
        validate_plugins(cfg, lines, path)
    return cfg


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
