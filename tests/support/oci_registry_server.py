"""A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1.

Three modes: anonymous, htpasswd Basic auth, and bearer tokens issued by TokenServer (a tiny token
service in a thread, signing RS256 JWTs with a throwaway certificate made by `openssl`).
Any test can use it: `RegistryServer(tmp_path).start()`.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


from components import require  # noqa: F401  (tests import it from here too)
from http_server import LoopbackHTTPServer, Reply, Request, free_port  # noqa: F401  (free_port: as above)

REGISTRY_BINARY = "docker-registry"
USER, PASSWORD = "tester", "s3cret-pass"  # the account the auth fixtures accept


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the test process dies, so no registry outlives a killed run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _on_main_thread() -> bool:
    # PR_SET_PDEATHSIG fires when the parent *thread* ends: only tie the registry to a lasting thread.
    return threading.current_thread() is threading.main_thread()


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt  # test dependency: distribution accepts only bcrypt entries

    return f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}"


class RegistryServer:
    """One registry process; stop() and start() again keep port and storage (for interruption tests)."""

    def __init__(self, workdir: Path, *, auth: dict | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage = workdir / "storage"
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.auth = auth
        self.process: subprocess.Popen | None = None
        self.config = workdir / "config.yml"
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            "version: 0.1",
            "log: {level: error, accesslog: {disabled: true}}",
            "storage:",
            f"  filesystem: {{rootdirectory: {self.storage}}}",
            "  delete: {enabled: true}",
            "http:",
            f"  addr: {self.host}",
            "  secret: cogbuild-test-secret",
        ]
        if self.auth:
            lines.append("auth: " + json.dumps(self.auth))
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> "RegistryServer":
        binary = require(REGISTRY_BINARY)
        log = open(self.workdir / "registry.log", "ab")
        self.process = subprocess.Popen([binary, "serve", str(self.config)], stdout=log, stderr=log,
                                        preexec_fn=_die_with_parent if _on_main_thread() else None)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.workdir / 'registry.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401: up, and asking for auth
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start within 15 s")

    def stop(self, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(10)
        self.process = None


class TokenServer(LoopbackHTTPServer):
    """Docker token auth (realm/service/scope): grants what the user asks, to known users only."""

    service = "cogbuild-test"
    issuer = "cogbuild-test-issuer"

    def __init__(self, workdir: Path, users: dict[str, str], *, anonymous_pull: bool = False,
                 denied: set[str] = frozenset()) -> None:
        openssl = require("openssl")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.key = workdir / "token.key"
        self.cert = workdir / "token.crt"
        subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "1", "-subj", "/CN=cogbuild-test-token"],
                       check=True, capture_output=True)
        der = "".join(line for line in self.cert.read_text().splitlines() if not line.startswith("-----"))
        self._header = {"alg": "RS256", "typ": "JWT", "x5c": [der]}
        self.users = users
        self.anonymous_pull = anonymous_pull
        self.denied = set(denied)  # repositories nobody gets any access to
        self.tokens_issued: list[dict] = []  # {"user": name or None, "scopes": [...]} per token, in order
        super().__init__(self._answer)
        self.realm = f"{self.url}/token"

    def registry_auth(self) -> dict:
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.cert)}}

    def _sign(self, claims: dict) -> str:
        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        signing_input = b64(json.dumps(self._header).encode()) + "." + b64(json.dumps(claims).encode())
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), capture_output=True, check=True).stdout
        return signing_input + "." + b64(signature)

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            allowed = wanted if user else [a for a in wanted if a == "pull" and self.anonymous_pull]
            if name in self.denied:
                allowed = []
            if allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        return access

    def _answer(self, request: Request) -> Reply:
        query = parse_qs(urlsplit(request.path).query)
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return Reply(401)
            user = name
        self.tokens_issued.append({"user": user, "scopes": scopes})
        now = int(time.time())
        token = self._sign({"iss": self.issuer, "sub": user or "", "aud": self.service,
                            "exp": now + 300, "nbf": now - 10, "iat": now,
                            "jti": base64.b16encode(os.urandom(8)).decode(),
                            "access": self._grant(user, scopes)})
        return Reply(200, {"Content-Type": "application/json"},
                     json.dumps({"token": token, "expires_in": 300}).encode())


class CuttingProxy:
    """A TCP proxy to a registry that resets the connection once, after `cut_after` bytes upstream
    (or downstream).

    Models a connection reset mid-transfer: the other side has already received part of the body.
    """

    def __init__(self, target_port: int, cut_after: int, *, downstream: bool = False) -> None:
        self.downstream = downstream  # count (and cut) the registry's answers instead of requests
        self.target_port = target_port
        self.cut_after = cut_after
        self.cut = threading.Event()
        self._sent = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pipe, args=(client, upstream, not self.downstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.downstream), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted and not self.cut.is_set():
                    with self._lock:
                        self._sent += len(data)
                        cut_now = self._sent >= self.cut_after
                    if cut_now:
                        self.cut.set()
                        sink.sendall(data[: len(data) // 2])  # part of it reaches the registry
                        break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the partner thread blocked in recv on it
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._listener.close()


class FakeReferrersRegistry(LoopbackHTTPServer):
    """Just enough of a registry with the OCI 1.1 referrers API (answers PUT with OCI-Subject)."""

    def __init__(self) -> None:
        self.manifests: dict[str, bytes] = {}
        self.puts: list[str] = []
        super().__init__(self._answer)

    def _answer(self, request: Request) -> Reply:
        if request.method == "HEAD":
            return Reply(200)  # every blob "exists"
        name = request.path.rsplit("/", 1)[-1]
        if request.method == "PUT":
            self.puts.append(name)
            self.manifests[name] = request.body
            subject = json.loads(request.body).get("subject", {}).get("digest")
            return Reply(201, {"OCI-Subject": subject} if subject else {})
        if request.method == "GET" and "/referrers/" in request.path:
            return Reply(200, {"Content-Type": "application/vnd.oci.image.index.v1+json"}, self._referrers(name))
        return Reply(404)

    def _referrers(self, subject: str) -> bytes:
        entries = []
        for digest, body in self.manifests.items():
            doc = json.loads(body)
            if doc.get("subject", {}).get("digest") == subject:
                entries.append({"mediaType": doc["mediaType"], "digest": digest, "size": len(body),
                                "artifactType": doc["artifactType"]})
        return json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
