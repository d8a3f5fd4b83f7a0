"""What every ``auflow`` command shares: the two consoles, logging, ``--config``/``--set``, and
:func:`guarded` (an :class:`AuflowError` becomes one red line and its exit status)."""

from __future__ import annotations

import logging

import typer
from rich.console import Console
from rich.logging import RichHandler

from ..configfile import parse_override
from ..errors import AuflowError

console = Console(stderr=True)
out = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config (default: the packaged configs/default.yaml)")
SetOpt = typer.Option(None, "--set", "-s", help="override a config value: --set analyzer.batch=32 (repeatable)")


def setup_logging(verbose: bool) -> None:
    from ..redaction import RedactingFilter

    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.addFilter(RedactingFilter())  # a camera's password never reaches the terminal or a log file
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> None:
    from rich.text import Text

    from ..redaction import redact_text

    # as Text, not markup: a message quoting "[/x]" from a config must print, not raise rich's MarkupError
    console.print(Text.assemble(("error:", "bold red"), " ", redact_text(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn):
    """Turn AuflowError into one clear line and its exit status."""
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except AuflowError as e:
            fail(str(e), e.exit_code)

    return wrapper


__all__ = ["ConfigOpt", "SetOpt", "console", "deprecated_options", "fail", "guarded", "out", "setup_logging"]


def deprecated_options(items: list[str]) -> list[str]:
    """``--option k=v`` (deprecated, on ``distill`` and ``export``) as the ``--set options.k=v`` it stands for,
    with one line on stderr saying so."""
    if not items:
        return []
    for item in items:
        parse_override(item)  # the same one-line error for a malformed pair
    console.print("[yellow]--option is deprecated: write --set options.KEY=VALUE[/] (read as "
                  + " ".join(f"--set options.{i}" for i in items) + ")", highlight=False)
    return [f"options.{i}" for i in items]
