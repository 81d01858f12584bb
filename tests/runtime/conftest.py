"""Fixtures for black-box runtime tests: real servers on loopback, a sink for webhooks,
uploads and input files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from http_server import LoopbackHTTPServer, Reply, Request, free_port

MODELS = Path(__file__).parent / "models"
# The interpreter the servers run on: another one (with the runtime's dependencies importable) checks the
# runtime on that Python, e.g. COGBUILD_TEST_PYTHON=/root/.pyenv/versions/3.8.18/bin/python.
PYTHON = os.environ.get("COGBUILD_TEST_PYTHON", sys.executable)


class Server:
    """`python -m cog.server.http` in a subprocess, serving one predictor from tests/runtime/models."""

    def __init__(self, predictor: str, *, env: dict | None = None, args: list[str] | None = None,
                 cwd: Path = MODELS, python: str = PYTHON) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env.pop("COG_PREDICTOR", None)
        self.process = subprocess.Popen(
            [python, "-m", "cog.server.http", "--host", "127.0.0.1", "--port", str(self.port),
             "--predictor", predictor, *(args or [])],
            cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_until(self, *states: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.process.stdout.read()}")
            try:
                health = self.client.get("/health-check").json()
                if health["status"] in states:
                    return health
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server never reached {states}")

    def stop(self) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def read_events(client: httpx.Client, method: str, path: str, body: dict) -> tuple[list[tuple[str, object]], str]:
    """Server-sent events of one request: ([(event, data), …], the raw text)."""
    events, raw, name = [], [], None
    with client.stream(method, path, json=body, headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines():
            raw.append(line)
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events, "\n".join(raw)


@pytest.fixture
def serve():
    """serve(predictor, env=..., args=...) starts a server and waits for setup to end."""
    started: list[Server] = []

    def start(predictor: str, *, ready: tuple = ("READY", "SETUP_FAILED"), **kwargs) -> Server:
        server = Server(predictor, **kwargs)
        started.append(server)
        server.wait_until(*ready)
        return server

    yield start
    for server in started:
        server.stop()


def module_server(predictor: str, **kwargs):
    """A module-scoped fixture serving one predictor (saves server start-up per test)."""

    @pytest.fixture(scope="module")
    def fixture():
        server = Server(predictor, **kwargs)
        server.wait_until("READY", "SETUP_FAILED")
        yield server
        server.stop()

    return fixture


class Sink(LoopbackHTTPServer):
    """A loopback HTTP server for the runtime to call: webhooks (POST), uploads (PUT), files (GET)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}  # GET path -> Location
        self.post_statuses: list[int] = []  # answered in order to POSTs, then 200
        self.lock = threading.Lock()
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Reply:
        if request.method == "POST":
            with self.lock:
                return Reply(self.post_statuses.pop(0) if self.post_statuses else 200)
        if request.method == "PUT":
            with self.lock:
                self.files[request.path] = request.body
            return Reply(201, {"Location": f"{self.url}/stored{request.path}?signed=1"})
        if request.path in self.redirects:
            return Reply(302, {"Location": self.redirects[request.path]})
        body = self.files.get(request.path)
        slow = 5 if request.path.startswith("/slow") else 0  # outlasts the runtime's download timeout
        return Reply(200 if body is not None else 404, body=body or b"", delay=slow)

    def webhooks(self) -> list[dict]:
        return [json.loads(r.body) for r in list(self.requests) if r.method == "POST"]

    def wait_for_webhook(self, status: str, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hooks = self.webhooks()
            if any(h["status"] == status for h in hooks):
                return hooks
            time.sleep(0.05)
        raise AssertionError(f"no webhook with status {status}; got {[h['status'] for h in self.webhooks()]}")


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()
