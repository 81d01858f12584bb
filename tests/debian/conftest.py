"""Fixtures for the Debian resolver: a generated signing key, a fixture archive and a loopback HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from debian_fixture_repo import FixtureRepo, SigningKey, require_tools
from http_server import LoopbackHTTPServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network: reaches the real Debian archive (deb.debian.org)")


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    require_tools("gpg", "gpgv", "gpgconf", "dpkg-deb")
    key = SigningKey.generate(tmp_path_factory.mktemp("archive-key"))
    yield key
    key.close()


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKey]:
    """A key that is not in the archive keyring: what an attacker would sign with."""
    require_tools("gpg")
    key = SigningKey.generate(tmp_path_factory.mktemp("other-key"), name="someone else")
    yield key
    key.close()


@pytest.fixture
def expired_key(tmp_path: Path) -> Iterator[SigningKey]:
    """A key made on 2000-01-01 that expired a day later."""
    require_tools("gpg")
    key = SigningKey.generate(tmp_path / "expired-key", expired_since="20000101T000000")
    yield key
    key.close()


@pytest.fixture
def repo(tmp_path: Path, signing_key: SigningKey) -> FixtureRepo:
    return FixtureRepo(tmp_path / "repo", signing_key)


@pytest.fixture
def serve() -> Iterator:
    """serve(directory) -> base URL of a loopback HTTP server for that directory (stopped after the test)."""
    servers: list[LoopbackHTTPServer] = []

    def start(directory: Path) -> str:
        servers.append(LoopbackHTTPServer(directory=directory))
        return servers[-1].url

    yield start
    for server in servers:
        server.close()
