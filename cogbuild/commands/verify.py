"""cogbuild verify: check an image's signatures against a public key."""

from __future__ import annotations

from pathlib import Path

import click

from ..registry.reference import parse_reference
from ..provenance import verify_attestations
from ..signing import load_public_key, verify_signatures
from ..ui import progress_printer, result


@click.command("verify")
@click.argument("ref")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="The public key (PEM) that must have signed the image, e.g. from `cogbuild keygen`.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.pass_context
def command(ctx: click.Context, ref: str, key_path: Path, insecure: bool) -> None:
    """Check that REF (and each platform manifest of it) carries a valid signature by the key.

    A signature counts when it was made by the key, names the manifest's digest and names REF as podman
    checks it: by tag, exactly that repository and tag; by digest, the repository. Signatures are read
    from the `sha256-<hex>.sig` tags where cosign, skopeo and `cogbuild push --sign-key` put them.
    Attestations (the `.att` tag, e.g. cogbuild's SLSA provenance) must be signed by the same key and
    name the image's digest.

    \b
    Examples:
      cogbuild verify 127.0.0.1:5000/hello:v1 --key cogbuild.pub
      cogbuild verify ghcr.io/me/model@sha256:… --key release.pub
    """
    key = load_public_key(key_path)
    reference = parse_reference(ref)
    progress_printer(ctx)(f"checking the signatures of {reference}")
    digests = verify_signatures(reference, key, insecure=insecure)
    claims = verify_attestations(reference, key, insecure=insecure)
    result(f"{reference.with_digest(digests[0])}: signed by {key_path} ({len(digests)} manifests checked); "
           f"attestations: {', '.join(claims) or 'none'}")
