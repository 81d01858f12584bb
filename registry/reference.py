"""Image references as users type them: `host[:port]/path/name[:tag][@sha256:…]`, Docker's defaults included."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from cogbuild.layers.descriptor import Digest, is_digest

from .errors import InvalidReference

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")


@dataclass(frozen=True)
class Reference:
    """A parsed reference; `tag` and `digest` may both be set (the digest wins for fetching)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Reference":
        return parse_reference(text)

    @property
    def api_host(self) -> str:
        """Where the HTTP API lives (Docker Hub serves its API from another host)."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.registry)

    @property
    def name(self) -> str:
        """`registry/repository`, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def target(self) -> str:
        """What to put after /manifests/: the digest when known, else the tag (default `latest`)."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> "Reference":
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> "Reference":
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str | Reference) -> Reference:
    """Parse `text`, applying Docker's defaults (docker.io, library/) when no registry is named."""
    if isinstance(text, Reference):
        return text
    rest = text.strip()
    if not rest:
        raise InvalidReference("the image reference is empty")
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not is_digest(digest):
            raise InvalidReference(f"image reference {text!r} has an invalid digest (expected sha256:<64 hex>)")
    tag = None
    last_slash = rest.rfind("/")
    if ":" in rest[last_slash + 1:]:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"image reference {text!r} has an invalid tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repository = first, remainder
    else:
        registry, repository = DOCKER_HUB, rest
        if "/" not in repository:
            repository = f"library/{repository}"
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if not repository or not all(_PATH_COMPONENT.fullmatch(p) for p in repository.split("/")):
        raise InvalidReference(
            f"image reference {text!r} has an invalid repository name {repository!r} "
            "(lowercase letters, digits and . _ - separators only)"
        )
    return Reference(registry, repository, tag, digest)


def is_loopback_host(registry: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1, with or without a port."""
    host = registry
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def fallback_tag(digest: str) -> str:
    """The tag under which a registry without the referrers API lists what is attached to `digest`."""
    checked = Digest(digest)
    return f"{checked.algorithm}-{checked.hex}"
