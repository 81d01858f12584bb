"""A model directory on this host, no image: its schema, and the image's runtime serving it on loopback.

The runtime (`python -m cog.server.http`) is the same code that goes into images; it runs in a child
process with the model directory as its working directory, like `/src` in the image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .config import CogConfig
from .container import free_port, wait_ready
from .settings import DEFAULT_READY_TIMEOUT, process_environment
from .errors import CogbuildError, UsageError
from .interrupts import shielded
from .ui import warn

SCHEMA_TIMEOUT = 120.0


def server_command(host: str, port: int, upload_url: str | None = None) -> list[str]:
    upload = ["--upload-url", upload_url] if upload_url else []
    return [sys.executable, "-m", "cog.server.http", "--host", host, "--port", str(port), *upload]


def server_env(config: CogConfig) -> dict[str, str]:
    if not config.predictor:
        raise UsageError(f"{config.path} names no predictor; add `predict: \"predict.py:Predictor\"`")
    return {**process_environment(), **config.runtime_env()}


def warn_weights_on_host(config: CogConfig) -> None:
    """`weights:` are placed at their targets in the image only: say where they are when serving here."""
    for weight in config.weights:
        if not Path(weight.target).exists():
            sources = ", ".join(source.uri for source in weight.sources)
            warn(f"weights {weight.name!r} are at {weight.target} in the image only; on this host the model "
                 f"finds nothing there (they are in {sources})")


def directory_schema(config: CogConfig) -> dict:
    """The model's OpenAPI schema, read from its signatures without running setup()."""
    command = [sys.executable, "-m", "cog.command.openapi_schema"]
    try:
        done = subprocess.run(command, cwd=config.root, env=server_env(config), capture_output=True, text=True,
                              timeout=SCHEMA_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CogbuildError(f"reading the schema of {config.predictor} took over {SCHEMA_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        hint = ("; install the model's packages on this host, or build the image and predict with it"
                if "No module named" in reason else "")
        raise UsageError(f"{config.root / (config.predictor or '').split(':')[0]} cannot be loaded: "
                         f"{reason.removeprefix('error: ')}{hint}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise CogbuildError(f"the schema of {config.predictor} is not JSON") from None


@contextmanager
def local_server(config: CogConfig, on_status: Callable[[str], None] = lambda s: None,
                 timeout: float = DEFAULT_READY_TIMEOUT, env: dict[str, str] | None = None) -> Iterator[str]:
    """Serve the directory's model on a free loopback port until the block ends (READY within `timeout`
    seconds); yield its base URL."""
    port = free_port()
    # A file, not a pipe: a chatty predictor must never block on a pipe nobody reads.
    with tempfile.TemporaryFile() as output:
        # Stopped only when its answer is in or no longer wanted: no grace for unfinished work, so it
        # stops its worker itself (no container's PID namespace would end a worker left behind).
        server_vars = {**server_env(config), "COG_SHUTDOWN_GRACE": "0", **(env or {})}
        proc = subprocess.Popen(server_command("127.0.0.1", port), cwd=config.root, env=server_vars,
                                stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}", lambda: _read_all(output), timeout, on_status,
                       alive=lambda: proc.poll() is None)
            yield f"http://127.0.0.1:{port}"
        finally:
            with shielded():
                _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited in 10 s (it cancels what it runs at once: COG_SHUTDOWN_GRACE)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _read_all(file) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def exec_server(config: CogConfig, host: str, port: int, upload_url: str | None = None) -> None:
    """Replace this process with the server, so signals reach it directly."""
    env = server_env(config)
    os.chdir(config.root)
    os.execve(sys.executable, server_command(host, port, upload_url), env)
