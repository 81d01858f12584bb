"""Registry credentials and challenges, through oras' auth backend.

Credentials come from Docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
inline `auths`, `credHelpers` and `credsStore` (a `docker-credential-*` program). A registry answers 401
with a challenge: `Basic` gets the credentials, `Bearer realm=…,service=…,scope=…` gets a token from the
realm. oras reuses one token for every scope; here each scope keeps its own, since a push touches the
pull scope of one repository, the push scope of another and, for mounts, the pull scope of a third.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from pathlib import Path
from urllib.parse import urlsplit

import oras.auth
import oras.auth.utils as oras_auth_utils
import requests

from .errors import OCIError
from cogbuild.layers.atomic import atomic_write

from .reference import DOCKER_HUB

TOKEN_TIMEOUT = (10, 60)  # connect, read (seconds) for a token service
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")


def docker_config_path() -> Path:
    """Where Docker (and so cogbuild) keeps credentials: $DOCKER_CONFIG or ~/.docker."""
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return Path(base) / "config.json"


def config_keys(registry: str) -> list[str]:
    """The names a registry may be stored under in config.json."""
    keys = [registry]
    if registry == DOCKER_HUB:
        keys += list(_DOCKER_HUB_KEYS)
    elif registry.startswith("localhost"):
        keys.append(registry.replace("localhost", "127.0.0.1", 1))
    elif registry.startswith("127.0.0.1"):
        keys.append(registry.replace("127.0.0.1", "localhost", 1))
    return keys


class RegistryAuth(oras.auth.TokenAuth):
    """Answers one registry's challenges; thread-safe, one bearer token per scope."""

    def __init__(self, registry: str, session: requests.Session, *, tls_verify: bool = True,
                 plain_http: bool = False) -> None:
        super().__init__()
        self.registry = registry
        self.session = session
        self._tls_verify = tls_verify
        self._plain_http = plain_http  # the user accepted plain HTTP for this registry (loopback or --insecure)
        self._basic_auth: str | None = None
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}
        self._load_credentials()

    # -- credentials ----------------------------------------------------------------------------
    def _load_credentials(self) -> None:
        path = docker_config_path()
        if not path.exists():
            return
        try:
            self._auth_config = oras_auth_utils.load_configs([str(path)])
        except (OSError, ValueError) as exc:
            raise OCIError(f"cannot read registry credentials from {path}: {exc}") from None
        for key in config_keys(self.registry):
            if self._load_auth(key):  # oras: auths, then credHelpers, then credsStore
                return

    @property
    def has_credentials(self) -> bool:
        return bool(self._basic_auth)

    def use_credentials(self, username: str, password: str) -> None:
        self.set_basic_auth(username, password)
        with self._lock:
            self._tokens.clear()

    # -- challenges -----------------------------------------------------------------------------
    def answer(self, challenge: str, scope: str, sent: dict[str, str]) -> dict[str, str] | None:
        """Headers that answer a WWW-Authenticate challenge, or None when there is nothing to try.

        `sent` is what the refused request carried: when another thread has meanwhile earned a
        different token for the scope, that one is tried instead of asking the realm again.
        """
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            if not self._basic_auth:
                return None
            with self._lock:
                self._tokens[scope] = ""  # remembered: this registry takes Basic for the scope
            return {"Authorization": f"Basic {self._basic_auth}"}
        if scheme != "bearer":
            return None
        parsed = oras_auth_utils.parse_auth_header(challenge)
        if not parsed.realm:
            return None
        with self._scope_lock(scope):
            current = self.header_for_scope(scope)
            if current and current != {k: v for k, v in sent.items() if k == "Authorization"}:
                return current
            token = self.request_token(parsed)  # GET realm?service&scope, Basic credentials if any
            if not token:
                return None
            with self._lock:
                self._tokens[scope] = token
        return {"Authorization": f"Bearer {token}"}

    def request_token(self, challenge: oras_auth_utils.authHeader) -> str | None:
        """A bearer token from the challenge's realm (oras' version, with the checks a registry answer needs).

        The realm is the registry's word: credentials go to it only over HTTPS, or over plain HTTP when
        the registry itself is spoken to that way; the request has a timeout and its answer must be a
        JSON object holding a token.
        """
        realm = challenge.realm if "://" in challenge.realm else f"https://{challenge.realm}"
        scheme = urlsplit(realm).scheme
        if scheme != "https" and not (scheme == "http" and self._plain_http):
            raise OCIError(f"registry {self.registry} asks for credentials at {realm!r}; cogbuild sends them "
                           "over HTTPS only (plain HTTP only to a registry reached that way)")
        params = {key: value for key, value in (("service", challenge.service), ("scope", challenge.scope))
                  if value}
        headers = {"Accept": "application/json"}
        if self._basic_auth:
            headers["Authorization"] = f"Basic {self._basic_auth}"
        try:
            response = self.session.get(realm, headers=headers, params=params, verify=self._tls_verify,
                                        timeout=TOKEN_TIMEOUT)
            answer = response.json() if response.status_code == 200 else None
        except (requests.exceptions.RequestException, ValueError) as exc:
            raise OCIError(f"the token service {realm} of registry {self.registry} failed: "
                           f"{exc.__class__.__name__}") from None
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        return token if isinstance(token, str) and token else None

    def _scope_lock(self, scope: str) -> threading.Lock:
        with self._lock:
            return self._scope_locks.setdefault(scope, threading.Lock())

    def header_for_scope(self, scope: str) -> dict[str, str]:
        with self._lock:
            if scope not in self._tokens:
                return {}
            token = self._tokens[scope]
        if token:
            return {"Authorization": f"Bearer {token}"}
        return {"Authorization": f"Basic {self._basic_auth}"} if self._basic_auth else {}


def store_credentials(registry: str, username: str, password: str, *, path: Path | None = None) -> str:
    """Save credentials the way `docker login` does; returns where they went.

    With a `credsStore` (or a `credHelpers` entry for this registry) the secret goes to that
    `docker-credential-*` program; otherwise it is written base64-encoded under `auths`.
    """
    path = path or docker_config_path()
    try:
        config = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise OCIError(f"cannot read {path}: {exc}") from None
    helper = (config.get("credHelpers") or {}).get(registry) or config.get("credsStore")
    if helper:
        _helper_store(helper, registry, username, password)
        config.setdefault("auths", {}).setdefault(registry, {})
        config["auths"][registry].pop("auth", None)
        where = f"docker-credential-{helper}"
    else:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        config.setdefault("auths", {})[registry] = {"auth": token}
        where = str(path)
    _write_private(path, json.dumps(config, indent=2).encode() + b"\n")
    return where


def _helper_store(helper: str, registry: str, username: str, password: str) -> None:
    program = f"docker-credential-{helper}"
    payload = json.dumps({"ServerURL": registry, "Username": username, "Secret": password}).encode()
    try:
        subprocess.run([program, "store"], input=payload, capture_output=True, check=True)
    except FileNotFoundError:
        raise OCIError(f"credential helper {program} named in {docker_config_path()} is not on PATH") from None
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode(errors="replace").strip() or f"exit status {exc.returncode}"
        raise OCIError(f"credential helper {program} could not store credentials: {message}") from None


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600: the file holds secrets."""
    atomic_write(path, data, mode=0o600)
