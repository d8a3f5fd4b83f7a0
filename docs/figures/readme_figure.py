"""Draw the README's picture: the per-track plot `auflow report` draws, from a real run of the demo clip.

    python docs/figures/readme_figure.py                     # docs/figures/demo_run.jsonl.gz -> docs/figures/demo_track.png
    python docs/figures/readme_figure.py RUN.jsonl OUT.png   # any results JSONL (or .jsonl.gz), its longest track

``demo_run.jsonl.gz`` is the whole ``<cam>.jsonl`` of one ``auflow demo`` run (default config,
2026-12-05: the former fast profile, the tracked teacher ROI), gzipped; tests/test_readme.py redraws the PNG from it and checks the file it writes.
The plot itself is ``auflow.engine.cli.report_cmd.plot_track``: the AU time series above, the
stacked expression probabilities and the dominant expression below.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "demo_run.jsonl.gz"
PNG = HERE / "demo_track.png"


def draw(results: Path = RESULTS, png: Path = PNG) -> Path:
    """Write the longest track's AU + expression plot of ``results`` (a .jsonl or .jsonl.gz) to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    from auflow.engine.cli.report_cmd import fused_points, load_run, plot_track
    from auflow.engine.results import read_results

    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / results.name.removesuffix(".gz")
        if results.suffix == ".gz":
            with gzip.open(results, "rb") as src, open(jsonl, "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copyfile(results, jsonl)
        df = read_results(jsonl)  # the public reader, so the picture breaks when the format does
        _, cams = load_run(Path(tmp))
    tracked = df[df["face_id"] >= 0]
    track = int(tracked["face_id"].value_counts().idxmax())
    data = next(iter(cams.values()), None)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.write_bytes(base64.b64decode(plot_track(df, track, fused_points(data, track))))
    return png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", type=Path, default=RESULTS)
    ap.add_argument("png", nargs="?", type=Path, default=PNG)
    args = ap.parse_args()
    print(draw(args.results, args.png))


if __name__ == "__main__":
    main()
