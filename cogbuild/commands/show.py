"""cogbuild show: variants, platforms, layers, schema and lock of an image, local or in a registry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import UsageError
from ..images import open_local, parse_source
from ..project import Project, open_store
from ..settings import settings_of
from ..imageinfo import describe_local, describe_remote, render
from ..registry.layout import Layout, LayoutError
from ..registry.reference import parse_reference
from ..ui import result


@click.command("show")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--remote", is_flag=True, help="Look TARGET up in its registry even if the local store has it.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.pass_context
def command(ctx: click.Context, target: str, as_json: bool, remote: bool, insecure: bool) -> None:
    """Describe TARGET: a model directory, an image in the store, a layout, an archive or a registry REF.

    TARGET is read like every command's image: a local store name, a registry reference,
    `oci:DIR[:TAG]` (or a bare layout DIR[:TAG]), `oci-archive:FILE[:TAG]` or `docker-archive:FILE[:TAG]`.

    \b
    Examples:
      cogbuild show hello:latest
      cogbuild show 127.0.0.1:5000/hello:v1 --json
      cogbuild show ./image-layout:v1
      cogbuild show oci-archive:hello.tar
      cogbuild show examples/hello            # what `cogbuild build examples/hello` made
    """
    settings = settings_of(ctx)
    summary = _describe(open_store(settings.store_root), settings.cache_root, target, remote, insecure)
    result(json.dumps(summary, indent=2, sort_keys=True) if as_json else render(summary))


def _describe(store: Layout, cache_root: Path, target: str, remote: bool, insecure: bool) -> dict:
    if not remote and os.path.isfile(os.path.join(target, "cog.yaml")):
        return _from_model_dir(store, target)
    local = None if remote else open_local(parse_source(target), store, cache_root)
    if local is None:
        return describe_remote(parse_reference(target), insecure=insecure)
    try:
        return describe_local(*local)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None


def _from_model_dir(store: Layout, directory: str) -> dict:
    """A model directory: the image `cogbuild build` made from it (named as build names it)."""
    name = Project.load(None, directory).image_name
    try:
        return describe_local(store, name)
    except LayoutError:
        raise UsageError(f"the local store has no image {name} for {directory}; run `cogbuild build {directory}` "
                         "first") from None
