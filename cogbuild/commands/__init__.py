"""One module per CLI command; COMMANDS lists them in the order `cogbuild --help` shows."""

from __future__ import annotations

import importlib

import click

_NAMES = ["init", "lock", "build", "push", "pull", "show", "predict", "serve", "run", "login"]


def _load() -> list[click.Command]:
    return [importlib.import_module(f"{__name__}.{name}").command for name in _NAMES]


COMMANDS = _load()
