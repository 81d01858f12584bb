"""cogbuild predict: one prediction from a model directory (on this host) or an image (in a container)."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import httpx

from ..container import RUNTIMES, choose_runtime, has_gpu, running_container
from ..images import find_image
from ..layers.imagegraph import LAYOUT_MARKER
from ..errors import CogbuildError, CogUsageError, UsageError
from ..predict_io import (check_files, parse_inputs, parse_json_inputs, pretty_json, write_output, write_prediction,
                          yields_chunks)
from ..project import Project, open_store
from ..serving import directory_schema, local_server, warn_weights_on_host
from ..settings import settings_of
from ..ui import blob_progress, is_quiet, progress_printer, result, spinner, warn

if TYPE_CHECKING:
    from ..batch import BatchRequest


def model_directory(target: str) -> Path | None:
    """The model directory `target` names, None when it names an image; a directory without cog.yaml
    is an error unless it is an OCI layout."""
    path = Path(target)
    if not path.is_dir() or (path / LAYOUT_MARKER).is_file():
        if target.startswith((".", "/", "~")) and not path.exists():
            raise UsageError(f"there is no directory {target}")
        return None
    if not (path / "cog.yaml").is_file():
        raise UsageError(f"{path.resolve()} has no cog.yaml; name a model directory, an image, or run `cogbuild init`")
    return path


@dataclass
class Request:
    """How a prediction's input is given: -i flags or Cog's --json (inline, @file, @- or - for stdin)."""

    flags: list[str]
    json_text: str | None  # None: no --json; "": --json alone, which only asks for the JSON response
    component: str = "Input"  # the schema component that describes the inputs (TrainingInput to train)

    def payload(self, schema: dict | None) -> dict[str, Any]:
        if self.json_text:
            return parse_json_inputs(self.json_text, schema, component=self.component)
        return parse_inputs(self.flags, schema, self.component)


def prediction_options(command):
    """The input and output flags `predict` and `train` share, as Cog spells them."""
    for option in reversed([
        click.option("-i", "--input", "inputs", multiple=True, metavar="NAME=VALUE",
                     help="An input: name=value, name=@file (sent as a data URI) or @file for the one file "
                          "input; repeat a name for a list."),
        click.option("--json", "json_text", is_flag=False, flag_value="", default=None, metavar="JSON|@FILE|-",
                     help="Inputs as a JSON object: inline, @inputs.json, or @- / - for stdin (string values "
                          "starting with @ name files). Prints the whole response as JSON; --json alone only "
                          "does that."),
        click.option("-o", "--output", "out_path", metavar="PATH",
                     help="Where to write the output (default for files: output.<ext>; lists: output.N.<ext>; "
                          "`-` writes a file's bytes to stdout); with --json, the response."),
        click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
                     help="Container runtime for images (default: $COGBUILD_RUNTIME, else podman, docker, "
                          "containerd, umoci+runc)."),
        click.option("--timeout", type=float, default=None, metavar="SECONDS",
                     help="How long to wait for the model's setup (default 300, or $COGBUILD_READY_TIMEOUT)."),
    ]):
        command = option(command)
    return command


@click.command("predict")
@click.argument("target", required=False, default=".", metavar="[DIR|IMAGE]")
@prediction_options
@click.option("--batch", "batch_path", metavar="INPUTS.jsonl",
              help="Run one prediction per line of INPUTS.jsonl (a JSON object of inputs a line) with the model "
                   "started once, as many at a time as its concurrency.max; -o gets one JSON result a line, "
                   "in input order.")
@click.pass_context
def command(ctx: click.Context, target: str, inputs: tuple[str, ...], json_text: str | None, out_path: str | None,
            runtime: str | None, timeout: float | None, batch_path: str | None) -> None:
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
      cogbuild predict hello:latest --json '{"text": "world"}'
      echo '{"text": "world"}' | cogbuild predict hello:latest --json @-
      cogbuild predict 127.0.0.1:5000/me/hello:v1 -i tags=a -i tags=b --json
      cogbuild predict hello:latest --runtime runc -i text=x   # daemonless: umoci + runc
      cogbuild predict hello:latest --batch inputs.jsonl -o outputs.jsonl

    \b
    Exit codes: 0 the prediction succeeded (with --batch: all of them); 1 it failed or could not run;
    2 bad input or usage; 130 stopped by Ctrl-C or SIGTERM (the container is stopped and removed first).
    """
    if batch_path is not None:
        if inputs or json_text is not None:
            raise UsageError("--batch takes every input from its file; drop -i and --json")
        run_batch_job(ctx, target, batch_path, out_path, runtime, timeout)
        return
    target, request = make_request(target, inputs, json_text)
    run_job(ctx, target, request, out_path, runtime, timeout, "predictions")


def make_request(target: str, inputs: tuple[str, ...], json_text: str | None,
                 component: str = "Input") -> tuple[str, Request]:
    """`--json IMAGE` (the flag before the image, as older cogbuild took it) names the target, not inputs."""
    if json_text and target == "." and not json_text.lstrip().startswith(("{", "@", "-")):
        target, json_text = json_text, ""
    if json_text and inputs:
        raise CogUsageError("Must use one of --json or --input to provide model inputs")
    return target, Request(list(inputs), json_text, component)


def run_job(ctx: click.Context, target: str, request: Request, out_path: str | None, runtime: str | None,
            timeout: float | None, endpoint: str) -> None:
    """Start the model (directory or image), POST one job to /predictions or /trainings, report it."""
    as_json = request.json_text is not None
    with ExitStack() as stack:
        base, schema, payload, _ = _start(ctx, stack, target, request, runtime, timeout)
        live = LiveView(quiet=is_quiet(ctx), stream=yields_chunks(schema) and not (as_json or out_path))
        with ExitStack() as showing:
            if live.stream:  # the chunks themselves show progress; a spinner would hold them back
                progress_printer(ctx)("predicting" if endpoint == "predictions" else "training")
            else:
                showing.enter_context(spinner("predicting" if endpoint == "predictions" else "training", ctx))
            body, streamed = _post_job(base, endpoint, payload, live)
    if not streamed and not as_json:
        live.logs(body.get("logs") or "")
    _report(body, schema, out_path, as_json, live)


def run_batch_job(ctx: click.Context, target: str, batch_path: str, out_path: str | None, runtime: str | None,
                  timeout: float | None) -> None:
    """Check every line of the inputs file, start the model once, run them all, one result line each."""
    from ..batch import BatchRequest, predict_batch  # loads the runtime's HTTP client

    with ExitStack() as stack:
        base, _, items, slots = _start(ctx, stack, target, BatchRequest(batch_path), runtime, timeout)
        with spinner(f"predicting {len(items)} inputs, {slots} at a time", ctx):
            predict_batch(base, items, slots, out_path)


# base URL, schema, checked input, how many predictions the model runs at once
Started = tuple[str, "dict | None", Any, int]


def _start(ctx: click.Context, stack: ExitStack, target: str, request: Request | BatchRequest, runtime: str | None,
           timeout: float | None) -> Started:
    """Start the model in a directory (on this host) or an image (in a container) once its input is checked."""
    wait = {"timeout": timeout or settings_of(ctx).ready_timeout()}  # a bad setting fails before anything starts
    directory = model_directory(target)
    if directory is not None:
        return _start_directory(ctx, stack, directory, request, wait)
    return _start_image(ctx, stack, target, request, runtime, wait)


# Cog's servers stream events only for @cog.streaming models; those started here stream for any model,
# so that its logs show while it runs.
STREAM_ALL = {"COG_STREAM_ALL": "1"}


def _start_directory(ctx: click.Context, stack: ExitStack, directory: Path, request: Request | BatchRequest,
                     wait: dict) -> Started:
    """Check the inputs against the schema read from the code, then serve the model on this host."""
    config = Project.load(None, directory).config
    warn_weights_on_host(config)
    schema = directory_schema(config)
    payload = request.payload(schema)
    with spinner(f"starting the model in {directory}", ctx) as status:
        base = stack.enter_context(local_server(config, on_status=status, env=STREAM_ALL, **wait))
    return base, schema, payload, config.concurrency_max or 1


def _start_image(ctx: click.Context, stack: ExitStack, target: str, request: Request | BatchRequest,
                 runtime: str | None, wait: dict) -> Started:
    """Find (or pull) the image, check the inputs against the schema it carries, start it in a container.

    An image without a schema is checked against the schema its server reports, once it is up."""
    settings = settings_of(ctx)
    chosen = choose_runtime(runtime or settings.runtime_choice(RUNTIMES), cache_root=settings.cache_root)
    check_files(request.flags)
    gpu = has_gpu() and chosen.name in ("podman", "docker")
    with blob_progress(f"pulling {target}", ctx) as transfer:
        image = find_image(target, open_store(settings.store_root), gpu, progress_printer(ctx), transfer,
                           verify_key=settings.verify_key, cache_root=settings.cache_root)
    schema = image.schema
    payload = request.payload(schema) if schema else None
    with spinner(f"starting {target} ({image.variant}) with {chosen.name}", ctx) as status:
        container = stack.enter_context(running_container(
            image, chosen, gpu=gpu and image.variant == "gpu", env=STREAM_ALL, on_status=status, **wait))
    if payload is None:
        schema = _fetch_schema(container.base_url)
        payload = request.payload(schema)
    return container.base_url, schema, payload, image.concurrency


def _fetch_schema(base: str) -> dict | None:
    try:
        return httpx.get(f"{base}/openapi.json", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return None


@dataclass
class LiveView:
    """What shows while the prediction runs: the model's logs on stderr, and an iterator's chunks on stdout
    as they come, printed as Cog prints the finished array (`[`, one JSON value a line, `]`), so an LLM's
    tokens appear as they are made and the bytes are the same as Cog's."""

    quiet: bool
    stream: bool
    shown: int = 0  # chunks printed so far

    def logs(self, text: str) -> None:
        if not self.quiet and text:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")
            sys.stderr.flush()

    def output(self, item: Any) -> None:
        if self.stream:
            self._chunk(item)

    def _chunk(self, item: Any) -> None:
        value = "\n".join("  " + line for line in pretty_json(item).splitlines())
        sys.stdout.write(("[\n" if self.shown == 0 else ",\n") + value)
        sys.stdout.flush()
        self.shown += 1

    def finish(self, output: Any) -> None:
        """Print what did not stream (if anything), then close the array."""
        for item in (output if isinstance(output, list) else [])[self.shown:]:
            self._chunk(item)
        sys.stdout.write("\n]\n" if self.shown else "[]\n")
        sys.stdout.flush()


def _post_job(base: str, endpoint: str, payload: dict[str, Any], live: LiveView) -> tuple[dict, bool]:
    """POST the job, asking for server-sent events so logs and output show while the model works
    (servers started here offer them for every model: STREAM_ALL).

    Returns the final response and whether it streamed. A server that answers with plain JSON instead
    (an error, or a runtime without streaming) is read as such.
    """
    try:
        with httpx.stream("POST", f"{base}/{endpoint}", json={"input": payload}, timeout=None,
                          headers={"Accept": "text/event-stream"}) as response:
            if "text/event-stream" in response.headers.get("content-type", ""):
                return _read_events(response, live), True
            response.read()
    except httpx.HTTPError as exc:
        raise CogbuildError(f"the request to {base}/{endpoint} failed: {exc}") from None
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
            if event == "log" and payload:
                live.logs(payload["data"])
            elif event == "output":
                live.output(payload.get("chunk") if isinstance(payload, dict) and "chunk" in payload else payload)
            elif event == "completed" and isinstance(payload, dict):  # else the stream is not Cog's
                return payload
            event, data = None, []
    raise CogbuildError("the model server closed the prediction stream before it completed")


def _json_answer(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise CogbuildError(f"the model server answered {response.status_code} without JSON") from None
    if response.status_code == 422:
        from cog.command.batch import invalid_input_message  # the runtime's reading of its own 422 answers

        raise UsageError(invalid_input_message(body))
    if response.status_code == 404:
        raise UsageError(f"the model serves no {response.url.path} (does cog.yaml name a `train:` entry?)")
    if response.status_code >= 400 and "status" not in body:
        raise CogbuildError(f"the model server answered {response.status_code}: {body}")
    return body


def _report(body: dict[str, Any], schema: dict | None, out_path: str | None, as_json: bool, live: LiveView) -> None:
    """As Cog reports: the JSON response with --json; else the output (files written, `Written output to:`
    for each), `No output generated` for none, and the error of a failed prediction."""
    status = body.get("status")
    if as_json:
        _show(write_prediction(body, out_path))
        if status != "succeeded":
            sys.exit(1)
        return
    if status != "succeeded":
        if live.shown:  # chunks already printed: close their array before the error
            live.finish([])
        error = (body.get("error") or "no error message").strip().splitlines()
        raise CogbuildError(f"the prediction {status or 'failed'}: {error[-1] if error else ''}")
    output = body.get("output")
    if live.stream:
        live.finish(output)
    elif output is None:
        warn("No output generated")
    else:
        _show(write_output(output, out_path, schema))


def _show(rendered) -> None:
    for path in rendered.written:
        click.echo(f"Written output to: {path}", err=True)
    if rendered.text is not None:
        result(rendered.text)
