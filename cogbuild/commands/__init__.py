"""One module per CLI command; COMMANDS lists them in the order `cogbuild --help` shows."""

from __future__ import annotations

import importlib

import click

_NAMES = ["init", "lock", "build", "push", "pull", "show", "predict", "serve", "run", "login"]


def _load() -> list[click.Command]:
    commands = []
    for name in _NAMES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue  # not written yet
        commands.append(module.command)
    return commands


COMMANDS = _load()
