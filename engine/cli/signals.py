"""Signals and exit status of the ``auflow`` command: the first SIGINT/SIGTERM ends a run cleanly, a
second aborts; a command that is over exits with the status it chose (0, 2, 3, 130), never -2."""

from __future__ import annotations

import signal
import sys

from .common import console


def install_signal_handlers(pipe) -> None:
    """First SIGINT/SIGTERM: end streams cleanly (sinks flushed, eos published). Second: abort."""
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] > 1:
            raise KeyboardInterrupt
        pipe.stop()
        text = f"{signal.Signals(signum).name}: finishing what is in flight (again to abort)"
        try:
            console.print(f"[yellow]{text}[/]", emoji=False)
        except Exception:  # noqa: BLE001 - the signal landed inside one of rich's own (lazy) imports: say it plainly
            sys.stderr.write(text + "\n")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _exit_ignoring_signals(code) -> None:
    """The command is over and its outputs are complete: a Ctrl-C or SIGTERM landing while the interpreter
    shuts down (atexit handlers) must not turn that into a crash (exit -2 and a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _forget_interrupt_in_embedded_code()
    sys.exit(code)


def _forget_interrupt_in_embedded_code() -> None:
    """A Ctrl-C that lands while a C extension runs Python through ``PyRun_String`` (pybind11's ``py::exec``,
    as torch's import does) sets CPython's ``_Py_UnhandledKeyboardInterrupt`` even though that
    KeyboardInterrupt is caught: the interpreter then ends by killing itself with SIGINT (exit -2, the
    status we chose lost). The interrupt was handled here, so the flag is cleared (CPython only; elsewhere
    nothing happens)."""
    try:
        import ctypes

        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (ImportError, AttributeError, ValueError, OSError):
        pass


__all__ = ["install_signal_handlers"]
