"""cogbuild lock: pin every input of the image in cog.lock, beside cog.yaml."""

from __future__ import annotations

from pathlib import Path

import click

from ..lock import PYTHON_FROM, read_lock, write_lock
from ..project import DEFAULT_PLATFORMS, Project, parse_platforms
from ..settings import settings_of
from ..ui import progress_printer, result


@click.command("lock")
@click.option("-f", "--file", "cog_yaml", type=click.Path(), help="Path to cog.yaml (default: ./cog.yaml).")
@click.option("--platform", "platform", help="Comma-separated platforms (default: linux/amd64).")
@click.option("--check", is_flag=True, help="Exit 1 if cog.lock does not match cog.yaml and requirements.")
@click.option("--diff", "old", type=click.Path(exists=True, dir_okay=False),
              help="Print what changed from OLD to the current cog.lock.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True)
@click.option("--upgrade", is_flag=True, help="Take the newest allowed Python packages, not the locked ones.")
@click.option("--upgrade-package", "upgrade_packages", multiple=True, metavar="NAME",
              help="Upgrade only NAME (repeatable); other Python packages keep their locked versions.")
@click.option("--python-from", "python_from", type=click.Choice(PYTHON_FROM),
              help="Who serves the interpreter: auto (Debian where it carries the version, else "
                   "python-build-standalone), debian or standalone. Kept in cog.lock; default: the lock's, or auto.")
@click.argument("directory", required=False, default=".")
@click.pass_context
def command(ctx: click.Context, cog_yaml: str | None, platform: str | None, check: bool, old: str | None,
            fmt: str, upgrade: bool, upgrade_packages: tuple[str, ...], python_from: str | None,
            directory: str) -> None:
    """Resolve and pin every input (Debian packages, wheels, runtime) in cog.lock; run nothing.

    \b
    Examples:
      cogbuild lock                          # write ./cog.lock
      cogbuild lock --check                  # in CI: fail when cog.lock is stale
      cogbuild lock --diff old.lock --format markdown   # a PR comment
      cogbuild lock --upgrade-package numpy
      cogbuild lock --python-from standalone   # python-build-standalone even for 3.11/3.13/3.14
    """
    project = Project.load(cog_yaml, directory)
    if check:
        result(project.check_lock())
        return
    from ..lockdiff import describe  # only what prints a diff needs it

    if old:
        result(describe(read_lock(Path(old)), read_lock(project.lock_path), markdown=fmt == "markdown"))
        return
    from ..resolve import LockSources, make_lock

    platforms = parse_platforms(platform) or DEFAULT_PLATFORMS
    previous = read_lock(project.lock_path) if project.lock_path.exists() else None
    keep = [] if upgrade or previous is None else _pins(previous, set(upgrade_packages))
    progress_printer(ctx)(f"locking {project.config.path.name} for {', '.join(platforms)}")
    python_from = python_from or (previous.python_from if previous else "auto")
    lock = make_lock(project.config, platforms, project.default_variants(), constraints=keep,
                     python_from=python_from, sources=LockSources.from_settings(settings_of(ctx)))
    lock.keep_fixed_outputs(previous)
    write_lock(lock, project.lock_path)
    if previous is not None:
        result(describe(previous, lock, markdown=fmt == "markdown"))
    result(f"wrote {project.lock_path} ({len(lock.packages)} packages)")


def _pins(lock, upgrade: set[str]) -> list[str]:
    """The previous lock's Python versions as constraints, so re-locking changes only what must change
    (a file in the project or a git commit is pinned by its own line: its version is whatever it is now)."""
    names = {p.artifact.name: p.artifact.version for p in lock.packages
             if p.group in ("python", "cuda") and "://" in p.artifact.url and not p.artifact.url.startswith("git+")}
    return [f"{name}=={version}" for name, version in sorted(names.items()) if name not in upgrade]
