"""cogbuild run: start an image in a container runtime and serve its HTTP API until interrupted."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path

import click

from .. import interrupts
from ..container import RUNTIMES, Container, choose_runtime, has_gpu, running_container
from ..images import find_image
from ..errors import CogbuildError, UsageError
from ..project import open_store
from ..settings import settings_of
from ..ui import blob_progress, progress_printer, result, spinner


def _check_port_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            raise UsageError(f"port {port} is already in use; choose another with -p PORT") from None


@click.command("run")
@click.argument("image_name", metavar="IMAGE")
@click.option("-p", "--port", default=5000, show_default=True, type=click.IntRange(1, 65535),
              help="Port the model's HTTP API listens on (host network).")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=None,
              help="Container runtime (default: $COGBUILD_RUNTIME, else podman, docker, containerd, umoci+runc).")
@click.option("-e", "--env", "env", multiple=True, metavar="NAME=VALUE", help="Set an environment variable.")
@click.pass_context
def command(ctx: click.Context, image_name: str, port: int, runtime: str | None, env: tuple[str, ...]) -> None:
    """Start IMAGE and serve the Cog HTTP API on PORT until interrupted (Ctrl-C).

    IMAGE is a name in the local store, a registry reference (pulled first), `oci:PATH[:TAG]` or
    `oci-archive:FILE[:TAG]`.
    The container's output follows on stderr; the URL is printed on stdout once the model is ready.

    \b
    Examples:
      cogbuild run hello:latest
      cogbuild run 127.0.0.1:5000/me/hello:v1 -p 8080 --runtime runc
      curl -s -XPOST localhost:5000/predictions -H 'Content-Type: application/json' \\
           -d '{"input": {"text": "world"}}'

    \b
    Exit codes: 0 stopped by Ctrl-C or SIGTERM; 1 the container failed or exited; 2 bad usage.
    """
    if (Path(image_name) / "cog.yaml").is_file():
        raise UsageError(f"{image_name} is a model directory, not an image: serve it with "
                         f"`cogbuild serve {image_name}`, or build it first with `cogbuild build {image_name}`")
    variables = dict(_split_env(e) for e in env)
    _check_port_free(port)
    settings = settings_of(ctx)
    timeout = settings.ready_timeout()  # a bad setting fails before anything starts
    chosen = choose_runtime(runtime or settings.runtime_choice(RUNTIMES), cache_root=settings.cache_root)
    gpu = has_gpu() and chosen.name in ("podman", "docker")
    with blob_progress(f"pulling {image_name}", ctx) as transfer:
        image = find_image(image_name, open_store(settings.store_root), gpu, progress_printer(ctx), transfer,
                           verify_key=settings.verify_key, cache_root=settings.cache_root)
    with ExitStack() as stack:
        with spinner(f"starting {image_name} ({image.variant}) with {chosen.name}", ctx) as status:
            container = stack.enter_context(running_container(
                image, chosen, port=port, env=variables, gpu=gpu and image.variant == "gpu", on_status=status,
                timeout=timeout))
        result(container.base_url)
        try:
            _follow_until_exit(container)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: a requested stop, not a failure
            interrupts.take()
            progress_printer(ctx)(f"stopping {image_name}")
            return
        lines = [line for line in container.logs().splitlines() if line.strip()]  # already shown above
        raise CogbuildError(f"the container for {image_name} exited: {lines[-1].strip() if lines else 'no output'}")


def _follow_until_exit(container: Container) -> None:
    stop_following = container.follow_logs()
    try:
        while container.alive():
            time.sleep(1)
    finally:
        stop_following()


def _split_env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise UsageError(f"-e {text!r} must look like NAME=value")
    return name, value
