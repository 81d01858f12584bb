"""The OCI image graph (index -> manifests -> config and layers): its names, one walk and one choice.

Everything that reads an image goes through here, whatever holds it: the local store or an exported
layout (`Layout`), an unpacked archive (a `Layout` too) or a registry (`registry.remote.RegistrySource`).
Each is a `BlobSource`; `walk()` visits what an image points at and `select()` picks the one manifest a
host runs. Pure: the source does the reading and verifies digests; this module only follows pointers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

from .descriptor import INDEX_TYPES, MANIFEST_TYPES, OCI_INDEX, Descriptor, InvalidDescriptor, children

# The OCI image layout's own files (image-spec "image-layout").
LAYOUT_MARKER = "oci-layout"
LAYOUT_MARKER_BYTES = b'{"imageLayoutVersion":"1.0.0"}'
REF_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"

# What cogbuild records in an image, under Cog's `run.cog.` prefix.
VARIANT_ANNOTATION = "run.cog.variant"  # on a manifest (and its index entry): cpu or gpu
LOCK_LABEL = "run.cog.lock-digest"  # config label and manifest annotation: the digest of cog.lock
SCHEMA_LABEL = "run.cog.openapi_schema"  # Cog's own label name, so Cog-aware tools find it
SCHEMA_LABELS = (SCHEMA_LABEL, "run.cog.openapi-schema")  # read both spellings Cog has used
CONFIG_LABEL = "run.cog.config"
VERSION_LABEL = "run.cog.cogbuild-version"
COMPRESSION_ANNOTATION = "run.cog.compression"
BYTECODE_ANNOTATION = "run.cog.bytecode"
DEFAULT_VARIANT = "cpu"

GRAPH_TYPES = INDEX_TYPES + MANIFEST_TYPES
MAX_DEPTH = 8  # an index of indexes of manifests is two; anything much deeper is a crafted answer


class BlobSource(Protocol):
    """Where an image's content is read from: the bytes `desc` points at, verified against its digest."""

    def fetch(self, desc: Descriptor) -> bytes: ...


@dataclass(frozen=True)
class Node:
    """One descriptor met on a walk; `document` is the parsed JSON of an index or manifest, else None."""

    descriptor: Descriptor
    parent: Descriptor | None
    data: bytes | None = None
    document: dict[str, Any] | None = None

    @property
    def is_manifest(self) -> bool:
        return self.descriptor.media_type in MANIFEST_TYPES

    @property
    def is_graph(self) -> bool:
        """An index or an image manifest: something the walk reads and follows."""
        return self.document is not None


def is_index(desc: Descriptor) -> bool:
    return desc.media_type in INDEX_TYPES


def is_graph_type(media_type: str) -> bool:
    return media_type in GRAPH_TYPES


def read_document(source: BlobSource, desc: Descriptor) -> tuple[bytes, dict[str, Any]]:
    """The bytes and JSON object of an index or manifest; InvalidDescriptor when it is not one."""
    data = source.fetch(desc)
    if len(data) != desc.size:
        raise InvalidDescriptor(f"{desc.digest} has {len(data)} bytes, but its descriptor says {desc.size}")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidDescriptor(f"{desc.digest} is not JSON") from None
    if not isinstance(doc, dict):
        raise InvalidDescriptor(f"{desc.digest} is not a JSON object")
    return data, doc


def walk(source: BlobSource, top: Descriptor) -> Iterator[Node]:
    """Every descriptor reachable from `top` (itself included), each once, children before parents.

    Indexes and manifests are read from `source` and parsed; configs, layers and anything else are
    yielded unread. Children first is the order in which a store or a registry can take an image without
    ever naming something incomplete. A malformed document raises InvalidDescriptor.
    """
    seen: set[str] = set()
    yield from _walk(source, top, None, seen, 0)


def _walk(source: BlobSource, desc: Descriptor, parent: Descriptor | None, seen: set[str],
          depth: int) -> Iterator[Node]:
    if desc.digest in seen:
        return
    seen.add(desc.digest)
    if not is_graph_type(desc.media_type):
        yield Node(desc, parent)
        return
    if depth > MAX_DEPTH:
        raise InvalidDescriptor(f"{desc.digest} is nested more than {MAX_DEPTH} indexes deep")
    data, doc = read_document(source, desc)
    try:
        found = children(doc, desc.media_type)
    except InvalidDescriptor as exc:
        raise InvalidDescriptor(f"{desc.digest} is malformed: {exc}") from None
    for child in found:
        yield from _walk(source, child, desc, seen, depth + 1)
    yield Node(desc, parent, data, doc)


def image_manifests(source: BlobSource, top: Descriptor) -> list[Node]:
    """The image manifests under `top` (or `top` itself), in the order their indexes list them."""
    return [node for node in walk(source, top) if node.is_manifest]


def config_of(node: Node) -> Descriptor:
    """An image manifest's config descriptor."""
    assert node.document is not None, "config_of takes a manifest node from walk()"
    return children(node.document, node.descriptor.media_type)[0]


def variant_of(node: Node, default: str = DEFAULT_VARIANT) -> str:
    """cpu or gpu: the index entry's annotation, else the manifest's own, else `default`."""
    desc, doc = node.descriptor, node.document or {}
    return (desc.annotations.get(VARIANT_ANNOTATION) or (doc.get("annotations") or {}).get(VARIANT_ANNOTATION)
            or default)


def platform_of(node: Node, read_config: Callable[[Descriptor], dict[str, Any]]) -> str:
    """`os/architecture` from the index entry, else from the image config (read only when needed)."""
    platform: dict[str, Any] | None = node.descriptor.platform
    if not platform:
        platform = read_config(config_of(node))  # a config names os and architecture at its top level
    return f"{platform.get('os')}/{platform.get('architecture')}"


class NoSuchPlatform(InvalidDescriptor):
    """The image has no manifest for the wanted platform; `available` lists what it has."""

    def __init__(self, wanted: str, available: list[str]) -> None:
        super().__init__(f"has no {wanted} image (it has {', '.join(available) or 'none'})")
        self.wanted, self.available = wanted, available


def select(source: BlobSource, top: Descriptor, platform: str, variant: str = DEFAULT_VARIANT) -> Node:
    """The one manifest a host of `platform` runs: the wanted variant, else cpu, else the first listed.

    The one rule for every consumer (run, predict, docker-archive export): the platform must match
    exactly; NoSuchPlatform names the platforms there are.
    """
    manifests = image_manifests(source, top)

    def read_config(desc: Descriptor) -> dict[str, Any]:
        return read_document(source, desc)[1]

    here = [node for node in manifests if platform_of(node, read_config) == platform]
    if not here:
        raise NoSuchPlatform(platform, sorted({platform_of(node, read_config) for node in manifests}))
    for wanted in (variant, DEFAULT_VARIANT):
        for node in here:
            if variant_of(node) == wanted:
                return node
    return here[0]


def tagged(desc: Descriptor, name: str, **annotations: str) -> Descriptor:
    """`desc` as an entry of a layout's index.json, named `name` (plus any other annotations)."""
    return Descriptor(desc.media_type, desc.digest, desc.size,
                      {**desc.annotations, REF_ANNOTATION: name, **annotations}, desc.platform)


def layout_index_bytes(entries: list[Descriptor]) -> bytes:
    """A layout's index.json listing `entries`: the one writer of that file, sorted so it is stable."""
    entries = sorted(entries, key=lambda m: (m.annotations.get(REF_ANNOTATION, ""), m.digest))
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [m.to_json() for m in entries]}
    return json.dumps(index, indent=2, sort_keys=True).encode()
