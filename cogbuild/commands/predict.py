"""cogbuild predict: one prediction from a model directory (on this host) or an image (in a container)."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from ..container import RUNTIMES, choose_runtime, has_gpu, running_container
from ..images import find_image
from ..errors import CogbuildError, UsageError
from ..predict_io import check_files, is_concatenated_text, parse_inputs, write_output
from ..project import Project, open_store
from ..serving import directory_schema, local_server
from ..ui import blob_progress, is_quiet, progress_printer, result, spinner


def model_directory(target: str) -> Path | None:
    """The model directory `target` names, None when it names an image; a directory without cog.yaml
    is an error unless it is an OCI layout."""
    path = Path(target)
    if not path.is_dir() or (path / "oci-layout").is_file():
        if target.startswith((".", "/", "~")) and not path.exists():
            raise UsageError(f"there is no directory {target}")
        return None
    if not (path / "cog.yaml").is_file():
        raise UsageError(f"{path.resolve()} has no cog.yaml; name a model directory, an image, or run `cogbuild init`")
    return path


@click.command("predict")
@click.argument("target", required=False, default=".", metavar="[DIR|IMAGE]")
@click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=VALUE",
              help="An input: name=value, name=@file (sent as a data URI) or @file for the one file input; "
                   "repeat a name for a list.")
@click.option("-o", "--output", "out_path", metavar="PATH",
              help="Where to write the output (default for files: output.<ext>; lists: output.N.<ext>; "
                   "`-` writes a file's bytes to stdout).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole prediction response as JSON.")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None, envvar="COGBUILD_RUNTIME",
              help="Container runtime for images (default: $COGBUILD_RUNTIME, else podman, docker, umoci+runc).")
@click.option("--timeout", type=float, default=None, metavar="SECONDS",
              help="How long to wait for the model's setup (default 300, or $COGBUILD_READY_TIMEOUT).")
@click.pass_context
def command(ctx: click.Context, target: str, inputs: tuple[str, ...], out_path: str | None, as_json: bool,
            runtime: str | None, timeout: float | None) -> None:
    """Run one prediction with the model in DIR (on this host) or IMAGE (in a container).

    IMAGE is a name in the local store (`cogbuild build -t NAME`), a registry reference (pulled into the
    store first), an OCI layout (`oci:PATH[:TAG]`) or an OCI archive
    (`oci-archive:FILE[:TAG]`, as `cogbuild build --output` writes). Inputs are checked against the model's schema
    before the model starts.

    \b
    Examples:
      cogbuild predict -i text=world                      # the model in this directory
      cogbuild predict examples/hello -i text=world
      cogbuild predict hello:latest -i image=@in.png -o out.png
      cogbuild predict hello:latest -i @in.png -o @out.png   # the seed's short form
      cogbuild predict hello:latest -i @in.png -o - | display   # the output file on stdout
      cogbuild predict 127.0.0.1:5000/me/hello:v1 -i tags=a -i tags=b --json
      cogbuild predict hello:latest --runtime runc -i text=x   # daemonless: umoci + runc

    \b
    Exit codes: 0 the prediction succeeded; 1 it failed or could not run; 2 bad input or usage.
    """
    flags = list(inputs)
    wait = {"timeout": timeout} if timeout else {}
    with ExitStack() as stack:
        directory = model_directory(target)
        if directory is not None:
            base, schema, payload = _start_directory(ctx, stack, directory, flags, wait)
        else:
            base, schema, payload = _start_image(ctx, stack, target, flags, runtime, wait)
        live = LiveView(quiet=is_quiet(ctx), stream_text=is_concatenated_text(schema) and not (as_json or out_path))
        with ExitStack() as showing:
            if live.stream_text:  # the text itself shows progress; a spinner would hold it back
                progress_printer(ctx)("predicting")
            else:
                showing.enter_context(spinner("predicting", ctx))
            body, streamed = _post_prediction(base, payload, live)
    if not streamed and not as_json:
        live.logs(body.get("logs") or "")
    _report(body, schema, out_path, as_json, live)


Started = tuple[str, "dict | None", dict[str, Any]]  # base URL, schema, checked input


def _start_directory(ctx: click.Context, stack: ExitStack, directory: Path, flags: list[str], wait: dict) -> Started:
    """Check the inputs against the schema read from the code, then serve the model on this host."""
    config = Project.load(None, directory).config
    schema = directory_schema(config)
    payload = parse_inputs(flags, schema)
    with spinner(f"starting the model in {directory}", ctx) as status:
        base = stack.enter_context(local_server(config, on_status=status, **wait))
    return base, schema, payload


def _start_image(ctx: click.Context, stack: ExitStack, target: str, flags: list[str], runtime: str | None,
                 wait: dict) -> Started:
    """Find (or pull) the image, check the inputs against its schema label, start it in a container.

    An image without the label is checked against the schema its server reports, once it is up."""
    chosen = choose_runtime(runtime)
    check_files(flags)
    gpu = has_gpu() and chosen.name in ("podman", "docker")
    with blob_progress(f"pulling {target}", ctx) as transfer:
        image = find_image(target, open_store(), gpu, progress_printer(ctx), transfer)
    schema = image.schema
    payload = parse_inputs(flags, schema) if schema else None
    with spinner(f"starting {target} ({image.variant}) with {chosen.name}", ctx) as status:
        container = stack.enter_context(running_container(
            image, chosen, gpu=gpu and image.variant == "gpu", on_status=status, **wait))
    if payload is None:
        schema = _fetch_schema(container.base_url)
        payload = parse_inputs(flags, schema)
    return container.base_url, schema, payload


def _fetch_schema(base: str) -> dict | None:
    try:
        return httpx.get(f"{base}/openapi.json", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return None


@dataclass
class LiveView:
    """What shows while the prediction runs: the model's logs on stderr, and text from a
    concatenate-iterator model on stdout as it comes (so an LLM's tokens appear as they are made)."""

    quiet: bool
    stream_text: bool
    text_shown: str = ""

    def logs(self, text: str) -> None:
        if not self.quiet and text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def output(self, item: Any) -> None:
        if self.stream_text and isinstance(item, str):
            sys.stdout.write(item)
            sys.stdout.flush()
            self.text_shown += item


def _post_prediction(base: str, payload: dict[str, Any], live: LiveView) -> tuple[dict, bool]:
    """POST the prediction, asking for server-sent events so logs and output show while the model works.

    Returns the final response and whether it streamed. A server that answers with plain JSON instead
    (an error, or a runtime without streaming) is read as such.
    """
    try:
        with httpx.stream("POST", f"{base}/predictions", json={"input": payload}, timeout=None,
                          headers={"Accept": "text/event-stream"}) as response:
            if "text/event-stream" in response.headers.get("content-type", ""):
                return _read_events(response, live), True
            response.read()
    except httpx.HTTPError as exc:
        raise CogbuildError(f"the prediction request to {base} failed: {exc}") from None
    return _json_answer(response), False


def _read_events(response: httpx.Response, live: LiveView) -> dict[str, Any]:
    event, data = None, []
    for line in response.iter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and event:
            payload = json.loads("\n".join(data)) if data else None
            if event == "logs" and payload:
                live.logs(payload)
            elif event == "output":
                live.output(payload)
            elif event == "completed":
                return payload
            event, data = None, []
    raise CogbuildError("the model server closed the prediction stream before it completed")


def _json_answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise CogbuildError(f"the model server answered {response.status_code} without JSON") from None
    if response.status_code == 422:
        problems = "; ".join(f"{'.'.join(map(str, d.get('loc', [])[2:])) or 'input'}: {d.get('msg')}"
                             for d in body.get("detail", []))
        raise UsageError(f"the model rejected the input: {problems}")
    if response.status_code >= 400 and "status" not in body:
        raise CogbuildError(f"the model server answered {response.status_code}: {body}")
    return body


def _report(body: dict[str, Any], schema: dict | None, out_path: str | None, as_json: bool, live: LiveView) -> None:
    status = body.get("status")
    if as_json:
        result(json.dumps(body, indent=2))
    elif live.text_shown:
        complete = "".join(o for o in body.get("output") or [] if isinstance(o, str))
        if complete.startswith(live.text_shown):  # what did not stream (if any), then end the line
            sys.stdout.write(complete[len(live.text_shown):])
        sys.stdout.write("\n")
    elif status == "succeeded":
        for line in write_output(body.get("output"), out_path, schema):
            result(line)
    if status != "succeeded":
        error = (body.get("error") or "no error message").strip().splitlines()
        raise CogbuildError(f"the prediction {status or 'failed'}: {error[-1] if error else ''}")
