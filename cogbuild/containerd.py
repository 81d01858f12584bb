"""Run an image in containerd, through its own client `ctr` (what Kubernetes nodes run).

ctr reads `CONTAINERD_ADDRESS` (default /run/containerd/containerd.sock) and `CONTAINERD_NAMESPACE`
(default `default`) itself. The image is imported once per manifest as an OCI archive named by its
digest; each run is a detached task on the host network whose output goes to a log file.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .container import STOP_GRACE, last_line, new_container_name, run_detached, follow_file, read_log
from .errors import CogbuildError
from .images import Image, write_oci_archive
from .interrupts import shielded
from .settings import process_environment

CTR = "ctr"


def _ctr(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([CTR, *args], capture_output=True, text=True, **options)


@dataclass
class ContainerdRuntime:
    cache_root: Path  # containers' logs are kept under it
    name: str = "containerd"

    def answers(self) -> bool:
        """A containerd daemon answers ctr (at $CONTAINERD_ADDRESS or the default socket)."""
        try:
            # ctr's own default waits 10 s for a socket nobody listens on
            return subprocess.run([CTR, "--connect-timeout", "2s", "version"], capture_output=True,
                                  timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self, image: Image, port: int, env: dict[str, str], gpu: bool) -> "ContainerdContainer":
        if not self.answers():
            # ctr's own variable, read by ctr from the environment it inherits
            address = process_environment().get("CONTAINERD_ADDRESS") or "/run/containerd/containerd.sock"
            raise CogbuildError(f"containerd does not answer at {address}: start it, or point CONTAINERD_ADDRESS "
                                "at its socket")
        reference = self._import(image)
        logs = self.cache_root / "containerd-logs"
        logs.mkdir(parents=True, exist_ok=True)
        container = ContainerdContainer(new_container_name(), f"http://127.0.0.1:{port}", logs)
        args = ["run", "--detach", "--net-host", "--log-uri", f"file://{container.log_path}", "--env", f"PORT={port}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        if gpu:
            args += ["--gpus", "0"]
        try:
            with shielded():  # no half-made container: finish, then remove
                started = run_detached([CTR, *args, reference, container.id], capture_output=True, text=True)
            if started.returncode != 0:
                raise CogbuildError(f"containerd could not start {image.name}: {last_line(started.stderr)}")
        except BaseException:
            container.remove()
            raise
        return container

    def _import(self, image: Image) -> str:
        """The image in containerd's store under a name of its digest; imported (and unpacked) when missing."""
        reference = f"cogbuild.local/run:{image.manifest.digest.split(':')[1][:32]}"
        listed = _ctr("images", "ls", "--quiet", f"name=={reference}")
        if listed.returncode == 0 and reference in listed.stdout.split():
            return reference
        importer = subprocess.Popen([CTR, "images", "import", "-"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert importer.stdin is not None and importer.stderr is not None  # both are pipes, as asked above
        try:
            write_oci_archive(image, importer.stdin, reference)  # streamed: no copy of the image on disk
        except BrokenPipeError:
            pass  # ctr stopped reading: its error follows
        finally:
            importer.stdin.close()
        error = importer.stderr.read().decode(errors="replace")
        if importer.wait() != 0:
            raise CogbuildError(f"containerd could not import {image.name}: {last_line(error)}")
        return reference


@dataclass
class ContainerdContainer:
    id: str
    base_url: str
    log_dir: Path

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.id}.log"

    def logs(self) -> str:
        return read_log(self.log_path)

    def alive(self) -> bool:
        listed = _ctr("tasks", "ls")
        return any(line.split()[:1] == [self.id] and line.split()[-1] == "RUNNING"
                   for line in listed.stdout.splitlines())

    def follow_logs(self) -> Callable[[], None]:
        return follow_file(self.log_path)

    def remove(self) -> None:
        """Stop it (SIGTERM, SIGKILL after STOP_GRACE seconds), delete its task, container, snapshot and log;
        never cut short by a signal."""
        with shielded():
            if run_detached([CTR, "tasks", "kill", self.id], capture_output=True).returncode == 0:
                deadline = time.monotonic() + STOP_GRACE
                while self.alive() and time.monotonic() < deadline:
                    time.sleep(0.1)
            run_detached([CTR, "tasks", "delete", "--force", self.id], capture_output=True)
            run_detached([CTR, "containers", "delete", self.id], capture_output=True)
            self.log_path.unlink(missing_ok=True)
