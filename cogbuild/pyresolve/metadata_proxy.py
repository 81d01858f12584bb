"""A loopback index in front of the real ones, so pip resolves from METADATA alone and in parallel.

pip reads each candidate's metadata one request after another; without PEP 658 metadata files on the
index (PyPI mirrors often lack them) it needs several range requests per wheel. This proxy serves pip a
PEP 691 page per project whose wheels carry `core-metadata`, answers the `.metadata` requests from a
persistent cache (a content store) keyed by the wheel's sha256 or by reading the wheel's zip directory, and, as soon as
it knows a project's likely pick, fetches that wheel's metadata and its dependencies' pages ahead of
pip, many at once. pip still makes every decision; the proxy only answers sooner.

Files are addressed as /f/<sha256>/<filename>: the report pip writes names them so, and
upstream_url() maps them back to the real URL for the lock.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from ..content_store import ContentStore
from ..errors import CogbuildError
from ..layers.descriptor import is_sha256_hex
from .file_relay import FileRelay
from .index import IndexClient, IndexFile, Page, http_proxy_configured, warm_index
from .loopback import loopback_listener, proxy_base_url, proxy_index_url
from .target import Target


def metadata_store(cache_root: Path) -> ContentStore:
    """Wheel METADATA in a content store under `cache_root`, each named by a reference that is the wheel's sha256."""
    return ContentStore(cache_root / "wheel-metadata")


class MetadataProxy:
    """Serves /<n>/<project>/ for upstream index n, and /f/<sha256>/<filename>[.metadata]."""

    def __init__(self, upstreams: list[str], target: Target, client: IndexClient,
                 cache: ContentStore, *, serve_metadata: bool = True, listener: socket.socket | None = None) -> None:
        """serve_metadata=False: pages only, with the upstream file URLs, for a resolver (uv) that reads
        METADATA itself faster than this proxy could. `listener`: the bound socket to serve on
        (loopback.loopback_listener), if the resolver was started before the proxy."""
        self.upstreams, self.target, self.client = upstreams, target, client
        self.serve_metadata = serve_metadata
        self.cache = cache
        self.rank = target.tag_ranks()
        self.environment = {**target.marker_environment(), "extra": ""}
        self.files: dict[str, IndexFile] = {}
        self.pages: dict[tuple[int, str], Future] = {}
        self.raw_pages: dict[tuple[int, str], Future] = {}  # unparsed, for serve_metadata=False
        self.metadata: dict[str, Future] = {}
        self.relay = FileRelay()  # the resolver's range reads of wheels, for serve_metadata=False
        self.relay_files = not http_proxy_configured()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="metadata-proxy")
        listener = listener or loopback_listener()
        self.port = listener.getsockname()[1]
        self.server = ThreadingHTTPServer(listener.getsockname(), _handler(self), bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = listener
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for it, once per lock.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> MetadataProxy:
        for upstream in self.upstreams:  # pages come through these as soon as the resolver asks
            warm_index(upstream)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        # Fetches not begun are dropped; those under way finish first: they write into the metadata cache,
        # which may be in a directory the caller removes next.
        self.pool.shutdown(wait=True, cancel_futures=True)

    @property
    def base_url(self) -> str:
        return proxy_base_url(self.port)

    def index_url(self, number: int) -> str:
        return proxy_index_url(self.port, number)

    def upstream_url(self, url: str) -> str:
        """The real URL of a file pip saw through the proxy; other URLs unchanged."""
        prefix = f"{self.base_url}/f/"
        if url.startswith(prefix):
            return self.files[url[len(prefix):].split("/", 1)[0]].url
        return url

    # Pages and metadata are futures, so pip's request and a prefetch share one fetch.

    def page(self, number: int, project: str) -> Future:
        key = (number, canonicalize_name(project))
        with self.lock:
            if key not in self.pages:
                self.pages[key] = self.pool.submit(self._load_page, *key)
            return self.pages[key]

    def raw_page(self, number: int, project: str) -> Future:
        key = (number, canonicalize_name(project))
        with self.lock:
            if key not in self.raw_pages:
                self.raw_pages[key] = self.pool.submit(self.client.page_response, self.upstreams[number], key[1])
            return self.raw_pages[key]

    def fetch_ahead(self, projects: list[str]) -> None:
        """Fetch these projects' pages from every index now: the resolver asks for its direct requirements
        first, once it has started up (uv: 0.1 s)."""
        for project in projects:
            for number in range(len(self.upstreams)):
                self.raw_page(number, project)

    def page_body(self, number: int, project: str) -> tuple[str, bytes] | None:
        """(Content-Type, body) of the page to serve; None when the index has no such project.

        Without metadata to serve, a page whose file URLs are all absolute goes out as the index sent
        it (its file URLs moved onto the relay): parsing it (numpy's page lists over 4000 files) would delay
        the resolver. The lock reads what it needs of it after the resolver answers: any work on the pages
        meanwhile takes CPU from uv (finding every hash on them cost uv 0.1 s of torch's closure)."""
        if not self.serve_metadata:
            response = self.raw_page(number, project).result()
            if response is None:
                return None
            # Files through the relay where connections may go directly (all on one host: the page's URLs
            # are then absolute, nothing more to check); else uv asks the file hosts.
            relayed = self.relay.rewrite(response, self.base_url) if self.relay_files else response.content
            if relayed is not response.content or _absolute_urls_only(response):
                return response.content_type or "text/html", relayed
        files = self.page(number, project).result()
        return None if files is None else ("application/vnd.pypi.simple.v1+json", self.page_json(project, files))

    def _load_page(self, number: int, project: str) -> list[IndexFile] | None:
        files = self.client.project_files(self.upstreams[number], project)
        if files:
            with self.lock:
                for file in files:
                    if file.sha256:
                        self.files[file.sha256] = file
            likely = self._likely_pick(files) if self.serve_metadata else None
            if likely is not None:
                self.wheel_metadata(likely)
        return files

    def wheel_metadata(self, file: IndexFile) -> Future:
        key = file.sha256 or file.url  # a file the index gives no hash for is known by its URL
        with self.lock:
            if key not in self.metadata:
                self.metadata[key] = self.pool.submit(self._load_metadata, file)
            return self.metadata[key]

    def _load_metadata(self, file: IndexFile) -> bytes:
        # Only a hex digest names a cache entry: the index may list a file without one.
        known = file.sha256 if file.sha256 and is_sha256_hex(file.sha256) else None
        data = self.cache.get_named(known) if known else None
        if data is None:
            from .lazywheel import wheel_metadata  # with httpx: pip's resolutions only

            data = wheel_metadata(self.client.http, file.url, file.size)
            if known:
                self.cache.put_named(known, data)
        self._prefetch_dependencies(data)
        return data

    def _prefetch_dependencies(self, metadata: bytes) -> None:
        from email.parser import BytesHeaderParser

        for line in BytesHeaderParser().parsebytes(metadata).get_all("Requires-Dist") or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            if requirement.marker is None or requirement.marker.evaluate(self.environment):
                for number in range(len(self.upstreams)):
                    self.page(number, requirement.name)

    def pages_read(self) -> list[tuple[str, str]]:
        """(upstream index URL, project) of every page served or fetched so far."""
        with self.lock:
            return [(self.upstreams[number], project) for number, project in {**self.pages, **self.raw_pages}]

    def _likely_pick(self, files: list[IndexFile]) -> IndexFile | None:
        """The wheel pip will most likely choose: newest final release, best tag for the target."""
        best = None
        for file in files:
            if file.yanked or not file.sha256 or not self._python_ok(file):
                continue
            try:
                _, version, _, tags = parse_wheel_filename(file.filename)
            except InvalidWheelFilename:
                continue
            ranks = [self.rank[tag] for tag in tags if tag in self.rank]
            if ranks and not version.is_prerelease:
                key = (version, -min(ranks))
                if best is None or key > best[0]:
                    best = (key, file)
        return best[1] if best else None

    def _python_ok(self, file: IndexFile) -> bool:
        try:
            return not file.requires_python or SpecifierSet(file.requires_python).contains(
                f"{self.target.python_version}.0", prereleases=True)
        except InvalidSpecifier:
            return True

    def fits_target(self, file: IndexFile) -> bool:
        """Wheels the target cannot install are left off pip's page: pip would only skip them, slowly
        (torch's page lists about a thousand files)."""
        if not file.filename.endswith(".whl"):
            return True
        try:
            tags = parse_wheel_filename(file.filename)[3]
        except InvalidWheelFilename:
            return True
        return any(tag in self.rank for tag in tags)

    def page_json(self, project: str, files: list[IndexFile]) -> bytes:
        entries = []
        for file in filter(self.fits_target, files):
            entry: dict[str, Any] = {"filename": file.filename, "hashes": {},
                                     "requires-python": file.requires_python, "yanked": file.yanked, "url": file.url}
            if file.size is not None:
                entry["size"] = file.size
            if file.sha256:
                entry["hashes"] = {"sha256": file.sha256}
            if file.sha256 and self.serve_metadata:
                entry["url"] = f"{self.base_url}/f/{file.sha256}/{quote(file.filename)}"
                if file.filename.endswith(".whl"):
                    entry["core-metadata"] = True
            entries.append(entry)
        return json.dumps({"meta": {"api-version": "1.1"}, "name": project, "files": entries}).encode()


# A file URL that is not absolute, in a PEP 691 page or an HTML one: relative to the index's page URL,
# which the resolver would take to be the proxy's.
_RELATIVE_URL = re.compile(rb'"url"\s*:(?!\s*"https?://)|href\s*=(?!\s*["\']?https?://)', re.IGNORECASE)


def _absolute_urls_only(page: Page) -> bool:
    return _every_url_absolute(page) or _RELATIVE_URL.search(page.content) is None


def _every_url_absolute(page: Page) -> bool:
    """The common case told by counting (the regex took 1.2 s of CPU for torch's closure's 22 MB): every
    "url" of a JSON page, or every href of an HTML page, followed at once by an absolute URL."""
    if page.is_json:
        return page.content.count(b'"url"') == sum(page.content.count(b'"url": "' + scheme) for scheme in _SCHEMES)
    lower = page.content.lower()
    return lower.count(b"href") == sum(lower.count(b"href=" + quote + scheme)
                                       for quote in (b'"', b"'", b"") for scheme in _SCHEMES)


_SCHEMES = (b"https://", b"http://")


def _handler(proxy: MetadataProxy):
    class Handler(BaseHTTPRequestHandler):
        # Keep-alive: uv resolved torch's closure through this proxy in 3.4 s over HTTP/1.0 (a connection
        # per request), 1.5 s over HTTP/1.1. Every answer states its Content-Length. Without Nagle's
        # algorithm, or a body written after its headers waits for the client's delayed ACK (pip alone
        # took 10 s instead of 7).
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            if self.path.startswith("/o/"):
                return self._relay("HEAD")
            self._send(404, "text/plain", b"")

        def do_GET(self) -> None:
            if self.path.startswith("/o/"):
                return self._relay("GET")
            parts = [unquote(p) for p in self.path.split("?")[0].split("/") if p]
            try:
                if len(parts) == 3 and parts[0] == "f":
                    return self._file(parts[1], parts[2])
                if len(parts) == 2 and parts[0].isdigit() and int(parts[0]) < len(proxy.upstreams):
                    return self._page(int(parts[0]), parts[1])
                self._send(404, "text/plain", b"not found")
            except Exception as exc:  # pip shows the status; the reason goes in the body
                self._send(502, "text/plain", f"{type(exc).__name__}: {exc}".encode())

        def _page(self, number: int, project: str) -> None:
            try:
                page = proxy.page_body(number, project)
            except CogbuildError as exc:
                # pip retries 5xx for a quarter of a minute; a 404 lets it finish, and the error
                # message is then written from the client's own attempt (diagnose.explain).
                return self._send(404, "text/plain", str(exc).encode())
            if page is None:
                return self._send(404, "text/plain", b"no such project")
            self._send(200, *page)
            if not proxy.serve_metadata:  # what uv's lock asks of every page it read, found now that it is out
                proxy.client.every_file_hashed(proxy.upstreams[number], project)

        def _file(self, sha256: str, filename: str) -> None:
            file = proxy.files.get(sha256)
            if file is None:
                return self._send(404, "text/plain", b"unknown file")
            if filename.endswith(".metadata"):
                return self._send(200, "application/octet-stream", proxy.wheel_metadata(file).result())
            self.send_response(302)
            self.send_header("Location", file.url)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _relay(self, method: str) -> None:
            number, _, rest = self.path[len("/o/"):].partition("/")
            upstream = proxy.relay.upstream(int(number), rest) if number.isdigit() else None
            if upstream is None:
                return self._send(404, "text/plain", b"unknown file host")
            answer = proxy.relay.relay(method, upstream, self.headers.get)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            if method != "HEAD" or "Content-Length" not in answer.headers:
                self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(answer.body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            # Resolvers may keep pages by HTTP caching rules: every page must be asked for, so it is seen.
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
