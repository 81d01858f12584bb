"""Run an image in a container runtime and talk to the Cog HTTP API inside it.

podman (or docker) with host networking, so the server's port is on loopback. A local store name runs from
the OCI layout directly (`oci:` transport); a registry reference is pulled by the runtime itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

from .errors import CogbuildError
from .registry.layout import Layout, LayoutError
from .registry.reference import parse_reference

READY_TIMEOUT = float(os.environ.get("COGBUILD_READY_TIMEOUT", "120"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _containers_conf() -> str:
    """podman refuses to start on hosts whose hard ulimits it cannot copy; an empty default list avoids it."""
    if os.environ.get("CONTAINERS_CONF"):
        return os.environ["CONTAINERS_CONF"]
    path = Path(tempfile.gettempdir()) / "cogbuild-containers.conf"
    if not path.exists():
        path.write_text("[containers]\ndefault_ulimits = []\n")
    return str(path)


@dataclass
class Engine:
    """A container CLI: podman (preferred, daemonless) or docker."""

    program: str

    @classmethod
    def find(cls) -> "Engine":
        for program in ("podman", "docker"):
            if shutil.which(program):
                return cls(program)
        raise CogbuildError("no container runtime found: install podman (apt-get install podman runc) or docker")

    def base_args(self) -> list[str]:
        if self.program == "podman":
            return ["podman", "--cgroup-manager=cgroupfs", "--runtime", "runc"]
        return [self.program]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.program == "podman":
            env["CONTAINERS_CONF"] = _containers_conf()
        return env

    def image_argument(self, image: str, store: Layout) -> tuple[str, list[str]]:
        """What to pass to `run` for `image`, plus extra flags (TLS off for loopback registries)."""
        try:
            store.resolve(image)
            return f"oci:{store.root}:{image}", []
        except LayoutError:
            pass
        ref = parse_reference(image)
        loopback = ref.registry.split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        flags = ["--tls-verify=false"] if loopback and self.program == "podman" else []
        return image, flags


@contextmanager
def running_container(image: str, store: Layout, port: int | None = None, env: dict[str, str] | None = None,
                      detach_logs: bool = True) -> Iterator[str]:
    """Start `image` serving on a loopback port; yield its base URL; remove the container afterwards."""
    engine = Engine.find()
    port = port or free_port()
    target, flags = engine.image_argument(image, store)
    args = engine.base_args() + ["run", "-d", "--rm", "--network", "host", "-e", f"PORT={port}", *flags]
    for key, value in (env or {}).items():
        args += ["-e", f"{key}={value}"]
    started = subprocess.run(args + [target], capture_output=True, text=True, env=engine.env())
    if started.returncode != 0:
        detail = started.stderr.strip().splitlines()[-1] if started.stderr.strip() else "no output"
        raise CogbuildError(f"{engine.program} could not start {image}: {detail}")
    container = started.stdout.strip().splitlines()[-1]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, lambda: _logs(engine, container))
        yield base
    finally:
        subprocess.run(engine.base_args() + ["rm", "-f", "-t", "2", container], capture_output=True,
                       env=engine.env())


def _logs(engine: Engine, container: str) -> str:
    out = subprocess.run(engine.base_args() + ["logs", container], capture_output=True, text=True,
                         env=engine.env())
    return (out.stdout + out.stderr).strip()


def wait_ready(base: str, logs=lambda: "", timeout: float = READY_TIMEOUT) -> None:
    """Poll GET /health-check until READY; fail with the server's logs on SETUP_FAILED or timeout."""
    deadline = time.monotonic() + timeout
    status = "unreachable"
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{base}/health-check", timeout=2).json()
            status = body.get("status", "?")
            if status == "READY":
                return
            if status in ("SETUP_FAILED", "DEFUNCT"):
                setup_logs = (body.get("setup") or {}).get("logs") or logs()
                raise CogbuildError(f"the model's setup failed ({status}): {setup_logs.strip()[-2000:]}")
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise CogbuildError(f"the model did not become ready within {timeout:.0f} s (last status: {status}); "
                        f"logs:\n{logs()[-2000:]}")
