"""What the user sees while a command works, and what it produces.

Three audiences: a person at a terminal gets rich spinners and bars on stderr; a CI log (stderr is not a
terminal) gets one plain line per step and no control characters; `--quiet` gets nothing but results.
Results (a digest, a prediction) always go to stdout as plain text, so they can be piped.
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator

import click

from .settings import settings_of

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

Reporter = Callable[[str], None]


def _console() -> Console:
    # Made per call: tests and callers may swap sys.stderr, and rich binds to the stream it was given.
    # Imported here: rich costs a tenth of a second at start-up, and logs and --quiet never need it.
    from rich.console import Console

    return Console(file=sys.stderr)


def _bar() -> Progress:
    """A byte-counting bar on stderr."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=_console(), transient=True)


def is_quiet(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("quiet"))


def is_debug(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug"))


def warn(message: str, ctx: click.Context | None = None) -> None:
    """One `warning: …` line on stderr (not with --quiet): something accepted that the user should know."""
    if not is_quiet(ctx):
        click.echo(f"warning: {message}", err=True)


def _fancy() -> bool:
    if not settings_of().terminal_forced and not _is_tty(sys.stderr):
        return False  # the common case in CI and hooks, answered without loading rich
    return _console().is_terminal


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_printer(ctx: click.Context | None = None) -> Reporter:
    """A function that reports one step of work: a dim bullet on a terminal, a plain line in a log."""
    quiet = is_quiet(ctx)

    def show(message: str) -> None:
        if quiet:
            return
        if _fancy():
            _console().print(f"[dim]•[/dim] {message}", highlight=False)
        else:
            print(f"• {message}", file=sys.stderr, flush=True)

    return show


@contextmanager
def spinner(message: str, ctx: click.Context | None = None) -> Iterator[Reporter]:
    """Show `message` with a spinner until the block ends; the yielded function updates the text.

    Outside a terminal the message is printed once, and updates are printed as they come.
    """
    if is_quiet(ctx):
        yield lambda _text: None
        return
    if not _fancy():
        print(f"• {message}", file=sys.stderr, flush=True)
        yield lambda text: None  # a log keeps one line per step; the spinner's updates are for people
        return
    with _console().status(message) as status:
        yield lambda text: status.update(f"{message} [dim]({text})[/dim]")


@contextmanager
def transfer_bar(description: str, total: int | None, ctx: click.Context | None = None) -> Iterator[Callable[[int], None]]:
    """A byte-counting bar for downloads and uploads; the yielded function adds bytes done.

    In a log only the start and the total are printed, never a line per chunk.
    """
    if is_quiet(ctx):
        yield lambda _n: None
        return
    if not _fancy():
        size = f" ({total / 1e6:.1f} MB)" if total else ""
        print(f"• {description}{size}", file=sys.stderr, flush=True)
        yield lambda _n: None
        return
    with _bar() as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@contextmanager
def blob_progress(description: str, ctx: click.Context | None = None) -> Iterator[Callable[[str, int, int], None]]:
    """One bar for many blobs moving at once (threads call it): the yielded function takes
    (digest, bytes done, bytes total), the shape registry transfers report. The bar appears with the
    first report, so nothing flashes when there is nothing to move; logs and --quiet get no bar."""
    if is_quiet(ctx) or not _fancy():
        yield lambda _digest, _done, _total: None
        return
    bar = _bar()
    task, done, totals, lock = None, {}, {}, threading.Lock()

    def update(digest: str, n: int, total: int) -> None:
        nonlocal task
        with lock:
            if task is None:
                bar.start()
                task = bar.add_task(description, total=0)
            done[digest], totals[digest] = n, total
            bar.update(task, completed=sum(done.values()), total=sum(totals.values()))

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def result(text: str) -> None:
    """What a command produces (a digest, a prediction): always on stdout, always plain."""
    click.echo(text)
