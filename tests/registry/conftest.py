"""Fixtures: real registries on loopback (anonymous, Basic, bearer token) and a private Docker config."""

from __future__ import annotations

import urllib.parse

import pytest

from cogbuild.registry.client import RegistryClient

from cogbuild.registry.layout import Layout
from oci_registry_server import PASSWORD, USER, RegistryServer, TokenServer, htpasswd_line


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Credentials and caches of the test only, never the developer's."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "home" / ".docker"))
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COGBUILD_STORE", str(tmp_path / "local-store"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)


@pytest.fixture
def registry_requests(monkeypatch) -> list[tuple[str, str]]:
    """(method, path) of every request a RegistryClient sends during the test (clear it to start counting)."""
    sent: list[tuple[str, str]] = []
    send = RegistryClient.request

    def recording(self, method, url, **kwargs):
        sent.append((method, urllib.parse.urlsplit(url).path))
        return send(self, method, url, **kwargs)

    monkeypatch.setattr(RegistryClient, "request", recording)
    return sent


@pytest.fixture
def registry(tmp_path):
    server = RegistryServer(tmp_path / "registry").start()
    yield server
    server.stop()


@pytest.fixture
def basic_registry(tmp_path):
    (tmp_path / "htpasswd").write_text(htpasswd_line(USER, PASSWORD) + "\n")
    auth = {"htpasswd": {"realm": "cogbuild-test", "path": str(tmp_path / "htpasswd")}}
    server = RegistryServer(tmp_path / "registry-basic", auth=auth).start()
    yield server
    server.stop()


@pytest.fixture
def token_server(tmp_path):
    tokens = TokenServer(tmp_path / "tokens", {USER: PASSWORD})
    yield tokens
    tokens.close()


@pytest.fixture
def token_registry(tmp_path, token_server):
    server = RegistryServer(tmp_path / "registry-token", auth=token_server.registry_auth()).start()
    yield server
    server.stop()


@pytest.fixture
def layout(tmp_path):
    return Layout(tmp_path / "store").init()
