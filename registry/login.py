"""Log in: prove the credentials against the registry's /v2/ endpoint, then store them like Docker."""

from __future__ import annotations

from .auth import store_credentials
from .client import RegistryClient, RegistryError
from .reference import DOCKER_HUB, parse_reference

_DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"  # the key `docker login` uses for Docker Hub


def login(registry: str, username: str, password: str, *, insecure: bool = False) -> str:
    """Check and store credentials for `registry`; return where they were stored."""
    host = parse_reference(f"{registry}/probe").registry if registry != DOCKER_HUB else DOCKER_HUB
    api_host = parse_reference(f"{host}/probe").api_host
    client = RegistryClient(host, api_host, insecure=insecure)
    client.auth.use_credentials(username, password)
    try:
        client.request("GET", client.url(""), repository="", scope="login", action="log in to")
    except RegistryError as exc:
        if exc.status == 401:
            raise RegistryError(f"registry {host} rejected the username {username!r} or its password", 401) from None
        raise
    return store_credentials(_DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host, username, password)
