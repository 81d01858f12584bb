"""What an image is (for `cogbuild show`, rebuild and provenance): variants and platforms, layers and what
each holds, schema inputs/outputs, the lock.

Works on any BlobSource (the local store, a layout, a registry); only manifests, configs and (when
attached) the lock are read, never the layers. `describe()` returns plain data for `--json`; `render()`
makes text. The Cog parts live here, not in registry/, which knows OCI only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .layers.descriptor import Descriptor, InvalidDescriptor, children, is_digest
from .layers.image import image_metadata
from .layers.imagegraph import LOCK_LABEL, SCHEMA_LABELS, BlobSource, Node, config_of, image_manifests, \
    read_document, variant_of
from .lock_artifacts import attached_lock
from .predict_io import input_specs, inline_refs
from .registry.attachments import ATTESTATION_KIND, SIGNATURE_KIND, read_attachments
from .registry.client import RegistryClient
from .registry.errors import OCIError
from .registry.layout import Layout
from .registry.reference import Reference
from .registry.remote import RegistrySource

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def describe(source: BlobSource, top: Descriptor, *, name: str, lock_text: bytes | None = None) -> dict[str, Any]:
    """Plain data about the image; OCIError naming it when a manifest or config is malformed."""
    try:
        images = [_describe_manifest(source, node) for node in image_manifests(source, top)]
    except (InvalidDescriptor, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OCIError(f"the image {name} has a malformed manifest or config ({exc})") from None
    lock_digests = sorted({i["lock_digest"] for i in images if i["lock_digest"]})
    return {
        "name": name,
        "digest": top.digest,
        "media_type": top.media_type,
        "images": images,
        "lock": summarize_lock(lock_text) if lock_text else None,
        "lock_digests": lock_digests,
    }


def _describe_manifest(source: BlobSource, node: Node) -> dict[str, Any]:
    desc, doc = node.descriptor, node.document or {}
    config_desc = config_of(node)
    layer_descs = children(doc, desc.media_type)[1:]
    config = read_document(source, config_desc)[1]
    labels = (config.get("config") or {}).get("Labels") or {}
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers: list[dict[str, Any]] = []
    for i, layer in enumerate(layer_descs):
        holds = history[i].get("created_by", "") if i < len(history) else ""
        layers.append({"digest": layer.digest, "size": layer.size, "media_type": layer.media_type,
                       "holds": holds.removeprefix("cogbuild: ")})
    platform = desc.platform or {"os": config.get("os", ""), "architecture": config.get("architecture", "")}
    return {
        "digest": desc.digest,
        "platform": "/".join(p for p in (platform.get("os"), platform.get("architecture"),
                                         platform.get("variant")) if p),
        "variant": variant_of(node, default=""),
        "size": sum(layer["size"] for layer in layers) + config_desc.size,
        "layers": layers,
        "schema": summarize_schema(image_metadata(doc, config, SCHEMA_LABELS)),
        "lock_digest": labels.get(LOCK_LABEL, ""),
        "entrypoint": (config.get("config") or {}).get("Entrypoint") or [],
        "annotations": dict(doc.get("annotations") or {}),
    }


def summarize_schema(text: str | None) -> dict[str, Any] | None:
    """Inputs (name, type, default, description, in x-order) and the output type of a Cog OpenAPI schema,
    read by predict_io, the one reader of Cog's schema layout."""
    if not text:
        return None
    try:
        schema = json.loads(text)
        schemas = schema["components"]["schemas"]
        specs = input_specs(schema) or {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {"error": "the image's schema is not a Cog OpenAPI document"}
    inputs = [{"name": spec.name, "type": _type_name(spec.prop), "required": spec.required,
               "default": spec.prop.get("default"), "description": spec.prop.get("description", "")}
              for spec in specs.values()]
    return {"inputs": inputs, "output": _type_name(inline_refs(schemas.get("Output") or {}, schemas))}


def _type_name(prop: dict) -> str:
    """A property (its `allOf` references inlined) as a short type name: enum[...], list[...], Path, str."""
    if prop.get("enum"):
        return f"enum{prop['enum']}"
    if prop.get("type") == "array":
        return f"list[{_type_name(prop.get('items') or {})}]"
    if prop.get("format") == "uri":
        return "Path"
    return prop.get("type") or prop.get("title") or "any"


def summarize_lock(text: bytes) -> dict[str, Any]:
    try:
        lock = tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError):
        return {"error": "the attached cog.lock is not valid TOML"}
    packages = lock.get("package") or []
    counts: dict[str, int] = {}
    total = 0
    for p in packages:
        key = f"{p.get('group', '?')}/{p.get('kind', '?')}"
        counts[key] = counts.get(key, 0) + 1
        total += int(p.get("size") or 0)
    return {"python": lock.get("python"), "debian": lock.get("debian"), "platforms": lock.get("platforms"),
            "variants": lock.get("variants"), "packages": len(packages), "by_group": dict(sorted(counts.items())),
            "download_bytes": total}


# -- sources -----------------------------------------------------------------------------------
def describe_local(layout: Layout, name: str) -> dict[str, Any]:
    summary = describe(layout, layout.resolve(name), name=name)
    for digest in summary["lock_digests"]:
        if is_digest(digest) and layout.has_blob(digest):  # a label is the image's word, not a checked one
            summary["lock"] = summarize_lock(layout.read_blob(digest))
            break
    return summary


def describe_remote(ref: Reference, *, insecure: bool = False) -> dict[str, Any]:
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    source = RegistrySource(client, ref)
    top = source.top()
    summary = describe(source, top, name=str(ref), lock_text=attached_lock(client, ref, top.digest))
    summary["signatures"] = len(read_attachments(ref, top.digest, SIGNATURE_KIND, client=client))
    # cosign's annotation names what an attestation claims (e.g. SLSA provenance); it is not checked here.
    summary["attestations"] = [a.annotations.get("predicateType") or a.media_type
                               for a in read_attachments(ref, top.digest, ATTESTATION_KIND, client=client)]
    return summary


# -- text ----------------------------------------------------------------------------------------
def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['name']}", f"  digest: {summary['digest']}"]
    for image in summary["images"]:
        title = " ".join(p for p in (image["platform"], image["variant"]) if p)
        lines.append(f"  {title}  {image['digest']}  {_size(image['size'])}")
        for layer in image["layers"]:
            lines.append(f"    {_size(layer['size']):>10}  {layer['digest'][7:19]}  {layer['holds'] or '-'}")
        schema = image["schema"]
        if schema and "inputs" in schema:
            for item in schema["inputs"]:
                default = "" if item["default"] is None else f" = {item['default']!r}"
                flag = " (required)" if item["required"] else ""
                lines.append(f"    input {item['name']}: {item['type']}{default}{flag}  {item['description']}".rstrip())
            lines.append(f"    output: {schema['output']}")
    if summary["lock_digests"]:
        lines.append(f"  lock: {', '.join(summary['lock_digests'])}")
    if "signatures" in summary:  # only a registry has them
        lines.append(f"  signatures: {summary['signatures']} (not checked here: `cogbuild verify REF --key PUB`)")
        lines.append(f"  attestations: {', '.join(summary['attestations']) or 'none'}")
    lock = summary.get("lock")
    if lock and "packages" in lock:
        groups = ", ".join(f"{k} {v}" for k, v in lock["by_group"].items())
        lines.append(f"    python {lock['python']}, debian {lock['debian']}, {lock['packages']} packages "
                     f"({_size(lock['download_bytes'])}): {groups}")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
