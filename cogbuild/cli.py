"""The `cogbuild` command line: a click group whose commands live in cogbuild/commands/."""

from __future__ import annotations

import importlib
import os
import sys

import click

from . import __version__, interrupts
from .errors import CogbuildError
from .layers.deb import DebError
from .layers.standalone import TarballError
from .layers.tree import TreeError
from .layers.wheel import WheelError
from .registry.errors import OCIError

# One module per command in cogbuild/commands/, each exposing `command`; listed in `--help` order.
COMMAND_NAMES = ("init", "lock", "build", "push", "pull", "show", "predict", "train", "serve", "run", "login")
# Failures whose message is meant for the user: printed as one sentence, no traceback unless --debug.
USER_ERRORS = (CogbuildError, OCIError, DebError, WheelError, TreeError, TarballError)


class _Group(click.Group):
    """Loads a command's module only when that command runs (start-up stays fast), and turns
    user-facing errors into one sentence on stderr and their exit code; --debug keeps tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_NAMES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMAND_NAMES:
            return None
        return importlib.import_module(f"{__package__}.commands.{name}").command

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own usage errors and exits already speak for themselves
        except USER_ERRORS as exc:
            if _debug(ctx):
                raise
            details = getattr(exc, "details", "")  # e.g. a model's output, shown above the sentence
            if details and not (ctx.obj or {}).get("quiet"):
                click.echo(details.rstrip("\n")[-5000:], err=True)
            click.echo(f"error: {exc}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (interrupts.py)
            interrupts.exit_interrupted()
        except Exception as exc:  # a bug of ours: one line here, the traceback with --debug
            if _debug(ctx):
                raise
            click.echo(f"error: internal error ({exc.__class__.__name__}: {exc}); rerun with --debug "
                       "for the traceback", err=True)
            sys.exit(70)


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug")) or bool(os.environ.get("COGBUILD_DEBUG"))


EPILOG = """\b
Exit codes:
  0    success
  1    the work failed (build, registry, container, prediction)
  2    bad input: a flag, a file, cog.yaml, an image reference or a model input
  70   internal error (a bug; --debug shows the traceback)
  130  interrupted (Ctrl-C or SIGTERM; containers are removed first)
\b
Environment: COGBUILD_STORE (local image store), COGBUILD_CACHE (downloads and layers),
COGBUILD_DEBUG=1 (same as --debug), COGBUILD_READY_TIMEOUT (seconds to wait for a model's setup),
COGBUILD_RUNTIME (podman, docker, runc or crun for predict and run).
Run `cogbuild COMMAND --help` for examples.
"""


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, prog_name="cogbuild")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print only results (stdout) and errors, no progress.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """Build reproducible OCI images of Cog models without a Docker daemon, and run them anywhere.

    \b
    Quick start:
      cogbuild init my-model && cd my-model
      cogbuild predict -i text=you            # on this host, no image
      cogbuild build -t my-model:dev          # an OCI image in the local store
      cogbuild predict my-model:dev -i text=you
      cogbuild push 127.0.0.1:5000/me/my-model:v1
    """
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, quiet=quiet)


def main() -> None:
    cli(prog_name="cogbuild")


if __name__ == "__main__":
    main()
