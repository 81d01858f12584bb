"""Serve a model directory with the runtime that goes into images, on this host, no image needed."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from typing import Iterator

from .config import CogConfig
from .container import free_port, wait_ready
from .errors import CogbuildError


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "cog.server.http", "--host", host, "--port", str(port)]


def server_env(config: CogConfig) -> dict[str, str]:
    if not config.predictor:
        raise CogbuildError(f"{config.path.name} names no predictor; add `predict: \"predict.py:Predictor\"`")
    return {**os.environ, **config.environment, "COG_PREDICTOR": config.predictor,
            "COG_MAX_CONCURRENCY": str(config.concurrency_max)}


@contextmanager
def local_server(config: CogConfig) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(server_command("127.0.0.1", port), cwd=config.root, env=server_env(config),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", lambda: _drain(proc))
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _drain(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        return "(server still running)"
    return proc.stdout.read() if proc.stdout else ""


def exec_server(config: CogConfig, host: str, port: int) -> None:
    """Replace this process with the server, so signals reach it directly."""
    env = server_env(config)
    os.chdir(config.root)
    os.execve(sys.executable, server_command(host, port), env)
