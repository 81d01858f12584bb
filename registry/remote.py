"""Push an image from the local OCI layout to a registry, and pull one back: the public API.

    push_image(layout, desc, "127.0.0.1:5000/ns/model:v1") -> "sha256:…"
    pull_image("127.0.0.1:5000/ns/model:v1", layout) -> Descriptor

Order makes a push safe to interrupt: all blobs first (in parallel, skipping what the registry has),
then child manifests by digest, then the top manifest or index under its tags. A tag therefore never
points at anything incomplete, and running the push again uploads only what is missing.
Manifests are sent as the exact bytes stored in the layout, so the digest is the one computed at build.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Mapping, Sequence

import requests

from .errors import OCIError
from cogbuild.layers.descriptor import Descriptor, InvalidDescriptor, sha256_digest
from cogbuild.layers.imagegraph import GRAPH_TYPES, Node, config_of, is_graph_type, walk

from .blob_locations import BlobLocations
from .client import RegistryClient, RegistryError
from .layout import Layout
from .reference import Reference, parse_reference
from .transfer import BlobPusher, Progress, TransferStats, download_blob

ACCEPT = ", ".join(GRAPH_TYPES)
PARALLEL_BLOBS = 4
MANIFEST_MAX = 4 << 20  # what distribution itself accepts for a manifest
BLOB_SETTLING = (0.1, 0.3, 1.0)  # seconds to wait for a blob a concurrent writer is committing


@dataclass
class ImagePlan:
    """Everything under one descriptor: blobs to move, manifests in the order they must be sent."""

    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)  # children before parents


def plan_from_layout(layout: Layout, desc: Descriptor) -> ImagePlan:
    """Walk an index or manifest in the layout (verifying each JSON blob's digest)."""
    if not is_graph_type(desc.media_type):
        raise OCIError(f"cannot push {desc.digest}: unknown manifest media type {desc.media_type!r}")
    plan = ImagePlan()
    try:
        for node in walk(layout, desc):
            (plan.manifests if node.is_graph else plan.blobs).append(node.descriptor)
    except InvalidDescriptor as exc:
        raise OCIError(f"an image in {layout.root} is damaged: {exc}") from None
    return plan


def push_image(layout: Layout, desc: Descriptor, ref: str | Reference, *, extra_tags: Sequence[str] = (),
               insecure: bool = False, progress: Progress | None = None,
               variants: Mapping[str, Descriptor] | None = None,
               stats: TransferStats | None = None, hints: Path | None = None) -> str:
    """Push `desc` (a manifest or index in `layout`) and everything under it; return its digest.

    The image is tagged with the reference's tag (default `latest`) and every `extra_tags` entry.
    `variants` maps a suffix to another descriptor in the layout (e.g. {"cpu": idx_cpu}) that is pushed
    as `<tag>-<suffix>`, since runtimes pick from an index by platform only. `hints` is the directory
    where the repositories known to hold each blob are kept, for cross-repository mounts.
    """
    ref = parse_reference(ref)
    if ref.digest and ref.digest != desc.digest:
        raise OCIError(f"cannot push {desc.digest} as {ref}: the reference names another digest")
    stats = stats or TransferStats()
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    targets = _targets(ref, desc, variants, extra_tags)
    names = _names(targets)
    if all(_tag_names(client, ref.repository, name, digest) for name, digest in names):
        return desc.digest  # pushed before: a tag names a manifest only once all under it is there
    plans = [plan_from_layout(layout, d) for d, _ in targets]
    blobs = list({b.digest: b for p in plans for b in p.blobs}.values())
    _push_blobs(client, ref.repository, layout, blobs, stats, progress, BlobLocations(client.registry, hints))
    sent: set[str] = set()
    for plan, (top, tags) in zip(plans, targets, strict=False):
        for manifest in plan.manifests:
            if manifest.digest not in sent and manifest.digest != top.digest:
                put_manifest(client, ref.repository, layout.read_blob(manifest.digest), manifest, manifest.digest)
                sent.add(manifest.digest)
        data = layout.read_blob(top.digest)
        for name in tags or [top.digest]:
            put_manifest(client, ref.repository, data, top, name)
        sent.add(top.digest)
    return desc.digest


def _targets(ref: Reference, desc: Descriptor, variants: Mapping[str, Descriptor] | None,
             extra_tags: Sequence[str] = ()) -> list[tuple[Descriptor, list[str]]]:
    """Each manifest push_image sends under names, with those names (tags; none: by digest only)."""
    tag = ref.tag or (None if ref.digest else "latest")
    targets = [(desc, [tag, *extra_tags] if tag else list(extra_tags))]
    for suffix, variant in (variants or {}).items():
        targets.append((variant, [variant_tag(tag, suffix)]))
    return targets


def pushed_names(ref: str | Reference, desc: Descriptor, variants: Mapping[str, Descriptor] | None = None,
                 extra_tags: Sequence[str] = ()) -> list[tuple[str, str]]:
    """(tag or digest, manifest digest) for everything push_image names in the repository."""
    return _names(_targets(parse_reference(ref), desc, variants, extra_tags))


def _names(targets: list[tuple[Descriptor, list[str]]]) -> list[tuple[str, str]]:
    return [(name, top.digest) for top, tags in targets for name in tags or [top.digest]]


def _tag_names(client: RegistryClient, repository: str, tag: str, digest: str) -> bool:
    """Whether `tag` already names the manifest `digest` in the repository (one HEAD)."""
    response = client.request("HEAD", client.url(f"{repository}/manifests/{tag}"), repository=repository,
                              ok=(200, 404), headers={"Accept": ACCEPT}, action=f"check tag {tag} in")
    response.close()
    return response.status_code == 200 and response.headers.get("Docker-Content-Digest") == digest


def variant_tag(tag: str | None, suffix: str) -> str:
    """The tag a variant of the image is pushed under, e.g. `v1-cpu`."""
    return f"{tag or 'latest'}-{suffix}"


def _push_blobs(client: RegistryClient, repository: str, layout: Layout, blobs: list[Descriptor],
                stats: TransferStats, progress: Progress | None, locations: BlobLocations) -> None:

    def mount_sources(digest: str) -> list[str]:
        """Where the registry may already hold the blob: a cache repository the store took it from, first."""
        cached = parse_reference(source) if (source := layout.remote_source(digest)) else None
        here = [cached.repository] if cached is not None and cached.registry == client.registry else []
        return here + locations.sources(digest)

    def fetch_missing(desc: Descriptor) -> None:
        fetch_remote_blobs(layout, [desc], insecure=client.plain_http, registry=client.registry)
        if not layout.has_blob(desc.digest):
            raise RegistryError(f"blob {desc.digest} is missing from the local store {layout.root}")

    pusher = BlobPusher(client, repository, layout, stats=stats, progress=progress,
                        mount_sources=mount_sources, fetch_missing=fetch_missing)
    # Largest first: the long uploads start early and small ones fill the gaps.
    ordered = sorted(blobs, key=lambda b: -b.size)
    run_parallel(pusher.push, ordered, pusher.cancel, "push")
    locations.remember(repository, [b.digest for b in blobs])
    locations.save()


def run_parallel(work: Callable[[Descriptor], None], blobs: list[Descriptor], cancel: threading.Event,
                 name: str) -> None:
    """Run `work` over blobs on PARALLEL_BLOBS threads; the first failure, or Ctrl-C, stops the others."""
    pool = ThreadPoolExecutor(PARALLEL_BLOBS, thread_name_prefix=name)
    try:
        for future in as_completed([pool.submit(work, b) for b in blobs]):
            future.result()
    except BaseException:
        cancel.set()  # workers stop at their next read instead of finishing their blobs
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def put_manifest(client: RegistryClient, repository: str, data: bytes, desc: Descriptor, name: str) -> None:
    """PUT the exact bytes under a tag or digest, and check the registry computed the same digest.

    A blob that another writer of the same content is still committing can be unknown for a moment
    (distribution's storage links it after writing it), so that one answer is asked again, briefly.
    """
    for wait in (*BLOB_SETTLING, None):
        try:
            response = client.request(
                "PUT", client.url(f"{repository}/manifests/{name}"), repository=repository, ok=(201,),
                headers={"Content-Type": desc.media_type}, body=data, action=f"push manifest {name} to")
            break
        except RegistryError as exc:
            if wait is None or "MANIFEST_BLOB_UNKNOWN" not in exc.codes:
                raise
            time.sleep(wait)
    echoed = response.headers.get("Docker-Content-Digest")
    if echoed and echoed != desc.digest:
        raise RegistryError(f"registry {client.registry} stored manifest {desc.digest} of {repository} "
                            f"under another digest {echoed}")


def get_manifest(client: RegistryClient, ref: Reference, name: str | None = None) -> tuple[bytes, Descriptor]:
    """Fetch a manifest or index by tag or digest; verify it against the digest when one is known."""
    name = name or ref.target
    response = client.request("GET", client.url(f"{ref.repository}/manifests/{name}"),
                              repository=ref.repository, headers={"Accept": ACCEPT}, stream=True,
                              action=f"fetch manifest {name} from")
    data = _read_capped(response, MANIFEST_MAX)
    if data is None:
        raise RegistryError(f"registry {ref.registry} sent manifest {name} of {ref.repository} larger than "
                            f"{MANIFEST_MAX >> 20} MiB; nothing was stored", 502)
    digest = sha256_digest(data)
    expected = name if name.startswith("sha256:") else response.headers.get("Docker-Content-Digest")
    if expected and expected != digest:
        raise RegistryError(f"registry {ref.registry} sent manifest {name} of {ref.repository} with content "
                            f"hashing to {digest}, not {expected}; nothing was stored", 502)
    media_type = _media_type(data, response.headers.get("Content-Type", ""))
    return data, Descriptor(media_type, digest, len(data))


def fetch_small_blob(client: RegistryClient, ref: Reference, digest: str, *, manifest_fallback: bool = True) -> bytes:
    """A small blob by the blobs endpoint, verified; a manifest (which a registry may keep only behind the
    manifests endpoint) by that endpoint when the blobs endpoint does not have it and `manifest_fallback`."""
    response = client.request("GET", client.url(f"{ref.repository}/blobs/{digest}"), repository=ref.repository,
                              ok=(200, 404) if manifest_fallback else (200,), action=f"read blob {digest[:19]} from")
    if response.status_code == 404:
        return get_manifest(client, ref, digest)[0]
    data = response.content
    if sha256_digest(data) != digest:
        raise RegistryError(f"registry {ref.registry} sent blob {digest} of {ref.repository} with other content")
    return data


def _read_capped(response: requests.Response, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` bytes (a registry answer cannot fill memory)."""
    chunks, size = [], 0
    with response:
        try:
            for chunk in response.iter_content(64 << 10):
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
        except requests.exceptions.RequestException as exc:
            raise RegistryError(f"the connection to {response.url} dropped while reading a manifest "
                                f"({exc.__class__.__name__})") from None
    return b"".join(chunks)


def _media_type(data: bytes, header: str) -> str:
    try:
        declared = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    media_type = declared or header.split(";")[0].strip()
    if not is_graph_type(media_type):
        raise RegistryError(f"the registry answered with {media_type!r}, which is not an image manifest or index")
    return media_type


class RegistrySource:
    """One repository of a registry as a BlobSource: manifests by the manifests endpoint, other blobs by
    the blobs endpoint, each verified against its digest and kept for the next read."""

    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self.client, self.ref = client, ref
        self.fetched: dict[str, bytes] = {}

    def top(self) -> Descriptor:
        """The descriptor the reference names (by tag or digest); its bytes are kept."""
        data, desc = get_manifest(self.client, self.ref)
        self.fetched[desc.digest] = data
        return desc

    def fetch(self, desc: Descriptor) -> bytes:
        if desc.digest not in self.fetched:
            self.fetched[desc.digest] = (get_manifest(self.client, self.ref, desc.digest)[0]
                                         if is_graph_type(desc.media_type)
                                         else fetch_small_blob(self.client, self.ref, desc.digest,
                                                               manifest_fallback=False))
        return self.fetched[desc.digest]


def pull_image(ref: str | Reference, layout: Layout, *, insecure: bool = False,
               progress: Progress | None = None, stats: TransferStats | None = None,
               hints: Path | None = None) -> Descriptor:
    """Fetch an image (every platform and variant of an index) into `layout` and name it `ref`.

    Every blob is checked against its digest and size before it enters the layout; manifests are
    stored as the exact bytes received, so digests are kept. The repository is remembered in `hints`
    as holding every blob (see push_image).
    """
    ref = parse_reference(ref)
    stats = stats or TransferStats()
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    layout.init()
    top, nodes = _fetch_graph(client, ref)
    blobs = [node.descriptor for node in nodes if not node.is_graph]
    cancel = threading.Event()
    run_parallel(lambda b: download_blob(client, ref.repository, b, layout, stats=stats, progress=progress,
                                         cancel=cancel),
                 sorted(blobs, key=lambda b: -b.size), cancel, "pull")
    locations = BlobLocations(client.registry, hints)
    locations.remember(ref.repository, [b.digest for b in blobs])
    locations.save()
    _store_manifests(layout, nodes, ref, top)
    return top


def pull_metadata(ref: str | Reference, layout: Layout, *, insecure: bool = False) -> Descriptor:
    """Fetch what describes an image (its index, manifests and configs, never its layers) into `layout`,
    named `ref`: enough to read its platforms, variants, labels and digests without pulling gigabytes."""
    ref = parse_reference(ref)
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    layout.init()
    top, nodes = _fetch_graph(client, ref)
    for node in nodes:
        if node.is_manifest:
            download_blob(client, ref.repository, config_of(node), layout, stats=TransferStats())
    _store_manifests(layout, nodes, ref, top)
    return top


def _fetch_graph(client: RegistryClient, ref: Reference) -> tuple[Descriptor, list[Node]]:
    """The descriptor `ref` names and every node under it, its manifests read (verified), nothing stored."""
    source = RegistrySource(client, ref)
    top = source.top()
    try:
        return top, list(walk(source, top))
    except (InvalidDescriptor, RecursionError) as exc:
        raise RegistryError(f"registry {ref.registry} sent an image {ref} that cannot be used ({exc}); nothing "
                            "was stored", 502) from None


def _store_manifests(layout: Layout, nodes: list[Node], ref: Reference, top: Descriptor) -> None:
    for node in nodes:  # children first, so the layout never names a partial image
        if node.data is not None:
            layout.write_blob(node.data)
    layout.tag(str(ref.with_digest(top.digest) if not ref.tag else ref.with_tag(ref.tag)), top)


def fetch_remote_blobs(layout: Layout, blobs: Sequence[Descriptor], *, insecure: bool = False,
                       registry: str | None = None) -> None:
    """Download the blobs the store lacks but knows a repository for (layers taken from a binary cache).

    `insecure` allows plain HTTP to `registry` (the one the user named) only, never to another."""
    for source, missing in layout.remote_only(blobs).items():
        ref = parse_reference(source)
        client = RegistryClient(ref.registry, ref.api_host, insecure=insecure and ref.registry == registry)
        cancel = threading.Event()
        try:
            fetch = partial(_download_into, client, ref.repository, layout, cancel)  # this repository's
            run_parallel(fetch, missing, cancel, "cache")
        except RegistryError as exc:
            raise RegistryError(f"some layers of this image live only in the cache repository {source}, and "
                                f"fetching them failed: {exc}", exc.status) from None


def _download_into(client: RegistryClient, repository: str, layout: Layout, cancel: threading.Event,
                   blob: Descriptor) -> None:
    download_blob(client, repository, blob, layout, stats=TransferStats(), cancel=cancel)
