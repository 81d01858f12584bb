"""The `cogbuild` command line: a click group whose commands live in cogbuild/commands/."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import CogbuildError


class _Group(click.Group):
    """Turns CogbuildError into one sentence on stderr and its exit code; --debug keeps tracebacks."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except CogbuildError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cogbuild")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print only results, no progress.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Build reproducible OCI images of Cog models without a Docker daemon."""
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, quiet=quiet)


def _register() -> None:
    # Each module defines one click command named after its file.
    from .commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="cogbuild")


if __name__ == "__main__":
    main()
