"""Progress and result output: rich on a terminal, plain lines otherwise, nothing but results with --quiet."""

from __future__ import annotations

import sys

import click
from rich.console import Console

_stderr = Console(stderr=True)


def progress_printer(ctx: click.Context | None = None):
    quiet = bool(ctx and ctx.obj and ctx.obj.get("quiet"))

    def show(message: str) -> None:
        if quiet:
            return
        if _stderr.is_terminal:
            _stderr.print(f"[dim]•[/dim] {message}")
        else:
            print(f"• {message}", file=sys.stderr, flush=True)

    return show


def result(text: str) -> None:
    """What a command produces (a digest, a prediction): always on stdout, always plain."""
    click.echo(text)
