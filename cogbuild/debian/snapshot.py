"""snapshot.debian.org as a fallback for .debs the archive no longer serves (a superseded point release).

Debian's pool drops a package version once a newer one replaces it; snapshot.debian.org keeps every file
ever published. Its machine-readable API answers, for a binary package name and version (both in
cog.lock), where each of its files was first seen; that gives archive URLs of the exact file. The file's
sha256 is checked against the lock as for any download, so the snapshot is not trusted more than the mirror.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..artifacts import Artifact
from ..settings import DEFAULT_DEBIAN_SNAPSHOT

if TYPE_CHECKING:
    import httpx

SNAPSHOT_ENV = "COGBUILD_DEBIAN_SNAPSHOT"  # another snapshot service's base URL, or "off"
SNAPSHOT = DEFAULT_DEBIAN_SNAPSHOT


def binfiles_url(artifact: Artifact, base: str = SNAPSHOT) -> str:
    """The API query listing the files of the locked package version, with where each was first seen."""
    return f"{base}/mr/binary/{quote(artifact.name, safe='')}/{quote(artifact.version, safe='')}/binfiles?fileinfo=1"


def file_urls(artifact: Artifact, answer: Any, base: str = SNAPSHOT) -> list[str]:
    """Archive URLs of the locked file (same file name: package, version and architecture) in an answer to
    `binfiles_url`; oldest first. Anything malformed in the answer gives no URL rather than an error."""
    fileinfo = answer.get("fileinfo") if isinstance(answer, dict) else None
    seen: list[tuple[str, str]] = []
    for entries in (fileinfo.values() if isinstance(fileinfo, dict) else ()):
        for entry in entries if isinstance(entries, list) else ():
            if not isinstance(entry, dict) or entry.get("name") != artifact.filename:
                continue
            archive, first_seen, path = entry.get("archive_name"), entry.get("first_seen"), entry.get("path")
            if (isinstance(archive, str) and isinstance(first_seen, str) and isinstance(path, str) and archive
                    and first_seen and path.startswith("/")):
                url = f"{base}/archive/{quote(archive)}/{quote(first_seen)}{quote(path)}/{quote(artifact.filename)}"
                seen.append((first_seen, url))
    return [url for _, url in sorted(set(seen))]


def snapshot_urls(artifact: Artifact, client: httpx.Client, base: str | None) -> list[str]:
    """Where the snapshot service at `base` (snapshot.debian.org; None: none) keeps a locked .deb; none for
    other artifacts or when it cannot be asked."""
    import httpx

    from ..http_fetch import get

    if artifact.kind != "deb" or base is None:
        return []
    try:
        response = get(client, binfiles_url(artifact, base))
        return file_urls(artifact, response.json(), base) if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return []
