"""A containerd of the test's own: root, state, socket and config in a temporary directory, the CRI plugin
off; `stop()` deletes every task and container it ran (their shims would outlive it) and stops it.
Any test can use it: `ContainerdServer(tmp_path).start()`, then `.ctr(...)` or `CONTAINERD_ADDRESS=.address`.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from components import require
from oci_registry_server import _die_with_parent, _on_main_thread

START_TIMEOUT = 30  # seconds until `ctr version` must answer


class ContainerdServer:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.address = str(workdir / "containerd.sock")  # a unix socket path: keep workdir short
        self.config = workdir / "config.toml"
        self.process: subprocess.Popen | None = None

    def _write_config(self) -> None:
        self.config.write_text("\n".join([
            "version = 2",
            f'root = "{self.workdir / "root"}"',
            f'state = "{self.workdir / "state"}"',
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            "[grpc]",
            f'  address = "{self.address}"',
            "[ttrpc]",
            f'  address = "{self.address}.ttrpc"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{self.workdir / "opt"}"',
        ]) + "\n")

    def start(self) -> "ContainerdServer":
        binary = require("containerd", "ctr")
        self._write_config()
        log = open(self.workdir / "containerd.log", "ab")
        self.process = subprocess.Popen([binary, "--config", str(self.config)], stdout=log, stderr=log,
                                        preexec_fn=_die_with_parent if _on_main_thread() else None)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log()[-2000:]}")
            if self.ctr("version", timeout=5).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"containerd did not answer within {START_TIMEOUT} s: {self.log()[-2000:]}")

    def log(self) -> str:
        return (self.workdir / "containerd.log").read_text(errors="replace")

    def ctr(self, *args: str, namespace: str = "default", timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ctr", "--address", self.address, "--namespace", namespace, *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for namespace in self.ctr("namespaces", "ls", "--quiet", timeout=10).stdout.split():
            for task in self.ctr("tasks", "ls", "--quiet", namespace=namespace, timeout=10).stdout.split():
                self.ctr("tasks", "delete", "--force", task, namespace=namespace, timeout=30)
            for container in self.ctr("containers", "ls", "--quiet", namespace=namespace, timeout=10).stdout.split():
                self.ctr("containers", "delete", container, namespace=namespace, timeout=30)
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None
