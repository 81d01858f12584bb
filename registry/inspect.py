"""What an image is: variants and platforms, layers and what each holds, schema inputs/outputs, the lock.

Works on the local store (an OCI layout) or a registry; only manifests, configs and (when attached)
the lock are read, never the layers. `describe()` returns plain data for `--json`; `render()` makes text.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from cogbuild.layers.descriptor import INDEX_TYPES, Descriptor, InvalidDescriptor, children, is_digest
from cogbuild.layers.image import image_metadata
from cogbuild.layers.imagegraph import LOCK_LABEL, SCHEMA_LABELS, VARIANT_ANNOTATION

from .client import RegistryClient, RegistryError
from .errors import OCIError
from .layout import Layout
from .reference import Reference
from .referrers import LOCK_ARTIFACT_TYPE, find_referrers
from .attachments import ATTESTATION_KIND, SIGNATURE_KIND, read_attachments
from .remote import fetch_small_blob, get_manifest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ReadBlob = Callable[[str], bytes]  # digest -> verified bytes


def describe(read: ReadBlob, top: Descriptor, *, name: str, lock_text: bytes | None = None) -> dict[str, Any]:
    """Plain data about the image; OCIError naming it when a manifest or config is malformed."""
    try:
        images = _describe_images(read, top)
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


def _describe_images(read: ReadBlob, top: Descriptor) -> list[dict[str, Any]]:
    doc = json.loads(read(top.digest))
    if top.media_type in INDEX_TYPES:
        entries = children(doc, top.media_type)
        return [_describe_manifest(read, d) for d in entries if d.media_type not in INDEX_TYPES]
    return [_describe_manifest(read, top, doc)]


def _describe_manifest(read: ReadBlob, desc: Descriptor, doc: dict | None = None) -> dict[str, Any]:
    doc = doc or json.loads(read(desc.digest))
    config_desc, *layer_descs = children(doc, desc.media_type)
    config = json.loads(read(config_desc.digest))
    labels = (config.get("config") or {}).get("Labels") or {}
    history = [h for h in config.get("history", []) if not h.get("empty_layer")]
    layers: list[dict[str, Any]] = []
    for i, layer in enumerate(layer_descs):
        holds = history[i].get("created_by", "") if i < len(history) else ""
        layers.append({"digest": layer.digest, "size": layer.size, "media_type": layer.media_type,
                       "holds": holds.removeprefix("cogbuild: ")})
    platform = desc.platform or {"os": config.get("os", ""), "architecture": config.get("architecture", "")}
    variant = (desc.annotations.get(VARIANT_ANNOTATION)
               or (doc.get("annotations") or {}).get(VARIANT_ANNOTATION) or "")
    return {
        "digest": desc.digest,
        "platform": "/".join(p for p in (platform.get("os"), platform.get("architecture"),
                                         platform.get("variant")) if p),
        "variant": variant,
        "size": sum(layer["size"] for layer in layers) + config_desc.size,
        "layers": layers,
        "schema": summarize_schema(image_metadata(doc, config, SCHEMA_LABELS)),
        "lock_digest": labels.get(LOCK_LABEL, ""),
        "entrypoint": (config.get("config") or {}).get("Entrypoint") or [],
        "annotations": dict(doc.get("annotations") or {}),
    }


def summarize_schema(text: str | None) -> dict[str, Any] | None:
    """Inputs (name, type, default, description, in x-order) and the output type of a Cog OpenAPI schema."""
    if not text:
        return None
    try:
        schemas = json.loads(text)["components"]["schemas"]
    except (ValueError, KeyError, TypeError):
        return {"error": "the image's schema is not a Cog OpenAPI document"}
    props = (schemas.get("Input") or {}).get("properties") or {}
    required = set((schemas.get("Input") or {}).get("required") or [])
    inputs = []
    for key, prop in sorted(props.items(), key=lambda kv: kv[1].get("x-order", 0)):
        inputs.append({"name": key, "type": _type_name(prop, schemas), "required": key in required,
                       "default": prop.get("default"), "description": prop.get("description", "")})
    return {"inputs": inputs, "output": _type_name(schemas.get("Output") or {}, schemas)}


def _type_name(prop: dict, schemas: dict) -> str:
    if "allOf" in prop and prop["allOf"]:
        target = prop["allOf"][0].get("$ref", "").rsplit("/", 1)[-1]
        choices = (schemas.get(target) or {}).get("enum")
        return f"enum{choices}" if choices else target or "object"
    if prop.get("type") == "array":
        return f"list[{_type_name(prop.get('items') or {}, schemas)}]"
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
    desc = layout.resolve(name)
    summary = describe(lambda d: layout.read_blob(d), desc, name=name)
    for digest in summary["lock_digests"]:
        if is_digest(digest) and layout.has_blob(digest):  # a label is the image's word, not a checked one
            summary["lock"] = summarize_lock(layout.read_blob(digest))
            break
    return summary


def attached_lock(client: RegistryClient, ref: Reference, digest: str) -> bytes | None:
    """The cog.lock attached to the image `digest` as a referrer, if there is one."""
    lock_refs = find_referrers(ref, digest, artifact_type=LOCK_ARTIFACT_TYPE, client=client)
    if not lock_refs:
        return None
    data, lock_manifest = get_manifest(client, ref, lock_refs[0].digest)
    try:
        files = children(json.loads(data), lock_manifest.media_type)[1:]
    except ValueError as exc:  # InvalidDescriptor included
        raise RegistryError(f"the cog.lock artifact of {ref} is malformed ({exc})") from None
    return fetch_small_blob(client, ref, files[0].digest) if files else None


def remote_reader(client: RegistryClient, ref: Reference) -> tuple[Descriptor, ReadBlob]:
    """The image `ref` names, and a reader of its manifests and configs (each fetched once, verified)."""
    data, top = get_manifest(client, ref)
    cache: dict[str, bytes] = {top.digest: data}

    def read(digest: str) -> bytes:
        if digest not in cache:
            cache[digest] = fetch_small_blob(client, ref, digest)
        return cache[digest]

    return top, read


def describe_remote(ref: Reference, *, insecure: bool = False) -> dict[str, Any]:
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    top, read = remote_reader(client, ref)
    summary = describe(read, top, name=str(ref), lock_text=attached_lock(client, ref, top.digest))
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
