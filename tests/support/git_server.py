"""A git repository served by `git daemon` on 127.0.0.1 (git:// protocol), for git+ requirements."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from components import require
from oci_registry_server import free_port

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
           "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"}


def commit_repo(path: Path, files: dict[str, str]) -> str:
    """A repository at `path` holding `files` in one commit; returns the commit id."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "one"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, env=GIT_ENV)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout.strip()


class GitDaemon:
    """Serves every repository below `base` as git://127.0.0.1:PORT/<name>."""

    def __init__(self, base: Path) -> None:
        require("git")
        self.base, self.port = base, free_port()
        self.url = f"git://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "GitDaemon":
        self.process = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={self.base}", "--listen=127.0.0.1",
             f"--port={self.port}", str(self.base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("git daemon did not start listening")

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
