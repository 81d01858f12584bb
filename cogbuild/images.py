"""What a user-typed image name means, which manifest runs here, and how to hand it to a runtime.

`parse_source()` reads what every command accepts as an image: a local store name, a registry reference
(pulled into the store, verified blob by blob), an OCI layout (`oci:DIR[:TAG]` or a bare layout
directory) or an archive (`oci-archive:FILE[:TAG]`, `docker-archive:FILE[:TAG]` as cogbuild writes it).
`parse_destination()` reads where `build -o` writes. From an index, `imagegraph.select()` picks the
manifest for this host's platform (the gpu variant when wanted and built), the same rule a docker-archive
export uses. Runtimes get that one manifest as a single-image layout whose blobs link to the store's, or
as an OCI archive for `docker load`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator, Literal

from .cache import mount_hints_dir
from .errors import CogbuildError, UsageError
from .layers.descriptor import Descriptor, InvalidDescriptor
from .layers.image import image_metadata
from .layers.imagegraph import (CONTAINERD_NAME_ANNOTATION, LAYOUT_MARKER, REF_ANNOTATION, SCHEMA_LABELS,
                                NoSuchPlatform, config_of, select, variant_of, walk)
from .registry.errors import InvalidReference
from .registry.archive import ArchiveError, unpack_oci_archive, write_archive_stream
from .registry.layout import Layout, LayoutError, write_layout_files
from .registry.reference import Reference, parse_reference

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
RUN_REF = "run"  # the one ref in the single-image layouts handed to runtimes
ARCHIVE_KINDS = ("oci-archive", "docker-archive")


def host_platform() -> str:
    return f"linux/{_ARCH.get(platform.machine().lower(), platform.machine().lower())}"


@dataclass
class Image:
    """One runnable manifest: where its blobs are, which manifest, and its config."""

    layout: Layout
    name: str
    manifest: Descriptor
    config: dict = field(repr=False)
    variant: str = "cpu"

    @property
    def env(self) -> dict[str, str]:
        """The config's environment, NAME -> value."""
        return dict(entry.partition("=")[::2] for entry in (self.config.get("config") or {}).get("Env") or [])

    @property
    def concurrency(self) -> int:
        """Predictions its server runs at once as far as the image tells: cog.yaml's concurrency.max (which
        the build sets as COG_MAX_CONCURRENCY), else 1."""
        text = self.env.get("COG_MAX_CONCURRENCY", "")
        return int(text) if text.isdigit() and int(text) > 0 else 1

    @property
    def schema(self) -> dict | None:
        """The OpenAPI schema the build stored (a label, or a manifest annotation when too large), if any."""
        text = image_metadata(self.layout.read_json(self.manifest.digest), self.config, SCHEMA_LABELS)
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise CogbuildError(f"the image {self.name} has a damaged OpenAPI schema "
                                f"(its {SCHEMA_LABELS[0]} is not JSON)") from None


# -- what the user typed ------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """An image as named on the command line: a layout or archive on disk, or a name (store or registry)."""

    kind: Literal["layout", "archive", "name"]
    text: str
    path: Path | None = None
    tag: str | None = None


@dataclass(frozen=True)
class Destination:
    """Where `build -o` writes: an OCI layout directory, an oci-archive or a docker-archive file."""

    kind: Literal["layout", "oci-archive", "docker-archive"]
    path: Path


def parse_source(text: str) -> Source:
    """What an image argument names; the same rules for build, show, predict, train and run."""
    kind, sep, rest = text.partition(":")
    if sep and kind in ARCHIVE_KINDS:
        path, tag = _split_file_tag(rest)
        return Source("archive", text, path, tag)
    if sep and kind == "oci":
        directory, name = _split_layout(rest) or (rest, None)
        return Source("layout", text, Path(directory), name)
    found = _split_layout(text)
    if found:
        return Source("layout", text, Path(found[0]), found[1])
    return Source("name", text)


def parse_destination(text: str) -> Destination:
    """`DIR`, `oci:DIR` (an OCI layout), `oci-archive:FILE` or `docker-archive:FILE`."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "oci-archive":
        return Destination("oci-archive", Path(rest))
    if sep and kind == "docker-archive":
        return Destination("docker-archive", Path(rest))
    if sep and kind in ("oci", "dir"):
        return Destination("layout", Path(rest))
    return Destination("layout", Path(text))


def _split_file_tag(text: str) -> tuple[Path, str | None]:
    """`FILE[:TAG]`: the whole text when it names a file, else what is before the first colon."""
    if not Path(text).is_file() and ":" in text:
        path, _, tag = text.partition(":")
        return Path(path), tag
    return Path(text), None


def _is_layout(path: str) -> bool:
    return bool(path) and (Path(path) / LAYOUT_MARKER).is_file()


def _split_layout(text: str) -> tuple[str, str | None] | None:
    """`DIR` or `DIR:NAME` when DIR is an OCI layout (NAME may hold colons, like `model:v1`)."""
    if _is_layout(text):
        return text, None
    for i, char in enumerate(text):
        if char == ":" and _is_layout(text[:i]):
            return text[:i], text[i + 1:]
    return None


def open_local(source: Source, store: Layout, cache_root: Path) -> tuple[Layout, str] | None:
    """The layout and name `source` points at on this machine (an archive unpacked under `cache_root`); None
    for a name the store does not hold."""
    if source.kind == "archive":
        assert source.path is not None
        return _named_in(Layout(_unpacked_archive(source.path, cache_root)), source.tag, source.text)
    if source.kind == "layout":
        assert source.path is not None
        if not _is_layout(str(source.path)):
            raise UsageError(f"{source.path} is not an OCI image layout (it has no oci-layout file)")
        return _named_in(Layout(source.path), source.tag, source.text)
    known = {name for name, _ in store.refs()}
    ref = _reference_or_none(source.text)
    candidates = [source.text, f"{source.text}:latest"]
    if ref is not None:  # like `docker run`: what the store already holds runs as is
        candidates += [str(ref), str(ref.with_tag("latest")) if not (ref.tag or ref.digest) else ""]
    return next(((store, name) for name in candidates if name in known), None)


def _reference_or_none(text: str) -> Reference | None:
    try:
        return parse_reference(text)
    except InvalidReference:  # not a reference: pulling it says so in a sentence
        return None


def _named_in(layout: Layout, name: str | None, text: str) -> tuple[Layout, str]:
    if name is None:
        names = [ref for ref, _ in layout.refs()] or [m.digest for m in layout.manifests()]
        if len(names) != 1:
            raise UsageError(f"{text} holds {len(names)} named images; name one as {text}:TAG "
                             f"({', '.join(names[:5]) or 'none'})")
        name = names[0]
    return layout, name


def find_image(target: str, store: Layout, gpu: bool, progress: Callable[[str], None] = lambda m: None,
               transfer: Callable[[str, int, int], None] | None = None, platform: str | None = None,
               run: bool = True, verify_key: Path | None = None, *, cache_root: Path) -> Image:
    """The manifest for `platform` (default: this host's) of what the user typed (see parse_source); a
    registry reference is pulled into the store first (`transfer` hears of its bytes). With `run=False`
    the image is only to be read: a registry image not in the store is fetched without its layers, into
    the cache (`cache_root`) instead. With `verify_key` (COGBUILD_VERIFY_KEY), a registry image must be signed
    by it."""
    layout, name = open_local(parse_source(target), store, cache_root) or \
        _pull(target, store, progress, transfer, run, verify_key, cache_root)
    try:
        top = layout.resolve(name)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None
    if layout is store:
        _check_signature(target, top.digest, verify_key)
    try:
        node = select(layout, top, platform or host_platform(), "gpu" if gpu else "cpu")
        if run:  # layers a build took from a cache repository: a runtime reads them from the store
            fetch_cached_layers(layout, [n.descriptor for n in walk(layout, node.descriptor) if not n.is_graph])
        return Image(layout, target, node.descriptor, layout.read_json(config_of(node).digest), variant_of(node))
    except NoSuchPlatform as exc:
        raise UsageError(f"the image {target} {exc}") from None
    except (LayoutError, InvalidDescriptor) as exc:
        raise CogbuildError(f"the image {target} in {layout.root} is damaged: {exc}; pull or build it again") from None


def fetch_cached_layers(layout: Layout, blobs: list[Descriptor]) -> None:
    """Download the blobs a build took from a cache repository (the store knows them by descriptor only):
    before a runtime, an archive or a build.run step reads them from the store."""
    if layout.remote_only(blobs):
        from .registry.remote import fetch_remote_blobs  # network clients load only when needed

        fetch_remote_blobs(layout, blobs)


def _pull(target: str, store: Layout, progress: Callable[[str], None],
          transfer: Callable[[str, int, int], None] | None, run: bool, verify_key: Path | None,
          cache_root: Path) -> tuple[Layout, str]:
    ref = parse_reference(target)
    if _is_local_name(target):
        raise UsageError(f"no image named {target!r} in the local store ({store.root}); build it with "
                         f"`cogbuild build -t {target}` or name a registry, like 127.0.0.1:5000/{target}")
    import httpx  # network clients load only when a pull is needed

    from .registry.remote import pull_image, pull_metadata

    verified = _check_signature(target, None, verify_key)  # before a byte is stored
    if verified:
        ref = ref.with_digest(verified)
    progress(f"pulling {ref}" if run else f"reading {ref}")
    # An image without its layers must never be in the store, where `run` would take it as whole.
    into = store if run else Layout(cache_root / "descriptions")
    try:
        if run:
            top = pull_image(ref, into, insecure=ref.is_loopback, progress=transfer, hints=mount_hints_dir(cache_root))
        else:
            top = pull_metadata(ref, into, insecure=ref.is_loopback)
    except httpx.TransportError as exc:  # registry answers become RegistryError sentences already
        raise CogbuildError(f"could not reach {ref.registry} to pull {ref}: {exc}") from None
    return into, next(name for name, desc in into.refs() if desc.digest == top.digest)


def _check_signature(target: str, digest: str | None, verify_key: Path | None) -> str | None:
    """With a `verify_key`, an image from a registry is used only when signed (this `digest`, or the one its
    tag names now); local names and layouts are the user's own builds. The digest checked."""
    if verify_key is None or _is_local_name(target):
        return None
    from .signing import check_configured_signature  # cryptography loads only for registry images

    ref = parse_reference(target)
    return check_configured_signature(ref.with_digest(digest) if digest else ref, verify_key,
                                      insecure=ref.is_loopback)


def _is_local_name(target: str) -> bool:
    """A name like `hello:dev`, a layout or an archive: the user's own, never a registry's."""
    if parse_source(target).kind != "name":
        return True
    return parse_reference(target).registry == "docker.io" and "." not in target.split("/")[0]


def _unpacked_archive(archive: Path, cache_root: Path) -> Path:
    """The layout of an OCI archive, unpacked into the cache.

    Unpacked once per file version (path, size, mtime), written beside and renamed into place; the
    layout's blobs are verified by hash when read, like any layout's."""
    if not archive.is_file():
        raise UsageError(f"there is no OCI archive {archive}")
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    target = cache_root / "archives" / key
    if (target / LAYOUT_MARKER).is_file():
        os.utime(target)  # last use, for pruning
        return target
    if target.parent.is_dir():
        prune_stale(target.parent)
    partial = target.with_name(f".partial-{uuid.uuid4().hex[:12]}")
    partial.mkdir(parents=True)
    try:
        unpack_oci_archive(archive, partial)  # only a layout's own names, as regular files
        if not target.exists():  # else another run unpacked the same archive first
            os.replace(partial, target)
    except ArchiveError as exc:
        raise UsageError(str(exc)) from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


# -- one manifest, in the form a runtime takes -----------------------------------------------------
@contextmanager
def single_image_layout(image: Image) -> Iterator[Path]:
    """A temporary OCI layout naming only `image.manifest` (as `run`); its blobs link to the store's."""
    root = Path(tempfile.mkdtemp(prefix="cogbuild-image-"))
    try:
        _write_single_layout(image, root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _write_single_layout(image: Image, root: Path) -> None:
    link = root / f".blobs-{uuid.uuid4().hex[:8]}"
    link.symlink_to((image.layout.root / "blobs").resolve())
    os.replace(link, root / "blobs")  # atomic: a concurrent run always sees a whole link
    entry = Descriptor(image.manifest.media_type, image.manifest.digest, image.manifest.size,
                       {REF_ANNOTATION: RUN_REF}, image.manifest.platform)
    write_layout_files(root, [entry])


_REFERENCE_PATH = re.compile(r"(/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+")


def podman_image_layout(image: Image) -> Path:
    """A lasting single-image layout at a path named by the manifest digest.

    podman names what it copies from `oci:PATH` after PATH, so PATH must be a valid image name
    (lowercase, no component starting with a dot) and stable, or every run would add a new name.
    """
    parent = Path(tempfile.gettempdir()).resolve()
    if not _REFERENCE_PATH.fullmatch(str(parent)):
        parent = Path("/tmp")
    root = parent / f"cogbuild-oci-{os.geteuid()}" / image.manifest.digest.hex[:32]
    root.mkdir(parents=True, exist_ok=True)
    _write_single_layout(image, root)
    return root


def write_oci_archive(image: Image, fileobj: IO[bytes], name: str) -> None:
    """An OCI archive (a tarred layout) holding only `image.manifest`, named `name` for docker/containerd."""
    entry = Descriptor(image.manifest.media_type, image.manifest.digest, image.manifest.size,
                       {CONTAINERD_NAME_ANNOTATION: name, REF_ANNOTATION: name.rpartition(":")[2]},
                       image.manifest.platform)
    write_archive_stream(fileobj, image.layout, image.manifest, entry)


# -- cache hygiene -------------------------------------------------------------------------------
UNPACK_MAX_AGE = 7 * 24 * 3600


def prune_stale(root: Path, max_age: float = UNPACK_MAX_AGE) -> None:
    """Drop cached unpacks (rootfs trees, archive layouts) unused for `max_age` seconds, unless a running
    container still sits on one."""
    try:
        mounts = Path("/proc/mounts").read_text()
    except OSError:
        return  # cannot tell what is in use: keep everything
    for entry in root.iterdir():
        stale = time.time() - entry.lstat().st_mtime > max_age
        if stale and f"lowerdir={entry}/" not in mounts:
            shutil.rmtree(entry, ignore_errors=True)
