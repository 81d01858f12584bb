"""uv as the resolver, where it can answer what pip would: wheels only, from indexes, for the image.

Why: `uv pip compile` resolves the torch/transformers set several times faster than pip (pip starts
slowly, reads metadata one wheel at a time and parses every page in Python). It resolves for the image,
not this host: `--python-platform <arch>-manylinux_<glibc>` picks the wheels and `--python-version` the
markers, `--only-binary :all:` executes nothing, and `--index-strategy unsafe-best-match` weighs every
index as pip does. uv is pinned in pyproject.toml; no uv configuration of this host reaches the lock.

uv writes a pip-compile-style file (name==version, the hashes of the fitting files, `# via` parents,
its indexes); lockfile.wheels_for_lockfile then picks each project's one file from the index pages as pip
would, with its size. What uv is not asked to do (sdists, project files, find-links, --hash lines, other
pip options) or fails at goes to pip, which also writes the error messages: uv never decides alone that a
lock cannot be made.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifacts import Artifact
from ..content_store import ContentStore
from ..errors import CogbuildError
from ..settings import process_environment
from .loopback import loopback_listener, proxy_index_url
from .target import Target

if TYPE_CHECKING:  # the index client is loaded after uv has started (see resolve.py)
    from .index import IndexClient, IndexFile

# The glibc levels uv 0.13 names in --python-platform (manylinux_2_17, 2_28, 2_31 … 2_40).
_UV_GLIBC_MINORS = {17, 28, *range(31, 41)}


def uv_binary() -> str | None:
    """The pinned uv's executable, or None when this environment has none (pip then resolves alone)."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return None


def uv_platform(target: Target) -> str | None:
    """uv's name for the image's platform, e.g. x86_64-manylinux_2_36: its glibc, or the newest older level
    uv names (see newer_glibc_wheels); None below manylinux_2_17."""
    level = _uv_glibc_level(target)
    return None if level is None else f"{target.arch}-manylinux_2_{level}"


def _uv_glibc_level(target: Target) -> int | None:
    image = int(target.glibc.split(".")[1])
    return max((level for level in _UV_GLIBC_MINORS if level <= image), default=None)


def newer_glibc_wheels(target: Target, files: Iterable[IndexFile]) -> bool:
    """Whether some file is a wheel the image can run only through a glibc newer than the level uv resolved
    for (e.g. manylinux_2_41 on trixie, which uv 0.13 has no name for). Without one, uv saw every
    candidate the image has, so its answer is the image's; with one, pip resolves instead."""
    level, image = _uv_glibc_level(target), int(target.glibc.split(".")[1])
    if level is None or level == image:
        return False
    pattern = re.compile(rf"manylinux_2_(\d+)_{target.arch}\b")
    return any(level < int(minor) <= image for file in files for minor in pattern.findall(file.filename))


def uv_command(uv: str, target: Target, requirements_file: Path, output_file: Path, cache: Path, *,
               index_urls: list[str], constraints_file: Path | None) -> list[str]:
    platform = uv_platform(target)
    assert platform is not None  # callers ask uv_platform first
    command = [uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--generate-hashes",
               "--only-binary", ":all:", "--index-strategy", "unsafe-best-match",
               "--python-version", target.python_full_version or target.python_version,
               "--python-platform", platform, "--cache-dir", str(cache), "--output-file", str(output_file),
               "--index-url", index_urls[0], *_INTERPRETER]
    for url in index_urls[1:]:
        command += ["--extra-index-url", url]
    if constraints_file is not None:
        command += ["--constraint", str(constraints_file)]
    return command + [str(requirements_file)]


# uv wants an interpreter even when it builds nothing (the target's version and platform decide the
# resolution): naming this one spares it a search of PATH, where a pyenv shim took 0.1-0.2 s of a cold lock.
_INTERPRETER = ("--python", sys.executable)


def uv_environment() -> dict[str, str]:
    """This process's environment without uv's settings (UV_INDEX_URL, UV_CONSTRAINT, …) or pip's."""
    return {name: value for name, value in process_environment().items()
            if not name.upper().startswith(("UV_", "PIP_"))}


def usable_uv(target: Target) -> str | None:
    """The uv to resolve for `target` with, or None: not installed, or no name for the platform."""
    uv = uv_binary()
    return uv if uv is not None and uv_platform(target) is not None else None


class UvRun:
    """`uv pip compile` started at once, reading the indexes through a loopback proxy on a port bound here
    (`listener`, for the proxy to serve on once it is made): uv's start-up (0.15 s, much of it asking the
    interpreter about itself) then overlaps the loading and making of that proxy. result() waits for its
    answer: a pinned, hashed requirements file for `target` naming the upstream `index_urls` (for
    lockfile.wheels_for_lockfile), or None when uv could not resolve. uv keeps its own cache under
    `cache_root`. Leaving the `with` block stops a uv that is still running."""

    def __init__(self, uv: str, target: Target, requirements_file: Path, workdir: Path, *, index_urls: list[str],
                 constraints_file: Path | None, cache_root: Path) -> None:
        self.output = workdir / "uv-compiled.txt"
        self.upstream_index_urls = index_urls
        self.listener = loopback_listener()  # the proxy's server closes it too: no matter
        port = self.listener.getsockname()[1]
        command = uv_command(uv, target, requirements_file, self.output, cache_root / "uv",
                             index_urls=[proxy_index_url(port, n) for n in range(len(index_urls))],
                             constraints_file=constraints_file)
        try:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            env=uv_environment())
        except BaseException:
            self.listener.close()
            raise

    def __enter__(self) -> UvRun:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()
        self.listener.close()

    def result(self) -> Path | None:
        try:
            self.process.communicate(timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise CogbuildError("uv took more than 30 minutes to resolve the Python requirements.") from exc
        if self.process.returncode != 0:
            return None
        indexes = [f"--index-url {self.upstream_index_urls[0]}",
                   *(f"--extra-index-url {u}" for u in self.upstream_index_urls[1:])]
        # A constraint file names versions, it never makes a project needed: `-c` is no parent.
        pins = [line for line in self.output.read_text().splitlines() if not _CONSTRAINT_VIA.match(line)]
        self.output.write_text("".join(f"{line}\n" for line in [*indexes, *pins]))
        return self.output


_CONSTRAINT_VIA = re.compile(r"\s*#\s+-c ")


class UvResolution:
    """uv's part of one lock, begun as soon as the lines are known: the closure stored for the same inputs
    (resolution_key) is looked up at once, and without one uv starts at once (`run`). The resolver then
    reuses the stored closure while every page it rests on is unchanged, or waits for uv, started late
    (start()) where the stored one went stale."""

    def __init__(self, uv: str, target: Target, requirements_file: Path, constraints_file: Path | None,
                 workdir: Path, *, index_urls: list[str], cache_root: Path) -> None:
        self.uv, self.target, self.workdir, self.index_urls = uv, target, workdir, index_urls
        self.requirements_file, self.constraints_file, self.cache_root = requirements_file, constraints_file, cache_root
        constraints = constraints_file.read_text() if constraints_file else ""
        self.key = resolution_key(target, requirements_file.read_text(), constraints, index_urls)
        self.resolutions = Resolutions(cache_root)
        self.stored = self.resolutions.stored(self.key)
        self.run = self.start() if self.stored is None else None

    def start(self) -> UvRun:
        self.run = UvRun(self.uv, self.target, self.requirements_file, self.workdir, index_urls=self.index_urls,
                         constraints_file=self.constraints_file, cache_root=self.cache_root)
        return self.run

    def __enter__(self) -> UvResolution:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.run is not None:
            self.run.__exit__(*exc)


def resolution_key(target: Target, requirements: str, constraints: str, index_urls: list[str]) -> str:
    """What a uv resolution depends on besides the index pages it reads (recorded with it)."""
    import packaging

    inputs = {"record": 1, "uv": _uv_version(), "packaging": packaging.__version__, "target": asdict(target),
              "requirements": requirements, "constraints": constraints, "indexes": index_urls}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _uv_version() -> str:
    """The installed uv's version, from its dist-info directory's name when that is the only one beside it
    (importlib.metadata searched every path entry: 0.1-0.15 s of a warm lock)."""
    import uv

    found = list(Path(uv.__file__).parents[1].glob("uv-*.dist-info"))
    if len(found) == 1:
        return found[0].name[len("uv-"):-len(".dist-info")]
    from importlib.metadata import version

    return version("uv")


class Resolutions:
    """Earlier uv resolutions by resolution_key, each with the digest of every index page uv read for it.

    One is reused only while each of those pages is, byte for byte, what its index serves now: the
    closure is a function of the key, those pages and the wheels' METADATA, which the pages pin by
    sha256. So a warm lock fetches the pages (in parallel, unparsed) and runs no resolver.
    """

    def __init__(self, cache_root: Path) -> None:
        self.records = ContentStore(cache_root / "uv-resolutions")  # a ref per key, verified reads

    def stored(self, key: str) -> dict[str, Any] | None:
        """The resolution kept for `key`, not yet checked against the indexes (reuse does that)."""
        data = self.records.get_named(key)
        return None if data is None else json.loads(data)

    def reuse(self, record: dict[str, Any], client: IndexClient) -> list[Artifact] | None:
        """The stored closure, while every page it rests on is unchanged; else None."""
        pages = [(index_url, project, digest) for index_url, project, digest in record["pages"]]
        if not _pages_unchanged(pages, client):
            return None
        return [Artifact(**{**fields, "required_by": tuple(fields["required_by"]),
                            "build_requires": tuple(fields["build_requires"])}) for fields in record["artifacts"]]

    def remember(self, key: str, client: IndexClient, pages: list[tuple[str, str]],
                 artifacts: list[Artifact]) -> None:
        """Keep the closure, unless a page it rests on lists a file without a sha256 (whose METADATA,
        and so the closure, could change under the same page)."""
        if not all(client.every_file_hashed(*page) for page in pages):
            return
        record = {"pages": sorted([*page, client.page_digests[page]] for page in pages),
                  "artifacts": [asdict(artifact) for artifact in artifacts]}
        self.records.put_named(key, json.dumps(record, sort_keys=True).encode())


def _pages_unchanged(pages: list[tuple[str, str, str]], client: IndexClient) -> bool:
    def unchanged(page: tuple[str, str, str]) -> bool:
        index_url, project, digest = page
        try:  # through the standard library where it can tell (light_page), else the client's httpx
            return client.current_page_digest(index_url, project) == digest
        except CogbuildError:
            return False  # unreachable now: resolving again says so properly

    # A few kept-alive connections: more only add TLS handshakes (torch's 58 pages, 22 MB: 0.3 s with 2 to
    # 4 threads here, 0.9 s with 16).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_PAGE_CHECKERS) as pool:
        return all(pool.map(unchanged, pages))


_PAGE_CHECKERS = 4
