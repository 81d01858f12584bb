"""Fixtures of the CLI tests that more than one file uses."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from cli_helpers import Run, cogbuild, copy_model, isolated_env, require
from oci_registry_server import RegistryServer


@pytest.fixture(scope="session")
def locked_model(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """tests/cli/models/filecopy with its lock (made once: it needs PyPI and Debian), and an environment whose
    download and layer caches later builds share."""
    root = tmp_path_factory.mktemp("locked-model")
    model = copy_model("filecopy", root / "filecopy")
    env = isolated_env(root)
    locked = cogbuild(["lock"], model, env)
    assert locked.code == 0, f"locking the test model failed:\n{locked.err}"
    return model, env


@dataclass
class PushedModel:
    model: Path
    env: dict[str, str]
    ref: str
    registry: RegistryServer
    first: Run  # the push that built the image and sent it

    def push(self, *args: str) -> Run:
        return cogbuild(["push", self.ref, *args], self.model, self.env)


@pytest.fixture
def pushed_model(tmp_path, locked_model) -> Iterator[PushedModel]:
    """A copy of the locked model, built and pushed once to a loopback docker-registry of its own."""
    require("docker-registry")
    source, env = locked_model
    model = Path(shutil.copytree(source, tmp_path / "model"))
    registry = RegistryServer(tmp_path / "registry").start()
    try:
        pushed = PushedModel(model, {**env, "DOCKER_CONFIG": str(tmp_path / "docker")},
                             f"{registry.host}/tests/model:v1", registry, Run(0, "", ""))
        pushed.first = pushed.push()
        assert pushed.first.code == 0, pushed.first.err
        yield pushed
    finally:
        registry.stop()
