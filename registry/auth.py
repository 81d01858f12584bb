"""Registry credentials and challenges, for both clients (the full one in client.py, the light one in light.py).

Credentials come from Docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
inline `auths`, `credHelpers` and `credsStore` (a `docker-credential-*` program). A registry answers 401
with a challenge: `Basic` gets the credentials, `Bearer realm=…,service=…,scope=…` gets a token from the
realm. Each scope keeps its own token, since a push touches the pull scope of one repository, the push
scope of another and, for mounts, the pull scope of a third. Only the standard library is imported here
(the token request goes through wire.py), so a command that only asks questions loads no HTTP library.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from .errors import OCIError
from cogbuild.layers.atomic import atomic_write

from .reference import DOCKER_HUB
from .wire import exchange

TOKEN_TIMEOUT = (10, 60)  # connect, read (seconds) for a token service
TOKEN_MAX = 1 << 20  # a token answer is a small JSON object
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io")
_CHALLENGE_PARAMETER = re.compile(r'([A-Za-z]+)="([^"]*)"')


@dataclass(frozen=True)
class Challenge:
    """A WWW-Authenticate header: its scheme (lowercase) and the Bearer parameters."""

    scheme: str
    realm: str | None = None
    service: str | None = None
    scope: str | None = None


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    parameters = {name.lower(): value for name, value in _CHALLENGE_PARAMETER.findall(rest)}
    return Challenge(scheme.lower(), parameters.get("realm"), parameters.get("service"), parameters.get("scope"))


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


def basic_credentials(registry: str) -> str | None:
    """The base64 `user:password` Docker's config holds for `registry`, or None.

    For each name the registry may be stored under: an inline `auths` entry, then its `credHelpers`
    program, then the `credsStore` program. A helper that is missing or fails counts as no credentials.
    """
    path = docker_config_path()
    if not path.exists():
        return None
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise OCIError(f"cannot read registry credentials from {path}: {exc}") from None
    auths, helpers = config.get("auths") or {}, config.get("credHelpers") or {}
    for key in config_keys(registry):
        inline = (auths.get(key) or {}).get("auth") if isinstance(auths.get(key), dict) else None
        if inline:
            return str(inline)
        for helper in (helpers.get(key), config.get("credsStore")):
            found = _helper_get(helper, key) if helper else None
            if found:
                return found
    return None


def _helper_get(helper: str, server: str) -> str | None:
    import subprocess  # only a credential helper needs it, not the questions of an unchanged push

    try:
        done = subprocess.run([f"docker-credential-{helper}", "get"], input=server.encode(), capture_output=True,
                              check=True, timeout=60)
        answer = json.loads(done.stdout)
        return basic_token(answer["Username"], answer["Secret"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def basic_token(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth:
    """Answers one registry's challenges; thread-safe, one bearer token per scope."""

    def __init__(self, registry: str, *, tls_verify: bool = True, plain_http: bool = False) -> None:
        self.registry = registry
        self._tls_verify = tls_verify
        self._plain_http = plain_http  # the user accepted plain HTTP for this registry (loopback or --insecure)
        self._basic_auth: str | None = basic_credentials(registry)
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()
        self._scope_locks: dict[str, threading.Lock] = {}

    @property
    def has_credentials(self) -> bool:
        return bool(self._basic_auth)

    def use_credentials(self, username: str, password: str) -> None:
        with self._lock:
            self._basic_auth = basic_token(username, password)
            self._tokens.clear()

    # -- challenges -----------------------------------------------------------------------------
    def answer(self, challenge: str, scope: str, sent: dict[str, str]) -> dict[str, str] | None:
        """Headers that answer a WWW-Authenticate challenge, or None when there is nothing to try.

        `sent` is what the refused request carried: when another thread has meanwhile earned a
        different token for the scope, that one is tried instead of asking the realm again.
        """
        parsed = parse_challenge(challenge)
        if parsed.scheme == "basic":
            if not self._basic_auth:
                return None
            with self._lock:
                self._tokens[scope] = ""  # remembered: this registry takes Basic for the scope
            return {"Authorization": f"Basic {self._basic_auth}"}
        if parsed.scheme != "bearer" or not parsed.realm:
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

    def request_token(self, challenge: Challenge) -> str | None:
        """A bearer token from the challenge's realm, with the checks a registry answer needs.

        The realm is the registry's word: credentials go to it only over HTTPS, or over plain HTTP when
        the registry itself is spoken to that way; the request has a timeout, follows no redirect, and its
        answer must be a JSON object holding a token.
        """
        realm = challenge.realm or ""
        realm = realm if "://" in realm else f"https://{realm}"
        scheme = urlsplit(realm).scheme
        if scheme != "https" and not (scheme == "http" and self._plain_http):
            raise OCIError(f"registry {self.registry} asks for credentials at {realm!r}; cogbuild sends them "
                           "over HTTPS only (plain HTTP only to a registry reached that way)")
        query = urlencode([(key, value) for key, value in (("service", challenge.service),
                                                           ("scope", challenge.scope)) if value])
        headers = {"Accept": "application/json"}
        if self._basic_auth:
            headers["Authorization"] = f"Basic {self._basic_auth}"
        try:
            response = exchange("GET", f"{realm}{'&' if '?' in realm else '?'}{query}" if query else realm, headers,
                                timeouts=TOKEN_TIMEOUT, limit=TOKEN_MAX, tls_verify=self._tls_verify)
            answer = json.loads(response.body) if response.status == 200 else None
        except (OSError, ValueError) as exc:  # wire.ProtocolError is an OSError
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
        config.setdefault("auths", {})[registry] = {"auth": basic_token(username, password)}
        where = str(path)
    _write_private(path, json.dumps(config, indent=2).encode() + b"\n")
    return where


def _helper_store(helper: str, registry: str, username: str, password: str) -> None:
    program = f"docker-credential-{helper}"
    payload = json.dumps({"ServerURL": registry, "Username": username, "Secret": password}).encode()
    import subprocess  # as in _helper_get

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
