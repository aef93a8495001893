"""Consoles, the one-line error rule and signal handling for commands; no command imports the CLI module.

Bad input (an :class:`EdgeXcnnError`) ends in one ``error:`` line and exit 2; anything else is a bug:
one ``internal error`` line and exit 1; ``--debug`` shows the traceback instead. SIGINT and SIGTERM
end a command through :class:`Interrupted`, after its outputs are finished: exit 130 and 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from edge_xcnn.errors import EdgeXcnnError

# Piped or captured output has no terminal to measure: rich would assume 80 columns and cut table cells
# (the bench table's "pytor…"); our tables are laid out for 100.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 100
console = Console(width=_WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() or os.environ.get("COLUMNS") else 100)
state = {"debug": False}
T = TypeVar("T")


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; outputs were finished (or none had been opened yet)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def error_line(message: str) -> None:
    """The one line a user sees for bad input."""
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)


def guarded(job: Callable[[], T]) -> T:
    """Run a command body; turn exceptions into one line and an exit code (tracebacks with ``--debug``)."""
    try:
        return job()
    except Interrupted as e:
        err_console.print(f"interrupted ({e}): outputs finished", highlight=False)
        raise typer.Exit(e.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted (SIGINT)", highlight=False)
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except EdgeXcnnError as e:
        if state["debug"]:
            raise
        error_line(str(e))
        raise typer.Exit(2) from None
    except Exception as e:
        if state["debug"]:
            raise
        err_console.print(
            f"[red]internal error:[/red] {type(e).__name__}: {escape(str(e))} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


@contextlib.contextmanager
def stop_signals(on_signal: Callable[[int], bool]) -> Iterator[None]:
    """Route SIGINT and SIGTERM to ``on_signal(signum)`` while the block runs (main thread only).

    ``on_signal`` returns True when it took care of the signal (e.g. asked a runner to stop and finish
    its outputs); otherwise, or on a second signal, :class:`Interrupted` is raised where the main thread is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        first = not seen
        seen.append(signum)
        if first and on_signal(signum):
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
