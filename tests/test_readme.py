"""The README and docs/ say what the code does: the first screen holds the two commands and the quick
start, every `auflow …` command line they show names a real subcommand and real options (as
`auflow SUB --help` lists them), every `make` target exists, links resolve, the output excerpt and
the picture come from a real run, and the assets table mirrors engine/assets.json."""

from __future__ import annotations

import gzip
import json
import re
import shlex
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auflow.engine.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FIRST_SCREEN = 40  # lines a newcomer sees before scrolling
QUICK_START = "auflow run video.mp4"
SHELL_BREAKS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "<"}


@dataclass(frozen=True)
class Command:
    where: str  # file:line
    argv: tuple[str, ...]  # from the word after `auflow` (or `make`) to the end of that command

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.argv)}"


def code_snippets(text: str) -> list[tuple[int, str]]:
    """(line number, text) of every shell line in fenced blocks (python/json/yaml blocks left out) and every
    inline code span outside them; backslash-continued lines joined."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    fence: str | None = None
    prose: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip() or "text")
            continue
        if fence is None:
            prose.append((n, line))
        elif fence in ("bash", "sh", "shell", "console", "text"):
            if not pending:
                start = n
            pending += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
            if not line.rstrip().endswith("\\"):
                out.append((start, pending))
                pending = ""
    # inline spans may wrap a line: search the prose joined, then map offsets back to line numbers
    joined = "\n".join(t for _, t in prose)
    offsets = [0]
    for _, t in prose:
        offsets.append(offsets[-1] + len(t) + 1)
    for m in re.finditer(r"(`+)([^`].*?)\1(?!`)", joined, flags=re.S):  # ``x`` is a span too (CommonMark)
        i = next(k for k in range(len(prose)) if offsets[k + 1] > m.start())
        out.append((prose[i][0], m.group(2).replace("\n", " ")))
    return out


def tokens(snippet: str) -> list[str]:
    try:
        return shlex.split(snippet, comments=True)
    except ValueError:  # an unbalanced quote in prose: plain words are enough to find commands
        return snippet.split("#", 1)[0].split()


def commands(path: Path, program: str) -> list[Command]:
    """Every `program …` invocation in path's code (`.venv/bin/auflow` counts as `auflow`)."""
    found = []
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    for n, snippet in code_snippets(path.read_text(encoding="utf-8")):
        words = tokens(snippet)
        for i, w in enumerate(words):
            if (w == program or w.endswith(f"/{program}")) and i + 1 < len(words):
                rest = words[i + 1:]
                cut = next((k for k, t in enumerate(rest) if t in SHELL_BREAKS), len(rest))
                if rest[:cut]:
                    found.append(Command(f"{name}:{n}", tuple(rest[:cut])))
    return found


def resolve(argv: tuple[str, ...]) -> tuple[object, list[str], list[str]]:
    """(the command argv names, its path of subcommand names, the options argv passes it). The command is
    typer's click object, the one `--help` renders (typer 0.29 vendors click as typer._click)."""
    cmd = typer.main.get_command(app)
    path: list[str] = []
    args = list(argv)
    while hasattr(cmd, "commands") and args and not args[0].startswith("-"):
        if args[0] not in cmd.commands:
            raise LookupError(f"`auflow {' '.join(path + [args[0]])}`: no such subcommand "
                              f"(auflow {' '.join(path)} has: {', '.join(sorted(cmd.commands))})")
        path.append(args[0])
        cmd = cmd.commands[args.pop(0)]
    options = [a.split("=", 1)[0] for a in args if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", a)]
    return cmd, path, options


def known_options(cmd) -> set[str]:
    names = {"--help"}
    for p in cmd.params:
        if p.param_type_name == "option":
            names.update(p.opts, p.secondary_opts)
    return names


def check(command: Command) -> list[str]:
    """What is wrong with one documented `auflow` command line ([] when it matches the CLI)."""
    try:
        cmd, path, options = resolve(command.argv)
    except LookupError as exc:
        return [f"{command.where}: {exc}"]
    valid = known_options(cmd)
    return [f"{command.where}: `auflow {' '.join(path)}` has no option {o} (it has: {', '.join(sorted(valid))})"
            for o in options if o not in valid]


DOCUMENTED = [c for p in [README, *DOCS] for c in commands(p, "auflow")]


def test_the_first_screen_holds_the_two_commands_and_the_quick_start():
    first = README.read_text(encoding="utf-8").splitlines()[:FIRST_SCREEN]
    in_code = [line for n, line in code_snippets("\n".join(first))]
    for needle in ("make demo", "make test", QUICK_START):
        assert any(needle in line for line in in_code), f"README's first {FIRST_SCREEN} lines have no `{needle}` in code"


def test_the_readme_documents_the_main_subcommands():
    shown = {c.argv[0] for c in commands(README, "auflow")}
    assert {"run", "demo", "subscribe", "report", "models", "config", "doctor"} <= shown, shown
    assert len(DOCUMENTED) >= 40, "the command parser found too few command lines"


@pytest.mark.parametrize("command", DOCUMENTED, ids=str)
def test_documented_command_matches_the_cli(command):
    assert check(command) == []


def test_documented_options_appear_in_help():
    """What `auflow SUB --help` prints (what a user reads) lists every option the docs use."""
    by_path: dict[tuple[str, ...], set[str]] = {}
    for c in DOCUMENTED:
        if not check(c):
            _, path, options = resolve(c.argv)
            by_path.setdefault(tuple(path), set()).update(options)
    runner = CliRunner()
    for path, options in by_path.items():
        r = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert r.exit_code == 0, r.output
        listed = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", r.output))
        assert options <= listed, f"auflow {' '.join(path)} --help does not list {sorted(options - listed)}"


def test_the_checker_catches_renamed_options_and_subcommands(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\n.venv/bin/auflow run a.mp4 --confg my.yaml \\\n    --set x=1\n```\n"
                    "Or `auflow subscribe tcp://h:1 --jsonl`, `auflow modles list`, `auflow models list --all`.\n")
    found = commands(page, "auflow")
    assert [c.argv[0] for c in found] == ["run", "subscribe", "modles", "models"]
    problems = [p for c in found for p in check(c)]
    assert len(problems) == 4, problems
    assert "no option --confg" in problems[0] and "--config" in problems[0]
    assert "no option --jsonl" in problems[1]
    assert "no such subcommand" in problems[2]
    assert "no option --all" in problems[3]


def test_documented_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    used = {c.argv[0] for p in [README, *DOCS] for c in commands(p, "make") if not c.argv[0].startswith("-")}
    assert {"demo", "test"} <= used
    assert used <= targets, f"documented but not in the Makefile: {sorted(used - targets)}"


def test_relative_links_resolve():
    broken = []
    for page in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []


# -- the output excerpt and the picture come from a real run ---------------------------------------

RUN = ROOT / "docs" / "figures" / "demo_run.jsonl.gz"
PNG = ROOT / "docs" / "figures" / "demo_track.png"


def real_messages() -> list[dict]:
    with gzip.open(RUN, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def subset(part, whole) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and subset(v, whole[k]) for k, v in part.items())
    return part == whole


def test_the_readme_result_excerpt_is_a_message_of_the_committed_run():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    excerpt = json.loads(next(b for b in blocks if '"type": "result"' in b))
    messages = real_messages()
    real = next(m for m in messages if m.get("type") == "result" and m["seq"] == excerpt["seq"])
    assert subset(excerpt, real)
    assert excerpt["models"]["au"]["kind"] == "teacher" and excerpt["faces"][0]["au"]["AU06"] is None
    results = [m for m in messages if m["type"] == "result"]
    assert len(results) == 472 and "472 (100.0%)" in text  # the demo table printed with that run


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_the_readme_picture_is_redrawn_from_the_committed_run(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_figure", ROOT / "docs/figures/readme_figure.py")
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    assert "(docs/figures/demo_track.png)" in README.read_text(encoding="utf-8")
    out = figure.draw(RUN, tmp_path / "track.png")
    w, h = png_size(out.read_bytes())
    cw, ch = png_size(PNG.read_bytes())
    # the same plot (10 in wide at 90 dpi, three panels, legends outside); fonts may move it a few px
    assert 800 <= w <= 1000 and 500 <= h <= 700, (w, h)
    assert abs(w - cw) <= 20 and abs(h - ch) <= 20, ((w, h), (cw, ch))
    assert out.stat().st_size > 50_000  # drawn lines, not an empty canvas


def test_the_assets_table_mirrors_engine_assets():
    from auflow.engine.assets import ASSETS

    page = (ROOT / "docs" / "assets.md").read_text(encoding="utf-8")
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    for a in ASSETS.values():
        row = next((r for r in rows if r.startswith(f"| {a.name}:")), None)
        assert row is not None, f"docs/assets.md has no row for {a.name}"
        assert a.sha256 in row and f"{a.package} {a.version}" in row, row
