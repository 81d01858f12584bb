"""An SPDX 2.3 JSON SBOM made from the lock's pinned artifacts: what is in the image, by hash.

Deterministic like the image: no wall-clock time (SOURCE_DATE_EPOCH, default 0) and a document
namespace derived from the image digest.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Iterable, Protocol

from .layers.descriptor import canonical_json
from .layers.image import rfc3339


class PinnedArtifact(Protocol):  # what cogbuild.artifacts.Artifact provides
    kind: str
    name: str
    version: str
    url: str
    sha256: str


def _purl(artifact: PinnedArtifact) -> str | None:
    if artifact.kind == "wheel":
        return f"pkg:pypi/{re.sub(r'[-_.]+', '-', artifact.name).lower()}@{artifact.version}"
    if artifact.kind == "deb":
        return f"pkg:deb/debian/{artifact.name}@{artifact.version}"
    return None


def spdx_sbom(image_name: str, image_digest: str, artifacts: Iterable[PinnedArtifact],
              tool: str = "cogbuild", created: int = 0) -> bytes:
    """SPDX JSON bytes describing `image_digest` as containing every artifact, made at `created`
    (SOURCE_DATE_EPOCH)."""
    unique = sorted({(a.kind, a.name, a.version, a.sha256): a for a in artifacts}.values(),
                    key=lambda a: (a.kind, a.name, a.version, a.sha256))
    packages = [{
        "SPDXID": "SPDXRef-Image",
        "name": image_name,
        "versionInfo": image_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "checksums": [{"algorithm": "SHA256", "checksumValue": image_digest.split(":", 1)[1]}],
    }]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    for number, artifact in enumerate(unique, 1):
        package: dict[str, Any] = {
            "SPDXID": f"SPDXRef-Package-{number}",
            "name": artifact.name,
            "versionInfo": artifact.version,
            "downloadLocation": artifact.url or "NOASSERTION",
            "filesAnalyzed": False,
            "checksums": [{"algorithm": "SHA256", "checksumValue": artifact.sha256}],
            "comment": f"cogbuild artifact kind: {artifact.kind}",
        }
        if purl := _purl(artifact):
            package["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                        "referenceLocator": purl}]
        packages.append(package)
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": package["SPDXID"]})
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image_name}@{image_digest}",
        "documentNamespace": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'cogbuild-sbom:{image_digest}')}",
        "creationInfo": {"created": rfc3339(created), "creators": [f"Tool: {tool}"]},
        "packages": packages,
        "relationships": relationships,
    }
    return canonical_json(doc)
