"""Fetch and verify an archive's package indexes: InRelease (gpgv) → Packages.xz (size + sha256).

Index blobs are cached by their signed sha256, so a second lock only re-fetches the small InRelease.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from ..content_store import ContentStore
from ..errors import CogbuildError
from ..http_fetch import raise_if_retryable, retrying
from .release import IndexFile, Release
from .signature import verified_detached, verified_release_text
from .source import Archive, DebianSource

class _NoCompression:
    """lzma's and zlib's decompressor interface, for an uncompressed index."""

    eof, unused_data = True, b""

    def decompress(self, data: bytes) -> bytes:
        return data


# Preferred first: smallest download; all three are what Debian mirrors publish.
_COMPRESSIONS: tuple[tuple[str, Callable[[], Any]], ...] = (
    (".xz", lzma.LZMADecompressor),
    (".gz", lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)),  # gzip framing
    ("", _NoCompression),
)
# Compressed bytes per decompression step (~700 kB of text): hand-offs between threads cost little, and
# the text grows by small pieces, never held twice, whole and in pieces, as one call decompressing all would.
_STEP = 1 << 17


@dataclass(frozen=True)
class PackagesText:
    """One verified Packages index and the archive whose pool its Filenames point into."""

    archive: Archive
    suite: str
    index: IndexFile
    data: bytes  # as downloaded (compressed); its sha256 is index.sha256

    def text(self, copy_to: Callable[[bytes], object] | None = None) -> bytes:
        """The index's decompressed text, also passed to `copy_to` (a write method) piece by piece. Each next piece is
        decompressed in a worker thread while this one is kept and copied (lzma, zlib, hashing and
        writing release the GIL), and the text grows in one buffer, never held twice."""
        step, text = _decompression_steps(self.index, self.data), io.BytesIO()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="debian-index") as pool:
            ahead = pool.submit(step)
            while (piece := ahead.result()) is not None:
                ahead = pool.submit(step)
                text.write(piece)
                if copy_to is not None:
                    copy_to(piece)
        return text.getvalue()  # the buffer itself, not a copy, when nothing else refers to it


def _decompression_steps(index: IndexFile, data: bytes) -> Callable[[], bytes | None]:
    """A function that returns the next piece of decompressed text on each call, None after the last."""
    extension, new_decompressor = next((e, d) for e, d in _COMPRESSIONS if index.path.endswith("Packages" + e))
    decompressor, offset = new_decompressor(), 0

    def step() -> bytes | None:
        nonlocal decompressor, offset
        if offset >= len(data):
            if not decompressor.eof:
                raise CogbuildError(f"{index.path} is not valid {extension} data: it ends mid-stream.")
            return None
        compressed, offset = data[offset : offset + _STEP], offset + _STEP
        out = []
        try:
            while compressed:
                if decompressor.eof:  # the next of several xz streams or gzip members, as `xz -d` reads them
                    decompressor = new_decompressor()
                out.append(decompressor.decompress(compressed))
                compressed = decompressor.unused_data if decompressor.eof else b""
        except (lzma.LZMAError, zlib.error, EOFError) as exc:
            raise CogbuildError(f"{index.path} is not valid {extension or 'text'} data: {exc}.") from None
        return b"".join(out)

    return step


def fetch_packages(
    source: DebianSource, codename: str, arch: str, *, client: httpx.Client, cache: ContentStore
) -> list[PackagesText]:
    """Every Packages index of every archive of `source` for one release codename and architecture."""
    # Archives are independent downloads: fetch them side by side, keep the source's order.
    with ThreadPoolExecutor(max_workers=len(source.archives) or 1) as pool:
        per_archive = pool.map(
            lambda archive: _fetch_archive(archive, source, codename, arch, client=client, cache=cache),
            source.archives,
        )
        return [text for texts in per_archive for text in texts]


def _fetch_archive(
    archive: Archive, source: DebianSource, codename: str, arch: str, *, client: httpx.Client, cache: ContentStore
) -> list[PackagesText]:
    suite = archive.suite_for(codename)
    release = _fetch_release(archive, suite, client=client, source=source)
    texts = []
    for component in source.components:
        for index_arch in _index_arches(release, component, arch):
            index = _pick_index(release, f"{component}/binary-{index_arch}/Packages", archive, suite)
            if index is None:
                continue
            data = _fetch_index(archive, suite, release, index, client=client, cache=cache)
            texts.append(PackagesText(archive, suite, index, data))
    return texts


def _dists_url(archive: Archive, suite: str, path: str) -> str:
    return f"{archive.base()}/dists/{suite}/{path}"


def _fetch_release(archive: Archive, suite: str, *, client: httpx.Client, source: DebianSource) -> Release:
    url = _dists_url(archive, suite, "InRelease")
    inrelease = _get(client, url, missing_ok=True)
    if inrelease is not None:
        signed = verified_release_text(inrelease, keyring=source.keyring, what=url)
    else:
        # Older or third-party archives publish only Release with a detached Release.gpg (apt's fallback).
        url = _dists_url(archive, suite, "Release")
        signature = _get(client, url + ".gpg", missing_ok=True)
        if signature is None:
            raise CogbuildError(
                f"{archive.base()} has no suite '{suite}' (neither dists/{suite}/InRelease nor Release.gpg exists)."
            )
        signed = verified_detached(_get(client, url), signature, keyring=source.keyring, what=url)
    return Release.parse(signed, expected_suite=suite, what=url, check_valid_until=source.check_valid_until)


def _index_arches(release: Release, component: str, arch: str) -> list[str]:
    # apt's rule: binary-all is a separate index only when the Release lists "all" among its
    # Architectures and does not say "No-Support-for-Architecture-all: Packages" (Debian's main
    # archive says so and repeats arch-"all" packages in every binary-<arch>).
    arches = [arch]
    if "all" in release.architectures and not release.all_in_arch_indexes:
        arches.append("all")
    return arches


def _pick_index(release: Release, stem: str, archive: Archive, suite: str) -> IndexFile | None:
    for extension, _ in _COMPRESSIONS:
        index = release.files.get(stem + extension)
        if index is not None:
            return index
    if stem.endswith("binary-all/Packages"):
        return None
    raise CogbuildError(f"{_dists_url(archive, suite, 'InRelease')} lists no {stem} index.")


def _fetch_index(
    archive: Archive, suite: str, release: Release, index: IndexFile, *, client: httpx.Client, cache: ContentStore
) -> bytes:
    cached = cache.get_bytes(index.sha256)
    if cached is not None:
        return cached
    url = _dists_url(archive, suite, index.path)
    if release.by_hash:
        # by-hash names the exact signed file, so a mirror updating mid-fetch cannot mix versions;
        # like apt, fall back to the plain path when a mirror lacks the by-hash copy.
        directory = index.path.rsplit("/", 1)[0]
        by_hash = _dists_url(archive, suite, f"{directory}/by-hash/SHA256/{index.sha256}")
        data = _get(client, by_hash, limit=index.size, missing_ok=True)
        if data is None:
            data = _get(client, url, limit=index.size)
        else:
            url = by_hash
    else:
        data = _get(client, url, limit=index.size)
    if len(data) != index.size or hashlib.sha256(data).hexdigest() != index.sha256:
        raise CogbuildError(f"{url} does not match the size and sha256 its signed InRelease lists.")
    cache.put_bytes(data)
    return data


def _get(client: httpx.Client, url: str, *, limit: int | None = None, missing_ok: bool = False):
    """GET a URL whole under the download policy; with `limit`, stop reading once the body is longer
    than the signed size.

    With missing_ok, a 404 returns None instead of raising.
    """
    def once() -> bytes | None:
        with client.stream("GET", url) as response:
            if missing_ok and response.status_code == 404:
                return None
            raise_if_retryable(response)
            if response.status_code != 200:
                raise CogbuildError(f"Could not fetch {url}: HTTP {response.status_code}.")
            chunks, total = [], 0
            for chunk in response.iter_bytes():
                total += len(chunk)
                if limit is not None and total > limit:
                    raise CogbuildError(f"{url} is larger than the size its signed InRelease lists.")
                chunks.append(chunk)
            return b"".join(chunks)

    try:
        return retrying(once)
    except httpx.HTTPError as exc:
        raise CogbuildError(f"Could not fetch {url}: {exc}.") from None
