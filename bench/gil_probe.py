"""Per-frame Python cost of the shared (face.device) placement, with detection faked: the ceiling the GIL
puts on one process's frames/s whatever the GPU does (bench/GPU.md, "Not covered yet").

    python bench/gil_probe.py N [--set key=value ...]     # N streams of a 160x90 cut of the demo clip, no model
    py-spy record --gil -f raw -o gil.txt -- python bench/gil_probe.py 16   # where the GIL-held time goes

RetinaFace is replaced by a fixed face per frame (so the tiny frames cost almost nothing to decode or
"detect"); everything else runs: thread workers, the shared stage's batching, ByteTrack per stream, the
torch warp, the analyzer (no model by default), publishing and the JSONL sink.
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from auflow.plugins.detectors.retinaface import RetinaFaceDetector  # noqa: E402
from auflow.engine import runner  # noqa: E402
from auflow.engine.assets import asset_path  # noqa: E402
from auflow.engine.config import default_config_path, load_config  # noqa: E402
from auflow.engine.types import Faces  # noqa: E402
from pipeline_bench import prepared_clip  # noqa: E402


def fake_detect(det, x, scale_xy, net=None):
    """One face per frame, where the demo clip's face roughly is: RetinaFace's output, at no cost."""
    b, _, h, w = x.shape
    sx, sy = (1.0 / scale_xy[0]).tolist()
    box = np.array([[w * 0.3, h * 0.2, w * 0.7, h * 0.8]], np.float32) * [sx, sy, sx, sy]
    kps = np.array([[[0.4, 0.4], [0.6, 0.4], [0.5, 0.55], [0.42, 0.7], [0.58, 0.7]]], np.float32) * [w * sx, h * sy]
    return [Faces(box, np.array([0.99], np.float32), kps) for _ in range(b)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("streams", type=int)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override (after the probe's own)")
    args = ap.parse_args()
    RetinaFaceDetector.detect_tensors = fake_detect
    n = args.streams
    video = prepared_clip(str(asset_path("demo_video")), "160x90", 240)
    with tempfile.TemporaryDirectory() as d:
        tmp, paths = Path(d), []
        for i in range(n):
            p = tmp / f"s{i:02d}.mp4"
            p.symlink_to(video)
            paths.append(str(p))
        cfg = load_config(default_config_path().with_name("gpu.yaml"), [
            "publish.endpoint=tcp://127.0.0.1:*", f"source.parallel={n}", "source.resume=false", "face.device=cpu",
            "analyzer.device=cpu", "source.hwaccel=cpu", "analyzer.models=[]", "face.batch=64", *args.overrides])
        out = runner.run(cfg, paths, run_dir=tmp / "run")
        frames = sum(s.frames_out for s in out.stats.values())
    print(f"{n} streams: {frames} frames in {out.wall_s:.2f} s = {frames / out.wall_s:.0f} fps (wall, start-up included)")


if __name__ == "__main__":
    main()
