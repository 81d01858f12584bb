"""Every environment variable cogbuild reads, in one table, and the one object that holds them.

`Settings.from_environ` runs once, in the CLI's top-level group; commands pass the values down, and no other
module of cogbuild, layers or registry reads the environment (a test keeps it so). `cogbuild --help` and
docs/cli.md list the variables from VARIABLES (a test keeps the code, this table and the docs in step).
Values that need parsing are kept as text and parsed by the command that uses them, so a bad one is a
usage error naming the variable for that command only, not for `--help` or the others."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Collection, Mapping

from .errors import UsageError

if TYPE_CHECKING:
    import click

CACHE_REPO_ENV = "COGBUILD_CACHE_REPO"  # what --cache defaults to

# name -> what it sets; the order is the order `--help` prints them in.
VARIABLES: dict[str, str] = {
    "COGBUILD_STORE": "the local image store (default ~/.local/share/cogbuild/store)",
    "COGBUILD_CACHE": "downloads, layers and unpacked images (default ~/.cache/cogbuild)",
    "COGBUILD_DEBUG": "1 shows tracebacks, like --debug",
    "COGBUILD_READY_TIMEOUT": "seconds to wait for a model's setup (default 300)",
    "COGBUILD_RUNTIME": "podman, docker, containerd, runc or crun for predict, train and run",
    "COGBUILD_PYTHON_PROVIDER": "a JSON manifest (URL or file) of standalone CPythons",
    "COGBUILD_CPU_INDEX_URL": "an index of torch's CPU-only wheels (default PyTorch's)",
    "COGBUILD_CPU_FIND_LINKS": "directories or pages of CPU-only wheels (PATH-style list)",
    "COGBUILD_PIP_PROXY": "0 lets pip read indexes without the metadata proxy",
    "COGBUILD_LOCK_RESOLVER": "pip makes lock resolve with pip alone (default uv, where it can)",
    "COGBUILD_DEBIAN_IGNORE_VALID_UNTIL": "1 accepts an expired Debian Release file",
    "COGBUILD_DEBIAN_SNAPSHOT": "where a .deb the archive dropped is looked for, or off",
    "COGBUILD_CACHE_REPO": "a registry repository shared as a build cache (like --cache)",
    "COGBUILD_SIGN_KEY": "push: the cosign key file to sign with",
    "COGBUILD_SIGN_PASSWORD": "push: the signing key's passphrase (or COSIGN_PASSWORD)",
    "COGBUILD_VERIFY_KEY": "pull, predict and run use registry images signed by this key only",
    "SOURCE_DATE_EPOCH": "seconds since 1970 for every timestamp in an image (default 0)",
}

DEFAULT_READY_TIMEOUT = 300.0
DEFAULT_DEBIAN_SNAPSHOT = "https://snapshot.debian.org"
_YES = ("1", "true", "yes")
# Variables that make rich treat stderr as a terminal even when it is not one.
TERMINAL_OVERRIDES = ("TTY_COMPATIBLE", "FORCE_COLOR")


@dataclass(frozen=True)
class Settings:
    """What the environment asks of cogbuild, read once. Paths are resolved; values a command may reject
    (`*_text`) stay text until that command asks for them."""

    cache_root: Path
    store_root: Path
    debug: bool = False
    ready_timeout_text: str = ""
    source_date_epoch_text: str = ""
    runtime: str | None = None
    python_provider: str = ""
    cpu_index_url: str | None = None  # None: not set (PyTorch's CPU index, unless find-links are given)
    cpu_find_links: tuple[str, ...] = ()
    pip_proxy: bool = True
    lock_resolver_text: str = "uv"  # uv (where it can) or pip
    debian_check_valid_until: bool = True
    debian_snapshot: str | None = DEFAULT_DEBIAN_SNAPSHOT  # a snapshot service's base URL; None: off
    cache_repo: str | None = None
    sign_key: Path | None = None
    sign_password: str | None = None  # None: not set (ask on a terminal); "" is an empty passphrase
    verify_key: Path | None = None
    terminal_forced: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        def text(name: str) -> str | None:
            return environ.get(name) or None

        home = Path(environ.get("HOME") or os.path.expanduser("~"))
        cache_base = Path(text("XDG_CACHE_HOME") or home / ".cache")
        data_base = Path(text("XDG_DATA_HOME") or home / ".local" / "share")
        password = environ.get("COGBUILD_SIGN_PASSWORD", environ.get("COSIGN_PASSWORD"))
        snapshot = environ.get("COGBUILD_DEBIAN_SNAPSHOT", DEFAULT_DEBIAN_SNAPSHOT).rstrip("/")
        return cls(
            cache_root=Path(text("COGBUILD_CACHE") or cache_base / "cogbuild"),
            store_root=Path(text("COGBUILD_STORE") or data_base / "cogbuild" / "store"),
            debug=bool(text("COGBUILD_DEBUG")),
            ready_timeout_text=environ.get("COGBUILD_READY_TIMEOUT", ""),
            source_date_epoch_text=environ.get("SOURCE_DATE_EPOCH", ""),
            runtime=text("COGBUILD_RUNTIME"),
            python_provider=environ.get("COGBUILD_PYTHON_PROVIDER", "").strip(),
            cpu_index_url=environ.get("COGBUILD_CPU_INDEX_URL"),
            cpu_find_links=tuple(p for p in environ.get("COGBUILD_CPU_FIND_LINKS", "").split(os.pathsep) if p),
            pip_proxy=environ.get("COGBUILD_PIP_PROXY") != "0",
            lock_resolver_text=environ.get("COGBUILD_LOCK_RESOLVER", "uv"),
            debian_check_valid_until=environ.get("COGBUILD_DEBIAN_IGNORE_VALID_UNTIL", "") not in _YES,
            debian_snapshot=None if snapshot in ("", "off") else snapshot,
            cache_repo=text("COGBUILD_CACHE_REPO"),
            sign_key=Path(environ["COGBUILD_SIGN_KEY"]) if text("COGBUILD_SIGN_KEY") else None,
            sign_password=password,
            verify_key=Path(environ["COGBUILD_VERIFY_KEY"]) if text("COGBUILD_VERIFY_KEY") else None,
            terminal_forced=any(name in environ for name in TERMINAL_OVERRIDES),
        )

    def ready_timeout(self) -> float:
        """COGBUILD_READY_TIMEOUT: seconds to wait for a model's setup, a positive number."""
        return positive_seconds("COGBUILD_READY_TIMEOUT", self.ready_timeout_text, DEFAULT_READY_TIMEOUT)

    def runtime_choice(self, choices: Collection[str]) -> str | None:
        """COGBUILD_RUNTIME, one of `choices`; None when it is not set."""
        if self.runtime is not None and self.runtime not in choices:
            raise UsageError(f"COGBUILD_RUNTIME must be one of {', '.join(choices)}, not {self.runtime!r}")
        return self.runtime

    def source_date_epoch(self) -> int:
        """SOURCE_DATE_EPOCH (reproducible-builds.org): whole seconds since 1970, 0 when unset or empty.

        The one reader of that variable (layer mtimes, image config, SBOM); a bad value is the user's to fix."""
        value = self.source_date_epoch_text.strip() or "0"
        if not (value.isascii() and value.isdigit()):
            raise UsageError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not {value!r}")
        return int(value)


def positive_seconds(name: str, text: str, default: float) -> float:
    text = text.strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


def read_environment() -> Settings:
    """This process's settings: what the CLI's top-level group calls, once."""
    return Settings.from_environ(os.environ)


def settings_of(ctx: "click.Context | None" = None) -> Settings:
    """The settings the top-level group read, from the click context; a command invoked on its own (not
    through `cogbuild`) reads the environment here."""
    import click

    ctx = ctx or click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    if isinstance(obj, dict) and isinstance(obj.get("settings"), Settings):
        return obj["settings"]
    return read_environment()


def process_environment() -> dict[str, str]:
    """A copy of this process's environment, the base of every subprocess's (pip, podman, git, the model's
    worker): the one place besides `Settings.from_environ` that reads os.environ."""
    return dict(os.environ)


def help_text() -> str:
    """The `Environment:` block of `cogbuild --help`."""
    width = max(map(len, VARIABLES))
    return "\n".join(f"  {name:<{width}}  {what}" for name, what in VARIABLES.items())
