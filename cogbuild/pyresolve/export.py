"""export_requirements: Artifacts → pip-compile-style text that `pip install --require-hashes` accepts."""

from __future__ import annotations

from collections.abc import Iterable

from ..artifacts import REQUESTED, Artifact

HEADER = "# Pinned by cogbuild lock; install with: pip install --no-deps --require-hashes -r <this file>\n"


def export_requirements(artifacts: Iterable[Artifact]) -> str:
    """One `name==version` block per project with every pinned file's --hash and a '# via' comment."""
    by_name: dict[str, list[Artifact]] = {}
    for artifact in artifacts:
        by_name.setdefault(artifact.name, []).append(artifact)
    blocks = [_block(name, by_name[name]) for name in sorted(by_name)]
    return HEADER + "".join(blocks)


def _block(name: str, artifacts: list[Artifact]) -> str:
    versions = {a.version for a in artifacts}
    if len(versions) != 1:
        raise ValueError(f"{name} is pinned to several versions: {', '.join(sorted(versions))}")
    hashes = sorted({a.sha256 for a in artifacts})
    lines = [f"{name}=={versions.pop()}"] + [f"    --hash=sha256:{h}" for h in hashes]
    text = " \\\n".join(lines) + "\n"
    via = sorted({"-r requirements" if v == REQUESTED else v for a in artifacts for v in a.required_by})
    if len(via) == 1:
        text += f"    # via {via[0]}\n"
    elif via:
        text += "    # via\n" + "".join(f"    #   {v}\n" for v in via)
    return text
