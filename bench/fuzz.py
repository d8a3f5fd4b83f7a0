"""Hostile input at scale: configs and CLI option values, wire messages into the decoder, a live
Subscriber and `auflow subscribe`, source URIs and file names. Counts what each input did.

    python bench/fuzz.py                      # the counts of docs/reliability.md (~10-20 min on 2 busy cores)
    python bench/fuzz.py --wire 2000 --configs 300 --cli 300 --uris 2000 --no-save   # a quick look

Every input must end in one of the expected ways: accepted, or refused with the component's own error
(ConfigError / WireError / SourceError; from the CLI: exit 2 or 3 and one ``error:`` line). Anything
else is a *traceback* (an unexpected exception type, or "Traceback" on stderr), and an input that
takes longer than ``--hang-s`` is a *hang* (SIGALRM in-process). Both must be 0. The subscriber runs
receive the mutated stream over real ZeroMQ: every message is either received or counted as skipped,
the subscriber stays alive, and its RSS growth is reported. Inputs are generated from a seeded
``random.Random`` (``--seed``), so a finding is reproducible; the suite's own fuzz tests
(tests/**/test_*fuzz*.py, hypothesis) import these generators for their bounded share.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import signal
import string
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).parent))

# ---------------------------------------------------------------------------------------------
# wire messages

TYPES = ("result", "window", "status", "eos")
WEIRD_VALUES = [None, True, False, -1, 0, 1, 2**31, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, float("nan"), float("inf"),
                "", "x" * 300, "é✓\u202e", "<script>", "[/bold]", b"\x00\xff", [], {}, [1, [2, [3]]], {"a": {"b": None}}]


def valid_header(rng: random.Random, mtype: str | None = None) -> dict:
    """A message of the wire format v1, as the publisher would build it (random but valid)."""
    from auflow.engine.wire import format as wire

    cam = rng.choice(["cam1", "cam10", "a", "10.0.0.5_554_live", "é"])
    sid = rng.choice(["s1", "s2", "0123456789ab"])
    mtype = mtype or rng.choice(TYPES)
    if mtype == "result":
        face = {"track": rng.randint(-1, 5), "bbox": [1.0, 2.0, 30.5, 40.5], "score": 0.9, "kps": [[1.0, 2.0]] * 5,
                "au": {"AU01": rng.random(), "AU05": None}, "expr": {"neutral": rng.random(), "happiness": None}}
        return {"v": 1, "type": "result", "cam": cam, "sid": sid, "t_publish_ns": time.time_ns(), "seq": rng.randint(0, 50),
                "frame": rng.randint(0, 100), "pts": rng.choice([None, 1000]), "time_base": [1, 25],
                "t_capture_ns": time.time_ns(), "latency_ms": {"total": 3.5},
                "models": {"au": {"name": "me_graphau", "kind": "distilled"}}, "faces": [face] * rng.randint(0, 3)}
    if mtype == "window":
        return wire.window_message(cam, sid, 1, 0, 7, {"neutral": 0.5})
    if mtype == "status":
        return wire.status_message(cam, sid, "live", 25.0, 24.0, 0, 0, {"frames": 1}, rng.randint(-1, 50))
    return wire.eos_message(cam, sid, "end", rng.randint(-1, 50))


def _pack(obj) -> bytes:
    try:
        return msgpack.packb(obj, use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        return msgpack.packb(str(obj), use_bin_type=True)


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:  # truncate
            del b[rng.randrange(len(b)):]
        elif op == 1 and b:  # flip bits
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:  # insert random bytes
            i = rng.randint(0, len(b))
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and b:  # overwrite with a msgpack prefix that claims a huge size
            i = rng.randrange(len(b))
            b[i:i + 5] = rng.choice([b"\xdb\xff\xff\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                                     b"\xc6\xff\xff\xff\xff", b"\xc9\x7f\xff\xff\xff"])
        elif op == 4 and b:  # delete a span
            i = rng.randrange(len(b))
            del b[i:i + rng.randint(1, 32)]
        else:  # duplicate a span
            i = rng.randrange(len(b) or 1)
            b[i:i] = b[i:i + rng.randint(1, 64)]
    return bytes(b)


def wire_message(rng: random.Random) -> list[bytes]:
    """One multipart message: valid (about 1 in 6), or malformed in one of many ways."""
    kind = rng.randrange(12)
    h = valid_header(rng)
    topic = f"{h['type']}/{h['cam']}/".encode()
    if kind <= 1:
        return [topic, _pack(h)]
    if kind == 2:  # mutated bytes of a valid header
        return [topic, _mutate_bytes(rng, _pack(h))]
    if kind == 3:  # wrong types / missing keys / versions
        key = rng.choice(list(h))
        if rng.random() < 0.3:
            h.pop(key)
        else:
            h[key] = rng.choice(WEIRD_VALUES)
        if rng.random() < 0.3:
            h["v"] = rng.choice([0, 2, 99, -1, "1", 1.0, True, 2**63 - 1])
        return [topic, _pack(h)]
    if kind == 4:  # wrong number of frames
        n = rng.choice([0, 1, 3, 4, 7])
        return [topic, _pack(h), b"extra", b"more", b"", b"x", b"y"][:n] if n else [b""]
    if kind == 5:  # random bytes
        return [rng.randbytes(rng.randint(0, 40)), rng.randbytes(rng.randint(0, 400))]
    if kind == 6:  # a topic that does not match, is not UTF-8, or is huge
        return [rng.choice([b"\xff\xfe", b"result/other/", topic[:-1], b"x" * 10_000, b""]), _pack(h)]
    if kind == 7:  # msgpack of something that is not a map
        return [topic, _pack(rng.choice(WEIRD_VALUES))]
    if kind == 8:  # deep nesting, written byte by byte (msgpack's packer stops at 512 levels; a hostile one need not)
        depth = rng.choice([10, 200, 2000, 100_000])
        h["faces"] = "__DEEP__"
        nest = rng.choice([b"\x91", b"\x81\xa1k"])  # [x] or {"k": x}
        return [topic, _pack(h).replace(_pack("__DEEP__"), nest * depth + b"\xc0")]
    if kind == 9:  # large but legal: many faces / long strings
        h["junk"] = ["x" * 1000] * rng.randint(1, 500)
        return [topic, _pack(h)]
    if kind == 10:  # a map with non-string keys
        h.update({1: "a", None: 2, 2.5: [1]} if rng.random() < 0.5 else {b"k": 1})
        return [topic, _pack(h)]
    # truncated msgpack
    body = _pack(h)
    return [topic, body[: rng.randrange(max(len(body), 1))]]


def check_decoded(header: dict) -> None:
    """What every consumer does with a decoded header must not raise: gap tracking, the subscribe CLI's
    table and JSON line, the dashboard's JSON."""
    from auflow.engine.cli.subscribe_cmd import _table, json_line
    from auflow.engine.wire.subscriber import GapTracker
    from rich.console import Console

    GapTracker().update(header)
    json_line(header)
    Console(file=io.StringIO(), width=200).print(_table({str(header.get("cam")): header}, {}, {str(header.get("cam")): header}))


# ---------------------------------------------------------------------------------------------
# configs and CLI option values

SPECIALS = ["&a ", "*a", "!!python/object/apply:os.system ['true']", "!!binary x", "{", "}", "[", "]", ": ", "- ",
            "\t", "%YAML 1.1\n", "---\n", "...\n", "? ", "|\n", ">\n", "'", '"', "\\", "\x00", "\xff", "\u202e",
            "1e999", "0x1F", "null", "~", "yes", "on", "<<: *a", "!!set {a}", "!!timestamp x", "&b [*b]", "\r\n"]


def _config_keys() -> list[str]:
    from auflow.engine.config import RunConfig

    out: list[str] = []

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            out.append(prefix + k)
            if isinstance(v, dict):
                walk(v, prefix + k + ".")

    walk(RunConfig().model_dump(mode="json"), "")
    return out


def config_text(rng: random.Random, seeds: list[str]) -> bytes:
    """A config document: a mutated real one, a structured one with odd values, or a pathological one."""
    kind = rng.randrange(6)
    if kind <= 1:
        lines = rng.choice(seeds).splitlines(keepends=True)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(lines) or 1)
            if lines and rng.random() < 0.3:
                del lines[i]
            else:
                pos = rng.randint(0, len(lines[i]) if lines else 0)
                line = lines[i] if lines else ""
                lines[i:i + 1] = [line[:pos] + rng.choice(SPECIALS) + line[pos:]]
        return "".join(lines).encode("utf-8", "surrogatepass")
    if kind == 2:
        return _mutate_bytes(rng, rng.choice(seeds).encode())
    if kind == 3:
        import yaml

        tree: dict = {}
        for key in rng.sample(CONFIG_KEYS, rng.randint(1, 6)):
            node = tree
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {}) if isinstance(node.get(p, {}), dict) else {}
            node[parts[-1]] = rng.choice([v for v in WEIRD_VALUES if not isinstance(v, bytes)] + [-3, 0.0, "tcp://0.0.0.0:99999"])
        try:
            return yaml.safe_dump(tree, allow_unicode=True).encode()
        except (ValueError, yaml.YAMLError):
            return b"{}"
    if kind == 4:
        n = rng.choice([50, 1000, 5000])
        return rng.choice([b"[" * n + b"]" * n, b"a: " + b"{b: " * n + b"1" + b"}" * n,
                           b"a: &a [" + b"*a, " * n + b"]", "a: \"" .encode() + ("é" * n).encode() + b"\""])
    return rng.randbytes(rng.randint(0, 300))


def override_item(rng: random.Random) -> str:
    key = rng.choice(CONFIG_KEYS + ["", "a.b", "analyzer.models.0.name", "sinks.5.name", "source..queue", "x" * 300])
    value = rng.choice(["", "-3", "1e999", "[", "{a: 1}", "null", "tcp://0.0.0.0:99999", "!!python/object:os.system",
                        "\x00", "é", "[/bold]", "&a [*a]", str(rng.randint(-10**12, 10**12)), rng.choice(SPECIALS)])
    sep = rng.choice(["=", "=", "=", "", "=="])
    return f"{key}{sep}{value}"


def cli_args(rng: random.Random) -> list[str]:
    """Arguments for `auflow run <missing file>` / `auflow config show`: random option values."""
    args = ["run", "/nonexistent/auflow-fuzz.mp4"] if rng.random() < 0.6 else ["config", "show"]
    for _ in range(rng.randint(1, 4)):
        opt = rng.choice(["--set", "--set", "--publish", "--device", "--wait-subscribers", "--out"])
        if args[0] == "config" and opt != "--set":
            opt = "--set"
        if opt == "--set":
            args += ["--set", override_item(rng)]
        elif opt == "--publish":
            args += [opt, rng.choice(["none", "tcp://0.0.0.0:99999", "tcp://*:", "udp://x:1", "tcp://127.0.0.1:*",
                                      "ipc://", "tcp://[::1]:5555", "tcp://h:0", "tcp://" + "a" * 300 + ":1",
                                      "tcp://127.0.0.1:5555", rng.choice(SPECIALS)])]
        elif opt == "--device":
            args += [opt, rng.choice(["cpu", "cuda", "cuda:99", "auto", "", "gpu", "[/x]", "\u202e", "cuda:-1"])]
        elif opt == "--wait-subscribers":
            args += [opt, rng.choice(["-1", "0", "3", "x", "1e3", str(2**40)])]
        else:
            args += [opt, rng.choice(["/dev/null/x", "", "é dir", "a" * 300])]
    return args


# ---------------------------------------------------------------------------------------------
# source URIs and file names

def uri(rng: random.Random) -> tuple[str, str | None]:
    """A source argument and the secret in it (None when it holds none)."""
    user = rng.choice(["admin", "", "ü", "a:b", "x@y", "%40"])
    pw = "PW" + "".join(rng.choice(string.ascii_letters + string.digits + "!$&'()*+,;=-._~%@:/?#[] ") for _ in range(rng.randint(1, 12)))
    host = rng.choice(["127.0.0.1", "10.0.0.5", "[::1]", "cam.local", "", "é.example", "300.1.1.1", "h" * 300])
    port = rng.choice(["", ":554", ":0", ":99999", ":abc", ":"])
    path = rng.choice(["/live", "", "/a/../b", "/ spaces /x.mp4", "/" + "p" * 500, "/é✓", "/x?token=" + pw, "/%00"])
    scheme = rng.choice(["rtsp", "rtsps", "http", "https", "RTSP", "ftp", "file", "rtmp"])
    if rng.random() < 0.6:
        return f"{scheme}://{user}:{pw}@{host}{port}{path}", pw
    if path.startswith("/x?token="):
        return f"{scheme}://{host}{port}{path}", pw
    return rng.choice([f"{scheme}://{host}{port}{path}", path, "..", "../" * 20 + "x.mp4", "/dev/video99", "é.mp4",
                       "a" * 5000 + ".mp4", "x\x00y.mp4", "*.mp4", "[", "~/x.mp4", " ", "C:\\x.mp4"]), None


def file_name(rng: random.Random) -> str:
    return rng.choice(["a b.mp4", "é✓ 中文.mp4", "..mp4", "...", "-x.mp4", "--help.mp4", "x" * 250 + ".mp4", "[1].mp4",
                       "*.mp4", "a\u202eb.mp4", "rtsp:__x.mp4", " lead.mp4", "trail .mp4", "a%20b.mp4", "x.MP4",
                       "admin:PWsecret@host.mp4", "ü" * 60 + ".mp4", "\t.mp4"])


CONFIG_KEYS: list[str] = []


# ---------------------------------------------------------------------------------------------
# runners

class Hang(BaseException):
    """An input ran past ``--hang-s`` (raised by :func:`deadline`'s alarm). Not an Exception, so that
    the ``except Exception`` that counts a traceback never takes a hang for one."""


@contextlib.contextmanager
def deadline(seconds: float):
    def on_alarm(signum, frame):
        raise Hang

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Tally:
    """What the inputs of one step did: ``counts`` by outcome (accepted, refused, hangs, tracebacks, …), the
    slowest input, and examples of the findings."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.examples: list[str] = []
        self.slowest = 0.0

    @contextlib.contextmanager
    def timed(self, hang_s: float):
        """One input: timed, and counted as a hang when it runs past ``hang_s`` (the block is cut there)."""
        t0 = time.perf_counter()
        try:
            with deadline(hang_s):
                yield
        except Hang:
            self.counts["hangs"] += 1
        finally:
            self.slowest = max(self.slowest, time.perf_counter() - t0)

    def finding(self, kind: str, example: str, limit: int = 500) -> None:
        self.counts[kind] += 1
        self.examples.append(example[:limit])

    def report(self, digits: int = 1, **head) -> dict:
        return {**head, **self.counts, "slowest_ms": round(self.slowest * 1e3, digits), "examples": self.examples[:10]}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_decoder(n: int, rng: random.Random, hang_s: float) -> dict:
    from auflow.engine.errors import WireError
    from auflow.engine.wire.format import decode

    tally = Tally()
    for _ in range(n):
        frames = wire_message(rng)
        tolerant = rng.random() < 0.5
        with tally.timed(hang_s):
            try:
                check_decoded(decode(frames, tolerant=tolerant))
                tally.counts["accepted"] += 1
            except WireError:
                tally.counts["refused"] += 1
            except Exception as e:  # noqa: BLE001 - the finding
                tally.finding("tracebacks", f"{type(e).__name__}: {e} <- {[f[:80] for f in frames]!r}")
    return tally.report(2, messages=n)


def run_subscriber(n: int, rng: random.Random) -> dict:
    """``n`` messages over ZeroMQ into one Subscriber: received + skipped == sent, alive, RSS growth."""
    import zmq
    from auflow.engine.wire.subscriber import Subscriber

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(f"tcp://127.0.0.1:{port}", hwm=0, timeout_s=5.0)
    marker = [b"status/fuzz/", msgpack.packb(valid_header(rng, "status") | {"cam": "fuzz"})]
    while True:  # PUB/SUB: wait until the subscription has arrived
        pub.send_multipart(marker)
        if sub.recv(0.1) is not None:
            break
    got = {"received": 0}
    errors: list[str] = []
    done = threading.Event()

    def consume():
        try:
            while not done.is_set() or sub._socket.poll(0):
                if sub.recv(0.2) is not None:
                    got["received"] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")

    rss0 = None
    sent = 0
    t = threading.Thread(target=consume)
    t.start()
    t0 = time.perf_counter()
    for i in range(n):
        frames = wire_message(rng)
        if any(len(f) > 4 * 2**20 for f in frames):
            continue  # an oversize frame drops the connection (MAXMSGSIZE): measured on its own below
        pub.send_multipart(frames)
        sent += 1
        if sent % 1000 == 0:  # paced: the socket's queue stays short, so RSS measures the subscriber itself
            wait_until = time.monotonic() + 30
            while got["received"] + sub.garbage < sent and time.monotonic() < wait_until:
                time.sleep(0.002)
        if i == min(5000, n // 10):
            rss0 = rss_mb()
    pub.send_multipart(marker)
    sent += 1
    deadline_t = time.monotonic() + 60
    while time.monotonic() < deadline_t and got["received"] + sub.garbage < sent:
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    rss1 = rss_mb()
    done.set()
    t.join(10)
    result = {"sent": sent, "received": got["received"], "skipped": sub.garbage, "wall_s": round(wall, 2),
              "accounted": got["received"] + sub.garbage == sent, "alive": not t.is_alive() and not errors and not sub.closed,
              "consumer_errors": errors[:5], "rss_mb_after_warmup": round(rss0 or 0, 1), "rss_mb_end": round(rss1, 1),
              "gap_sessions_kept": len(sub.gaps.sessions), "gap_sessions_forgotten": sub.gaps.forgotten}
    # an oversize frame: ZeroMQ drops that connection; the subscriber reconnects and reads on
    pub.send_multipart([b"result/big/", b"\x00" * (5 * 2**20)])
    t1 = time.monotonic()
    back = False
    while time.monotonic() - t1 < 30:
        pub.send_multipart(marker)
        if sub.recv(0.1) is not None:
            back = True
            break
    result["oversize_reconnect_s"] = round(time.monotonic() - t1, 2) if back else None
    result["reconnects"] = sub.reconnects
    sub.close()
    pub.close(0)
    ctx.term()
    return result


def run_subscribe_cli(n: int, rng: random.Random, table: bool) -> dict:
    """`auflow subscribe` (JSON lines or the table) on ``n`` mutated messages: exit 0, every valid one printed."""
    import subprocess

    import zmq
    from auflow.engine.errors import WireError
    from auflow.engine.wire.format import decode

    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    msgs, valid = [], 0
    while len(msgs) < n:
        frames = wire_message(rng)
        if any(len(f) > 4 * 2**20 for f in frames):
            continue
        msgs.append(frames)
        try:
            decode(frames, tolerant=True)
            valid += 1
        except WireError:
            pass
    cmd = [sys.executable, "-m", "auflow.engine.cli.main", "subscribe", f"tcp://127.0.0.1:{port}", "--timeout", "5",
           "--count", str(valid)]
    if not table:
        cmd.append("--json")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COLUMNS="200", NO_COLOR="1"))
    pub.setsockopt(zmq.RCVTIMEO, 60_000)
    pub.recv()  # its subscription
    for i, frames in enumerate(msgs):
        pub.send_multipart(frames)
        if i % 2000 == 0:
            time.sleep(0.01)
    out, err = proc.communicate(timeout=300)
    pub.close(0)
    ctx.term()
    lines = out.splitlines()
    skipped = next((int(w.split()[0]) for w in err.splitlines() if "malformed message(s) skipped" in w), 0)
    return {"mode": "table" if table else "json", "sent": n, "valid": valid, "exit": proc.returncode,
            "printed": len(lines) if not table else None, "skipped_reported": skipped,
            "traceback": "Traceback" in err, "stderr_tail": err[-300:] if proc.returncode else ""}


def run_configs(n: int, rng: random.Random, hang_s: float) -> dict:
    from auflow.engine.config import load_config
    from auflow.engine.errors import ConfigError

    seeds = [Path(p).read_text() for p in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))]
    tally, multiline = Tally(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        for _ in range(n):
            path.write_bytes(config_text(rng, seeds))
            overrides = [override_item(rng) for _ in range(rng.choice([0, 0, 1, 2]))]
            with tally.timed(hang_s):
                try:
                    load_config(path, overrides)
                    tally.counts["accepted"] += 1
                except ConfigError as e:
                    tally.counts["refused"] += 1
                    multiline += "\n" in str(e)
                except Exception as e:  # noqa: BLE001
                    tally.finding("tracebacks", f"{type(e).__name__}: {str(e)[:200]} <- {path.read_bytes()[:200]!r} {overrides!r}")
    return tally.report(configs=n, multi_line_errors=multiline)


def run_cli(n: int, rng: random.Random, hang_s: float) -> dict:
    from auflow.engine.cli.main import app
    from typer.testing import CliRunner

    runner, tally = CliRunner(), Tally()
    for _ in range(n):
        args, res = cli_args(rng), None
        with tally.timed(hang_s):
            res = runner.invoke(app, args, env={"COLUMNS": "400", "NO_COLOR": "1"})
        if res is None:  # a hang
            continue
        text = res.output
        clean = res.exception is None or isinstance(res.exception, SystemExit)
        error_lines = [ln for ln in text.splitlines() if ln.startswith("error: ")]
        usage = "Usage:" in text  # click's own usage error (a bad --wait-subscribers): exit 2, no traceback
        if not clean or "Traceback" in text:
            tally.finding("tracebacks", f"{args!r}: {res.exception!r}", 400)
        elif res.exit_code == 0:
            tally.counts["accepted"] += 1
        elif res.exit_code in (2, 3) and (usage or len(error_lines) == 1):
            tally.counts[f"exit_{res.exit_code}"] += 1
        else:
            tally.finding("unexpected", f"{args!r}: exit {res.exit_code}: {text[-300:]!r}")
    return tally.report(invocations=n)


def run_uris(n: int, rng: random.Random, hang_s: float) -> dict:
    import re

    from auflow.engine.errors import SourceError
    from auflow.engine.redaction import redact_text, redact_uri
    from auflow.engine.sources import expand_inputs, make_source
    from auflow.engine.sources.core import cam_id_from
    from auflow.engine.wire.format import topic

    tally = Tally()
    safe_cam = re.compile(r"^[A-Za-z0-9_.-]+$")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            u, pw = uri(rng) if i % 4 else (str(Path(tmp) / file_name(rng)), None)
            with tally.timed(hang_s):
                try:
                    cam = cam_id_from(u)
                    assert safe_cam.match(cam), f"camera id {cam!r} is not topic-safe"
                    topic("result", cam)
                    if pw:
                        assert pw not in redact_uri(u), f"password shown: {redact_uri(u)!r}"
                        # in free text a password ends at a space (it cannot be told from the words after it)
                        if not any(c.isspace() for c in pw):
                            shown = redact_text(f"error: {u}: cannot connect")
                            assert pw not in shown, f"password shown: {shown!r}"
                    try:
                        src = make_source(u)
                        assert pw is None or pw not in src.name
                        try:
                            expand_inputs([u])
                        except SourceError:
                            pass
                        tally.counts["accepted"] += 1
                    except SourceError as e:
                        assert "\n" not in str(e) and (pw is None or pw not in str(e)), str(e)
                        tally.counts["refused"] += 1
                except Exception as e:  # noqa: BLE001
                    tally.finding("tracebacks", f"{type(e).__name__}: {str(e)[:200]} <- {u[:200]!r}")
    return tally.report(uris=n)


def main() -> None:
    from common import machine, save

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wire", type=int, default=100_000, help="messages into the decoder, and into a live Subscriber")
    ap.add_argument("--subscribe-cli", type=int, default=20_000, help="messages into each `auflow subscribe` run (json, table)")
    ap.add_argument("--configs", type=int, default=10_000)
    ap.add_argument("--cli", type=int, default=10_000, help="`auflow run/config show` invocations with random option values")
    ap.add_argument("--uris", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--hang-s", type=float, default=10.0, help="an input that takes longer than this is a hang")
    ap.add_argument("--only", default="", help="comma-separated steps to run (decoder, subscriber, subscribe_cli_json, "
                    "subscribe_cli_table, configs, cli, uris); default all")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    logging_quiet()
    CONFIG_KEYS[:] = _config_keys()
    out: dict = {"machine": machine(), "seed": args.seed, "load_average_1min": [round(os.getloadavg()[0], 2)]}
    t0 = time.perf_counter()
    steps = [("decoder", lambda r: run_decoder(args.wire, r, args.hang_s)),
             ("subscriber", lambda r: run_subscriber(args.wire, r)),
             ("subscribe_cli_json", lambda r: run_subscribe_cli(args.subscribe_cli, r, table=False)),
             ("subscribe_cli_table", lambda r: run_subscribe_cli(args.subscribe_cli, r, table=True)),
             ("configs", lambda r: run_configs(args.configs, r, args.hang_s)),
             ("cli", lambda r: run_cli(args.cli, r, args.hang_s)),
             ("uris", lambda r: run_uris(args.uris, r, args.hang_s))]
    only = {x for x in args.only.split(",") if x}
    for i, (name, fn) in enumerate(steps):
        if only and name not in only:
            continue
        ts = time.perf_counter()
        out[name] = fn(random.Random(args.seed * 100 + i))
        out[name]["seconds"] = round(time.perf_counter() - ts, 1)
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "examples"}), flush=True)
        for ex in out[name].get("examples", []):
            print("   ", ex, flush=True)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    out["load_average_1min"].append(round(os.getloadavg()[0], 2))
    out["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    ran = [k for k, _ in steps if k in out]
    tracebacks = sum(out[k].get("tracebacks", 0) + out[k].get("unexpected", 0) for k in ran) + sum(
        out[k]["traceback"] or out[k]["exit"] != 0 for k in ("subscribe_cli_json", "subscribe_cli_table") if k in out)
    hangs = sum(out[k].get("hangs", 0) for k in ran)
    out["totals"] = {"tracebacks": tracebacks, "hangs": hangs}
    if "subscriber" in out:
        out["totals"]["subscriber_accounted"] = out["subscriber"]["accounted"] and out["subscriber"]["alive"]
    print("totals", json.dumps(out["totals"]))
    if not args.no_save:
        print("saved", save("fuzz", out))


def logging_quiet() -> None:
    import logging

    logging.basicConfig(level=logging.CRITICAL)
    logging.getLogger().setLevel(logging.CRITICAL)


if __name__ == "__main__":
    main()
