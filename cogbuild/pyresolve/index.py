"""Reading package indexes: PEP 691 JSON simple pages (exact sizes and hashes), PEP 503 HTML pages and
--find-links locations (a local directory or an HTML page of links)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from packaging.utils import canonicalize_name

from ..content_store import file_sha256
from ..errors import CogbuildError
from ..layers.descriptor import is_sha256_hex
from .reqfile import normalize_index_url

if TYPE_CHECKING:
    import httpx

# httpx and http_fetch load on the first request that needs them: a warm lock asks its questions with the
# standard library (light_page_digest) and may need neither (httpx brings about 0.2 s of imports).

_ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1"


class IndexFile(NamedTuple):
    """One distribution file offered by an index; size and sha256 are None when the index omits them.

    A NamedTuple, not a frozen dataclass: a lock makes one per file on every page it read (about 50,000
    for torch's closure) after uv answers, and a NamedTuple is made in a third of the time."""

    filename: str
    url: str
    sha256: str | None
    size: int | None
    yanked: bool = False
    requires_python: str | None = None


class Page(NamedTuple):
    """A project's page as the index served it."""

    url: str  # where it was served from, after redirects: relative file URLs are relative to it
    content_type: str
    content: bytes

    @property
    def is_json(self) -> bool:
        """A PEP 691 page (else a PEP 503 HTML one)."""
        return self.content_type.startswith("application/vnd.pypi.simple.v1+json")

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": self.content_type}

    @property
    def text(self) -> str:
        charset = self.content_type.partition("charset=")[2].split(";")[0].strip().strip('"') or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:  # a charset Python does not know
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> dict:
        return json.loads(self.content)


def strip_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))


def _checked_sha256(value: object) -> str | None:
    """An index's sha256 in its exact form, else None: the file is then hashed here, never trusted by name."""
    text = value.lower() if isinstance(value, str) else None
    return text if is_sha256_hex(text) else None


def _files_from_html(page_url: str, html: str) -> list[IndexFile]:
    from html.parser import HTMLParser  # PyPI and most indexes answer in JSON: loaded for the others only

    class LinkParser(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.links: list[dict[str, str | None]] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "a":
                self.links.append(dict(attrs))

    parser = LinkParser()
    parser.feed(html)
    files = []
    for attrs in parser.links:
        href = attrs.get("href")
        if not href:
            continue
        url = urljoin(page_url, href)
        fragment = urlsplit(url).fragment
        sha256 = _checked_sha256(fragment.split("=", 1)[1]) if fragment.startswith("sha256=") else None
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        files.append(IndexFile(filename, strip_fragment(url), sha256, None, "data-yanked" in attrs,
                               attrs.get("data-requires-python")))
    return files


def _absolute_url(page_url: str, href: str) -> str:
    """href made absolute, without fragment. Most index URLs are absolute already: urljoin and
    urlsplit cost about 40 µs each, and torch's page alone lists over a thousand files."""
    if href.startswith(("https://", "http://")) and "#" not in href:
        return href
    return strip_fragment(urljoin(page_url, href))


def _file_from_entry(page_url: str, entry: dict) -> IndexFile:
    return IndexFile(
        filename=entry["filename"],
        url=_absolute_url(page_url, entry["url"]),
        sha256=_checked_sha256(entry.get("hashes", {}).get("sha256")),
        size=entry.get("size"),
        yanked=bool(entry.get("yanked")),
        requires_python=entry.get("requires-python"),
    )


def _files_from_json(page_url: str, data: dict) -> list[IndexFile]:
    return [_file_from_entry(page_url, entry) for entry in data.get("files", [])]


def _files_on_page(page: Page | None) -> list[IndexFile] | None:
    if page is None:
        return None
    if page.is_json:
        return _files_from_json(page.url, page.json())
    return _files_from_html(page.url, page.text)


# A file's sha256 as PyPI writes it: the first (and only) value of its "hashes". A key cannot occur inside
# a JSON string (quotes there are escaped), so when a page holds as many of these, each a lower-case sha256,
# as "filename"s, every file on it states its sha256, and the entries holding a hash can be found without
# parsing the page (torch's closure: 22 MB, 50,000 files, 0.3-0.5 s in json.loads).
_PYPI_SHA256 = b'"hashes": {"sha256": "'
_HEX_DIGITS = b"0123456789abcdef"
_ENTRY_SEARCH = 8  # objects tried backwards from a hash to its file's entry (an entry nests one or two)
_ENTRY_MAX = 1 << 16  # bytes of one file's entry, at most, on a page read this way


def _sha256_places(page: bytes) -> dict[str, list[int]] | None:
    """Where each sha256 stands on a PEP 691 page written as PyPI writes it; None unless every file on the
    page states its sha256 so."""
    pieces = page.split(_PYPI_SHA256)
    values = pieces[1:]
    if len(values) != page.count(b'"filename"') or b"".join(value[64:65] for value in values) != b'"' * len(values) \
            or b"".join(value[:64] for value in values).translate(None, _HEX_DIGITS):
        return None
    places: dict[str, list[int]] = {}
    at = len(pieces[0]) + len(_PYPI_SHA256)
    for value in values:
        places.setdefault(value[:64].decode(), []).append(at)
        at += len(value) + len(_PYPI_SHA256)
    return places


def _entry_around(page: bytes, at: int, is_it: Callable[[dict], bool]) -> tuple[int, dict] | None:
    """The file entry around offset `at` of a PEP 691 page that `is_it` recognises, decoded alone, with its
    offset; None when it cannot be told apart from its page (the caller then parses the page whole)."""
    decoder, opening = json.JSONDecoder(), at
    for _ in range(_ENTRY_SEARCH):
        opening = page.rfind(b"{", 0, opening)
        if opening < 0:
            return None
        try:
            entry, end = decoder.raw_decode(page[opening:opening + _ENTRY_MAX].decode("utf-8", "replace"))
        except ValueError:
            continue
        # `end` counts characters, not bytes: a multi-byte character can only make an entry look shorter.
        if opening + end > at and isinstance(entry, dict) and "filename" in entry and \
                isinstance(entry.get("hashes"), dict) and is_it(entry):
            return opening, entry
    return None


def _release_entries(page: bytes, name: str, version: str) -> list[tuple[int, str, str]]:
    """(offset, file name, sha256) of each file of release `name`==`version` on a page written as PyPI
    writes it (`"filename": "<name>-<version>-….whl", "hashes": {"sha256": "<hex>"`, or an sdist's
    `<name>-<version>.tar.gz`), its name in whatever case and separators it was uploaded with. Found by
    searching for the version (a regular expression per release took longer to compile than to run)."""
    found = []
    needle = b"-" + version.encode()
    at = page.find(needle)
    while at >= 0:
        follows = page[at + len(needle):at + len(needle) + 1]
        if follows in (b"-", b"."):
            entry = _file_entry_at(page, at, len(needle) + 1, name, follows == b".")
            if entry is not None:
                found.append(entry)
        at = page.find(needle, at + 1)
    return found


def _file_entry_at(page: bytes, at: int, needle: int, name: str, sdist: bool) -> tuple[int, str, str] | None:
    """The (offset, file name, sha256) of the entry whose file name holds the release's `-<version>` at
    `at`, when that is where it stands (and not in a URL or another release's name)."""
    opening = page.rfind(b'"', max(0, at - _FILENAME_MAX), at)
    closing = page.find(b'"', at)
    if opening < len(_FILENAME_KEY) - 1 or closing < 0 or \
            page[opening - len(_FILENAME_KEY) + 1:opening + 1] != _FILENAME_KEY:
        return None
    if page[closing:closing + len(_HASH_AFTER_NAME)] != _HASH_AFTER_NAME:
        return None
    filename = page[opening + 1:closing]
    sha256 = page[closing + len(_HASH_AFTER_NAME):closing + len(_HASH_AFTER_NAME) + 64]
    if b"\\" in filename or sha256.translate(None, _HEX_DIGITS) or len(sha256) != 64:
        return None
    if sdist and filename[at + needle - opening - 1:] not in _SDIST_SUFFIXES:
        return None
    if canonicalize_name(filename[:at - opening - 1].decode("utf-8", "replace")) != name:
        return None
    return opening - len(_FILENAME_KEY) + 1, filename.decode("utf-8", "replace"), sha256.decode()


_HASH_AFTER_NAME = b'", "hashes": {"sha256": "'
_SDIST_SUFFIXES = {b"tar.gz", b"zip", b"tar.bz2", b"tar.xz", b"tgz", b"tar"}


_FILENAME_KEY = b'"filename": "'
_FILENAME_MAX = 1024  # bytes of a file name, at most, read this way


def _any_file(filename: str) -> bool:
    return True


def _holding(sha256: str) -> Callable[[dict], bool]:
    return lambda entry: entry["hashes"].get("sha256") == sha256


def _named(filename: str, sha256: str) -> Callable[[dict], bool]:
    return lambda entry: entry["filename"] == filename and entry["hashes"].get("sha256") == sha256


def _files_in_directory(directory: Path) -> list[IndexFile]:
    return [
        IndexFile(path.name, path.resolve().as_uri(), None, path.stat().st_size)
        for path in sorted(directory.iterdir())
        if path.is_file()
    ]


class IndexClient:
    """Fetches project pages from indexes and find-links locations, one HTTP client for all."""

    def __init__(self) -> None:
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._find_links_cache: dict[str, list[IndexFile]] = {}
        self._pages: dict[tuple[str, str], list[IndexFile] | None] = {}
        self._responses: dict[tuple[str, str], Page | None] = {}
        self._places: dict[tuple[str, str], dict[str, list[int]] | None] = {}  # _sha256_places of JSON pages
        self._every_file_hashed: dict[tuple[str, str], bool] = {}
        # sha256 of each page's bytes as fetched (ABSENT for a 404): what a resolution read of the index.
        self.page_digests: dict[tuple[str, str], str] = {}

    @property
    def http(self) -> httpx.Client:
        """The HTTP client, made on first use; also for readers of whole files and ranges (lazywheel)."""
        with self._client_lock:
            if self._client is None:
                from ..http_fetch import new_client

                # trust_env (the default): SSL_CERT_FILE, proxies and .netrc as the user set them; every
                # fetch retried as http_fetch's policy says.
                self._client = new_client()
            return self._client

    def close(self) -> None:
        """Close the HTTP client and let go of the pages: a lock's are 22 MB, which the proxy's reference
        cycles would otherwise keep until the process ends."""
        if self._client is not None:
            self._client.close()
        self._pages.clear()
        self._responses.clear()
        self._places.clear()

    def __enter__(self) -> IndexClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def project_files(self, index_url: str, name: str) -> list[IndexFile] | None:
        """Files of project `name` on a simple index; None when the index does not have the project.

        Pages are kept for the client's lifetime (one lock), so pip's proxy, pinning and error
        messages all see the same answer from the index."""
        key = (normalize_index_url(index_url), canonicalize_name(name))
        if key not in self._pages:
            self._pages[key] = _files_on_page(self.page_response(*key))
        return self._pages[key]

    def files_with_sha256(self, index_url: str, name: str, hashes: set[str]) -> list[IndexFile] | None:
        """The files of project_files whose sha256 is one of `hashes` or unknown, in page order.

        Where release_files cannot tell a pin's files by their names, a lock looks them up here: on a page
        written as PyPI writes it, only the entries holding those hashes are decoded, not the page's
        thousands (torch's closure: 50,000 files)."""
        key = (normalize_index_url(index_url), canonicalize_name(name))
        response = self.page_response(*key)
        places = self._hashed_places(key, hashes)
        if response is not None and places is not None:
            found = [_entry_around(response.content, at, _holding(sha256)) for sha256, ats in places.items()
                     for at in ats]
            if all(entry is not None for entry in found):
                placed = sorted((entry for entry in found if entry is not None), key=lambda entry: entry[0])
                return [_file_from_entry(response.url, entry) for _, entry in placed]
        files = self.project_files(*key)
        return None if files is None else [f for f in files if f.sha256 is None or f.sha256 in hashes]

    def release_files(self, index_url: str, name: str, version: str, hashes: set[str],
                      may_fit: Callable[[str], bool] = _any_file) -> list[IndexFile] | None:
        """The files of release `name`==`version` whose sha256 is one of `hashes` and whose name `may_fit`
        takes, in page order, found by their names on a page written as PyPI writes it; None unless every
        one of `hashes` is found so (files_with_sha256 then looks for them by hash).

        After uv answers, this finds a pin's files in one scan of its page, without the index of every
        hash on it that files_with_sha256 builds (0.1 s of CPU for torch's closure, taken from uv when
        built while it resolves)."""
        key = (normalize_index_url(index_url), canonicalize_name(name))
        response = self.page_response(*key)
        if response is None or not response.is_json or key in self._pages:
            return None
        found = _release_entries(response.content, key[1], version)
        if not hashes <= {sha256 for _, _, sha256 in found}:
            return None
        entries = [_entry_around(response.content, at + 1, _named(filename, sha256))
                   for at, filename, sha256 in found if sha256 in hashes and may_fit(filename)]
        if any(entry is None for entry in entries):
            return None
        return [_file_from_entry(response.url, entry[1]) for entry in entries if entry is not None]

    def every_file_hashed(self, index_url: str, name: str) -> bool:
        """Whether every file on the project's page states its sha256 (a missing page: vacuously)."""
        key = (normalize_index_url(index_url), canonicalize_name(name))
        if key not in self._every_file_hashed:
            self._every_file_hashed[key] = self._counted_hashes(key) or \
                all(file.sha256 is not None for file in self.project_files(*key) or [])
        return self._every_file_hashed[key]

    def _counted_hashes(self, key: tuple[str, str]) -> bool:
        """As PyPI writes a page, each file's entry holds one "filename" and one sha256 under "hashes": as
        many of both, and every file states its sha256 (two counts, not a parse of 50,000 entries)."""
        response = self.page_response(*key)
        return response is not None and response.is_json and \
            response.content.count(_PYPI_SHA256) == response.content.count(b'"filename"')

    def _hashed_places(self, key: tuple[str, str], wanted: set[str]) -> dict[str, list[int]] | None:
        """_sha256_places of an unparsed JSON page, those of `wanted` only; None once parsed (its files are
        then at hand) or when a file on it states no sha256 as PyPI does (remembered, found once per page)."""
        response = self.page_response(*key)
        if key in self._pages or response is None or not response.is_json:
            return None
        if key not in self._places:  # two threads may both find them: the same answer
            self._places[key] = _sha256_places(response.content)
        places = self._places[key]
        return None if places is None else {sha256: places[sha256] for sha256 in wanted if sha256 in places}

    def has_page(self, index_url: str, name: str) -> bool:
        """Whether the project's page was fetched already (page_response answers without the network)."""
        return (normalize_index_url(index_url), canonicalize_name(name)) in self._responses

    def page_response(self, index_url: str, name: str) -> Page | None:
        """The project's page as the index served it, unparsed, fetched once per client with its digest
        recorded in page_digests; None when the index does not have the project."""
        key = (normalize_index_url(index_url), canonicalize_name(name))
        if key not in self._responses:
            response = self._page_response(*key)
            self.page_digests[key] = _page_digest(response)
            self._responses[key] = response
        return self._responses[key]

    def current_page_digest(self, index_url: str, name: str) -> str:
        """The digest page_digests would hold for the page as the index serves it now (not parsed)."""
        return _page_digest(self._page_response(normalize_index_url(index_url), canonicalize_name(name)))

    def _page_response(self, index_url: str, name: str) -> Page | None:
        """The project's page; None when the index does not have the project. Asked through the standard
        library first (light_page); what that cannot tell, httpx asks again under http_fetch's policy."""
        light = light_page(index_url, name)
        if light is not _UNTOLD:
            return light
        import httpx

        page_url = index_url + name + "/"
        try:
            response = self._get(page_url, headers={"Accept": _ACCEPT})
        except httpx.HTTPError as exc:
            raise CogbuildError(f"Could not reach the package index {index_url}: {exc}.") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise CogbuildError(f"The package index answered {response.status_code} for {page_url}.")
        return Page(str(response.url), response.headers.get("content-type", ""), response.content)

    def find_links_files(self, location: str) -> list[IndexFile]:
        """Files offered by a --find-links location: a local directory, or an HTML page of links."""
        if location not in self._find_links_cache:
            self._find_links_cache[location] = self._read_find_links(location)
        return self._find_links_cache[location]

    def _read_find_links(self, location: str) -> list[IndexFile]:
        path = Path(unquote(urlsplit(location).path)) if location.startswith("file:") else Path(location)
        if "://" not in location or location.startswith("file:"):
            return _files_in_directory(path) if path.is_dir() else []
        response = self._get(location)
        if response.status_code != 200:
            raise CogbuildError(f"The find-links page {location} answered {response.status_code}.")
        return _files_from_html(str(response.url), response.text)

    def measure(self, url: str) -> tuple[int, str | None]:
        """Size (and sha256 for local files) of a file whose index did not state them."""
        if url.startswith("file:"):
            path = Path(unquote(urlsplit(url).path))
            return path.stat().st_size, file_sha256(path)
        response = self._get(url, method="HEAD")
        length = response.headers.get("content-length")
        if response.status_code != 200 or length is None:
            raise CogbuildError(f"Could not learn the size of {url} (HTTP {response.status_code}).")
        return int(length), None

    def read_bytes(self, url: str) -> bytes:
        """A whole (small) file: a local file: URL or an HTTP download."""
        if url.startswith("file:"):
            return Path(unquote(urlsplit(url).path)).read_bytes()
        response = self._get(url)
        if response.status_code != 200:
            raise CogbuildError(f"Could not download {url} (HTTP {response.status_code}).")
        return response.content

    def _get(self, url: str, *, headers: dict[str, str] | None = None, method: str = "GET") -> httpx.Response:
        from ..http_fetch import get

        return get(self.http, url, headers=headers, method=method)

    def download_sha256(self, url: str) -> str:
        """sha256 of a remote file whose index offers no hash: streamed, from the start on each try."""
        from ..http_fetch import HTTPStatusFailure, raise_if_retryable, retrying

        def once() -> str:
            digest = hashlib.sha256()
            with self.http.stream("GET", url) as response:
                raise_if_retryable(response)
                if response.status_code != 200:
                    raise CogbuildError(f"Could not download {url} (HTTP {response.status_code}).")
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
            return digest.hexdigest()

        try:
            return retrying(once)
        except HTTPStatusFailure as exc:
            raise CogbuildError(f"Could not download {url} ({exc}).") from None


ABSENT = "absent"
_PAGE_MAX = 1 << 28  # bytes; torch's page is about 2 MB
_LIGHT_TIMEOUTS = (10.0, 60.0)  # connect, read: seconds


def _page_digest(page: Page | None) -> str:
    if page is None:
        return ABSENT
    return hashlib.sha256(page.content_type.encode() + b"\n" + page.url.encode() + b"\n" +
                          page.content).hexdigest()


def light_page_digest(index_url: str, name: str) -> str | None:
    """The digest page_digests would hold for the page as the index serves it now, through light_page;
    None when that cannot tell."""
    page = light_page(index_url, name)
    return None if page is _UNTOLD else _page_digest(page)


class _Untold(Page):
    """light_page's answer when only the full client can tell."""


_UNTOLD = _Untold("", "", b"")


def light_page(index_url: str, name: str) -> Page | None:
    """The project's page (None: the index has no such project) asked through the standard library
    (registry/wire.py: its pool of kept-alive connections), without httpx's imports and per-request work;
    _UNTOLD when a proxy is configured or the index redirects, refuses or fails: IndexClient then asks with
    httpx, under http_fetch's retries, proxies and .netrc."""
    from ..registry.wire import exchange

    if http_proxy_configured():
        return _UNTOLD
    page_url = normalize_index_url(index_url) + canonicalize_name(name) + "/"
    try:
        answer = exchange("GET", page_url, {"Accept": _ACCEPT}, timeouts=_LIGHT_TIMEOUTS, limit=_PAGE_MAX)
    except (OSError, ValueError):  # wire.ProtocolError, an answer that is not HTTP, is an OSError
        return _UNTOLD
    if answer.status == 404:
        return None
    if answer.status != 200 or answer.truncated or answer.headers.get("Content-Encoding", "identity") != "identity":
        return _UNTOLD
    return Page(page_url, answer.headers.get("Content-Type") or "", answer.body)


def http_proxy_configured() -> bool:
    """Whether the user routes HTTP through a proxy: then connections go only through httpx, which honours
    it, never directly (the light reader, the proxy's relay and its connections opened ahead)."""
    from ..settings import process_environment

    return any(variable.lower() in _PROXY_VARIABLES for variable in process_environment())


_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy"}  # httpx (trust_env) goes through these


WARM_CONNECTIONS = 8  # as many pages as uv asked for at once in the torch closure


def warm_index(index_url: str, connections: int = WARM_CONNECTIONS) -> None:
    """Open connections to the index ahead of the pages light_page will ask for."""
    from ..registry.wire import warm

    if not http_proxy_configured():
        warm(index_url, connections, timeouts=_LIGHT_TIMEOUTS)
