"""Which image to run, and how to hand it to a runtime.

What a user may name: a local store name, a registry reference (pulled into the store, verified blob by
blob), an OCI layout (`oci:DIR[:TAG]` or a bare layout directory) or an OCI archive
(`oci-archive:FILE[:TAG]`). From an index, the manifest for this host's platform is picked (the gpu
variant when wanted and built). Runtimes get that one manifest as a single-image layout whose blobs link
to the store's, or as an OCI archive for `docker load`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import httpx

from .cache import cache_dir
from .errors import CogbuildError, UsageError
from .layers.descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, children
from .layers.image import image_metadata
from .registry.archive import ArchiveError, unpack_oci_archive
from .registry.layout import REF_ANNOTATION, Layout, LayoutError, atomic_write
from .registry.reference import parse_reference

SCHEMA_LABELS = ("run.cog.openapi_schema", "run.cog.openapi-schema")
VARIANT_ANNOTATION = "run.cog.variant"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
RUN_REF = "run"  # the one ref in the single-image layouts handed to runtimes


def host_platform() -> str:
    return f"linux/{_ARCH.get(platform.machine().lower(), platform.machine().lower())}"


@dataclass
class Image:
    """One runnable manifest: where its blobs are, which manifest, and its config."""

    layout: Layout
    name: str
    manifest: Descriptor
    config: dict = field(repr=False)

    @property
    def variant(self) -> str:
        return self.manifest.annotations.get(VARIANT_ANNOTATION, "cpu")

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


# -- what the user named ------------------------------------------------------------------------
def find_image(target: str, store: Layout, gpu: bool, progress: Callable[[str], None] = lambda m: None,
               transfer: Callable[[str, int, int], None] | None = None, platform: str | None = None,
               run: bool = True) -> Image:
    """Resolve what the user typed: an OCI layout path (`oci:DIR[:TAG]` or a directory), a local store
    name, or a registry reference (pulled into the store; `transfer` hears of its bytes). The manifest is
    the one for `platform` (default: this host's). With `run=False` the image is only to be read: a
    registry image not in the store is fetched without its layers, into the cache instead."""
    layout, name = _locate(target, store, progress, transfer, run)
    try:
        top = layout.resolve(name)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None
    if layout is store:
        _check_signature(target, top.digest)
    try:
        manifest = _pick_manifest(layout, top, target, platform or host_platform(), "gpu" if gpu else "cpu")
        if run:  # layers a build took from a cache repository: a runtime reads them from the store
            fetch_cached_layers(layout, children(layout.read_json(manifest.digest), manifest.media_type))
        return Image(layout, target, manifest, layout.read_json(_config_of(layout, manifest).digest))
    except (LayoutError, ValueError, KeyError) as exc:
        raise CogbuildError(f"the image {target} in {layout.root} is damaged: {exc}; pull or build it again") from None


def fetch_cached_layers(layout: Layout, blobs: list[Descriptor]) -> None:
    """Download the blobs a build took from a cache repository (the store knows them by descriptor only):
    before a runtime, an archive or a build.run step reads them from the store."""
    if layout.remote_only(blobs):
        from .registry.remote import fetch_remote_blobs  # network clients load only when needed

        fetch_remote_blobs(layout, blobs)


def _locate(target: str, store: Layout, progress: Callable[[str], None],
            transfer: Callable[[str, int, int], None] | None, run: bool = True) -> tuple[Layout, str]:
    if target.startswith("oci-archive:"):
        return _layout_path(_unpacked_archive(target.removeprefix("oci-archive:")))
    if target.startswith("oci:") or _split_layout(target):
        return _layout_path(target.removeprefix("oci:"))
    known = {name for name, _ in store.refs()}
    for name in (target, f"{target}:latest"):
        if name in known:
            return store, name
    ref = parse_reference(target)
    # Like `docker run`: what the store already holds runs as is; only a missing image is pulled.
    for name in (str(ref), str(ref.with_tag("latest")) if not (ref.tag or ref.digest) else ""):
        if name in known:
            return store, name
    if _is_local_name(target):
        raise UsageError(f"no image named {target!r} in the local store ({store.root}); build it with "
                         f"`cogbuild build -t {target}` or name a registry, like 127.0.0.1:5000/{target}")
    from .registry.remote import pull_image, pull_metadata  # network clients load only when a pull is needed

    verified = _check_signature(target, None)  # before a byte is stored
    if verified:
        ref = ref.with_digest(verified)
    progress(f"pulling {ref}" if run else f"reading {ref}")
    # An image without its layers must never be in the store, where `run` would take it as whole.
    into = store if run else Layout(cache_dir() / "descriptions")
    try:
        if run:
            top = pull_image(ref, into, insecure=ref.is_loopback, progress=transfer)
        else:
            top = pull_metadata(ref, into, insecure=ref.is_loopback)
    except httpx.TransportError as exc:  # registry answers become RegistryError sentences already
        raise CogbuildError(f"could not reach {ref.registry} to pull {ref}: {exc}") from None
    return into, next(name for name, desc in into.refs() if desc.digest == top.digest)


def _check_signature(target: str, digest: str | None) -> str | None:
    """With COGBUILD_VERIFY_KEY set, an image from a registry is used only when signed (this `digest`, or
    the one its tag names now); local names and layouts are the user's own builds. The digest checked."""
    if _is_local_name(target):
        return None
    from .signing import check_configured_signature  # cryptography loads only for registry images

    ref = parse_reference(target)
    return check_configured_signature(ref.with_digest(digest) if digest else ref, insecure=ref.is_loopback)


def _is_local_name(target: str) -> bool:
    """A name like `hello:dev` or `oci:DIR`: the local store's or a layout's, never a registry's."""
    if target.startswith(("oci:", "oci-archive:")) or _split_layout(target):
        return True
    return parse_reference(target).registry == "docker.io" and "." not in target.split("/")[0]


def _unpacked_archive(text: str) -> str:
    """`FILE[:TAG]` of an OCI archive, as `DIR[:TAG]` of its layout unpacked into the cache.

    Unpacked once per file version (path, size, mtime), written beside and renamed into place; the
    layout's blobs are verified by hash when read, like any layout's."""
    path, tag = text, None
    if not Path(text).is_file() and ":" in text:
        path, _, tag = text.partition(":")
    archive = Path(path)
    if not archive.is_file():
        raise UsageError(f"there is no OCI archive {path}")
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:32]
    target = cache_dir() / "archives" / key
    if (target / "oci-layout").is_file():
        os.utime(target)  # last use, for pruning
    else:
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
    return f"{target}:{tag}" if tag else str(target)


def _is_layout(path: str) -> bool:
    return bool(path) and (Path(path) / "oci-layout").is_file()


def _split_layout(text: str) -> tuple[str, str | None] | None:
    """`DIR` or `DIR:NAME` when DIR is an OCI layout (NAME may hold colons, like `model:v1`)."""
    if _is_layout(text):
        return text, None
    for i, char in enumerate(text):
        if char == ":" and _is_layout(text[:i]):
            return text[:i], text[i + 1:]
    return None


def _layout_path(text: str) -> tuple[Layout, str]:
    found = _split_layout(text)
    if found is None:
        raise UsageError(f"{text} is not an OCI image layout (it has no oci-layout file)")
    path, name = Path(found[0]), found[1]
    layout = Layout(path)
    names = [ref for ref, _ in layout.refs()]
    if name is None:
        if len(names) != 1:
            raise UsageError(f"the OCI layout {path} holds {len(names)} named images; name one as oci:{path}:TAG "
                             f"({', '.join(names) or 'none'})")
        name = names[0]
    return layout, name


def _pick_manifest(layout: Layout, top: Descriptor, target: str, want_platform: str, want_variant: str) -> Descriptor:
    """The manifest for this platform, preferring the wanted variant and falling back to cpu."""
    leaves = list(_leaf_manifests(layout, top))
    here = [d for d in leaves if _platform_of(layout, d) == want_platform]
    if not here:
        have = sorted({_platform_of(layout, d) for d in leaves})
        raise UsageError(f"the image {target} has no {want_platform} image (it has {', '.join(have)})")
    for variant in (want_variant, "cpu"):
        for desc in here:
            if desc.annotations.get(VARIANT_ANNOTATION, "cpu") == variant:
                return desc
    return here[0]


def _leaf_manifests(layout: Layout, desc: Descriptor) -> Iterator[Descriptor]:
    if desc.media_type not in INDEX_TYPES:
        yield desc
        return
    for child in children(layout.read_json(desc.digest), desc.media_type):
        if child.media_type in INDEX_TYPES + MANIFEST_TYPES:
            yield from _leaf_manifests(layout, child)


def _config_of(layout: Layout, manifest: Descriptor) -> Descriptor:
    return children(layout.read_json(manifest.digest), manifest.media_type)[0]


def _platform_of(layout: Layout, desc: Descriptor) -> str:
    if desc.platform:
        return f"{desc.platform.get('os')}/{desc.platform.get('architecture')}"
    config = layout.read_json(_config_of(layout, desc).digest)
    return f"{config.get('os')}/{config.get('architecture')}"


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
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    link = root / f".blobs-{uuid.uuid4().hex[:8]}"
    link.symlink_to((image.layout.root / "blobs").resolve())
    os.replace(link, root / "blobs")  # atomic: a concurrent run always sees a whole link
    entry = {**image.manifest.to_json(), "annotations": {REF_ANNOTATION: RUN_REF}}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [entry]}
    atomic_write(root / "index.json", json.dumps(index).encode())


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



def write_oci_archive(image: Image, fileobj, name: str) -> None:
    """An OCI archive (a tarred layout) holding only `image.manifest`, named `name` for docker/containerd."""
    entry = {**image.manifest.to_json(),
             "annotations": {"io.containerd.image.name": name, REF_ANNOTATION: name.rpartition(":")[2]}}
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [entry]}).encode()
    with tarfile.open(fileobj=fileobj, mode="w|") as tar:  # a stream: it may be a pipe into `ctr images import`
        for member, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        manifest = image.manifest
        for blob in [manifest, *children(image.layout.read_json(manifest.digest), manifest.media_type)]:
            tar.add(image.layout.blob_path(blob.digest), f"blobs/sha256/{blob.digest.hex}")


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
