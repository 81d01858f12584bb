"""cogbuild predict: one prediction from a model directory or an image."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import click
import httpx

from ..container import running_container
from ..errors import CogbuildError
from ..predict_io import parse_inputs, write_output
from ..project import Project, open_store
from ..serving import local_server
from ..ui import progress_printer, result


@contextmanager
def _server(target: str, progress) -> Iterator[str]:
    path = Path(target)
    if path.is_dir() and (path / "cog.yaml").exists():
        progress(f"starting the model in {path} locally")
        with local_server(Project.load(None, path).config) as base:
            yield base
    else:
        progress(f"starting {target} in a container")
        with running_container(target, open_store()) as base:
            yield base


@click.command("predict")
@click.argument("target", required=False, default=".")
@click.option("-i", "--input", "inputs", multiple=True, help="name=value or name=@file; repeat for lists.")
@click.option("-o", "--output", "out_path", help="Where to write a file output (default: output.<ext>).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole prediction response as JSON.")
@click.pass_context
def command(ctx: click.Context, target: str, inputs: tuple[str, ...], out_path: str | None, as_json: bool) -> None:
    """Run one prediction with the model in a directory (locally) or an image (in a container).

    \b
    Examples:
      cogbuild predict examples/hello -i text=world
      cogbuild predict hello:latest -i text=world            # from the local store
      cogbuild predict 127.0.0.1:5000/hello:v1 -i image=@in.png -o out.png
    """
    progress = progress_printer(ctx)
    with _server(target, progress) as base:
        try:
            schema = httpx.get(f"{base}/openapi.json", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            schema = None
        payload = {"input": parse_inputs(list(inputs), schema)}
        try:
            response = httpx.post(f"{base}/predictions", json=payload, timeout=None)
        except httpx.HTTPError as exc:
            raise CogbuildError(f"the prediction request failed: {exc}") from None
    body = response.json()
    if response.status_code == 422:
        details = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[2:]))}: {d.get('msg')}"
                            for d in body.get("detail", []))
        raise CogbuildError(f"the model rejected the input: {details}")
    if as_json:
        result(json.dumps(body, indent=2))
    elif body.get("status") == "succeeded":
        for line in write_output(body.get("output"), out_path):
            result(line)
    if body.get("status") != "succeeded":
        raise CogbuildError(f"the prediction {body.get('status', 'failed')}: {body.get('error')}")
