"""The `cogbuild` command line: a click group whose commands live in cogbuild/commands/."""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__, interrupts, settings
from .errors import CogbuildError
from .environment import as_environment_failure

# One module per command in cogbuild/commands/, each exposing `command`; listed in `--help` order.
COMMAND_NAMES = ("init", "lock", "build", "push", "pull", "show", "predict", "train", "serve", "run", "deploy",
                 "login", "keygen", "verify")
# The first sentence of each command's docstring, so `cogbuild --help` imports no command module (a test
# keeps them equal); a command missing here is loaded to ask it.
SUMMARIES = {
    "init": "Create a working model template in DIRECTORY: cog.yaml, predict.py and .cogignore.",
    "lock": "Resolve and pin every input (Debian packages, wheels, runtime) in cog.lock; run nothing.",
    "build": "Build the model in DIRECTORY into an OCI image, without Docker; print its digest.",
    "push": "Build the model in the current directory and push it to REF; print REF@sha256:… (its version ID).",
    "pull": "Fetch REF into the local store; print REF@sha256:….",
    "show": "Describe TARGET: a model directory, an image in the store, a layout, an archive or a registry REF.",
    "predict": "Run one prediction with the model in DIR (on this host) or IMAGE (in a container).",
    "train": "Run one training with the `train:` entry of the model in DIR (on this host) or IMAGE (in a "
             "container).",
    "serve": "Serve the Cog HTTP API for the model in DIRECTORY until interrupted.",
    "run": "Start IMAGE and serve the Cog HTTP API on PORT until interrupted (Ctrl-C).",
    "deploy": "Print manifests that run a model image on a cluster (Kubernetes).",
    "login": "Log in to REGISTRY (default docker.io); credentials go to ~/.docker/config.json or its credsStore.",
    "keygen": "Write a signing key pair: PREFIX.key (encrypted with a passphrase) and PREFIX.pub.",
    "verify": "Check REF's signatures against a key (--key), and that its project rebuilds to the same digest "
              "(--rebuild).",
}
# Failures whose message is meant for the user: one family (layers/errors.py), printed as one sentence.
USER_ERRORS = (CogbuildError,)


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, CogbuildError)


# First words that stay capitalized in the one message style: names, not sentence starts.
_PROPER_NOUNS = {"Debian", "Python", "CPython", "PyPI", "Cog", "Docker", "NVIDIA", "CUDA", "OCI", "HTTP"}


def sentence(message: str) -> str:
    """A message in the CLI's one style, after "error: ": lower-case start, no closing period."""
    first = message.split(" ", 1)[0]
    if first.istitle() and first.isalpha() and first not in _PROPER_NOUNS:
        message = message[0].lower() + message[1:]
    return message[:-1] if message.endswith(".") and not message.endswith("..") else message


class _Group(click.Group):
    """Loads a command's module only when that command runs (start-up stays fast), and turns
    user-facing errors into one sentence on stderr and their exit code; --debug keeps tracebacks."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMAND_NAMES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMAND_NAMES:
            return None
        return importlib.import_module(f"{__package__}.commands.{name}").command

    def _summary_command(self, ctx: click.Context, name: str) -> click.Command:
        """A stand-in carrying the command's summary, or the command itself when SUMMARIES lacks it."""
        if name in SUMMARIES:
            return click.Command(name, help=SUMMARIES[name])
        command = self.get_command(ctx, name)
        assert command is not None, name  # every name in COMMAND_NAMES has a module
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(map(len, COMMAND_NAMES))
        rows = [(name, self._summary_command(ctx, name).get_short_help_str(limit)) for name in COMMAND_NAMES]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own usage errors and exits already speak for themselves
        except Exception as exc:
            if _debug(ctx):
                raise
            exc = as_environment_failure(exc) or exc
            if not is_user_error(exc):  # a bug of ours: one line here, the traceback with --debug
                click.echo(f"error: internal error ({exc.__class__.__name__}: {exc}); rerun with --debug "
                           "for the traceback", err=True)
                sys.exit(70)
            details = getattr(exc, "details", "")  # e.g. a model's output, shown above the sentence
            if details and not (ctx.obj or {}).get("quiet"):
                click.echo(details.rstrip("\n")[-5000:], err=True)
            click.echo(f"error: {exc if getattr(exc, 'verbatim', False) else sentence(str(exc))}", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (interrupts.py)
            interrupts.exit_interrupted()


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))


EPILOG = f"""\b
Exit codes:
  0    success
  1    the work failed (build, registry, container, prediction), or the machine or network is not as
       needed (the message says what to do)
  2    bad input: a flag, a file, cog.yaml, an image reference, a model input or an environment variable
  70   internal error (a bug; --debug shows the traceback)
  130  interrupted (Ctrl-C or SIGTERM; containers are removed first)
\b
Environment:
{settings.help_text()}
\b
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
    read = settings.read_environment()  # the one reading; commands take it from ctx.obj (settings_of)
    ctx.obj.update(debug=debug or read.debug, quiet=quiet, settings=read)


def main() -> None:
    cli(prog_name="cogbuild")


if __name__ == "__main__":
    main()
