"""cogbuild verify: check an image's signatures against a public key, and rebuild it from its project."""

from __future__ import annotations

from pathlib import Path

import click

from ..registry.reference import parse_reference
from ..errors import CogbuildError, UsageError
from ..provenance import verify_attestations
from ..rebuild import rebuild_and_compare
from ..settings import settings_of
from ..signing import load_public_key, verify_signatures
from ..ui import progress_printer, result


@click.command("verify")
@click.argument("ref")
@click.option("--key", "key_path", type=click.Path(path_type=Path),
              help="The public key (PEM) that must have signed the image, e.g. from `cogbuild keygen`.")
@click.option("--rebuild", "rebuild_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Also rebuild the model in this directory with the cog.lock attached to the image, "
                   "composing every layer anew, and check that the digest is the same.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.pass_context
def command(ctx: click.Context, ref: str, key_path: Path | None, rebuild_dir: Path | None, insecure: bool) -> None:
    """Check REF's signatures against a key (--key), and that its project rebuilds to the same digest (--rebuild).

    A signature counts when it was made by the key, names the manifest's digest and names REF as podman
    checks it: by tag, exactly that repository and tag; by digest, the repository. Signatures are read
    from the `sha256-<hex>.sig` tags where cosign, skopeo and `cogbuild push --sign-key` put them.
    Attestations (the `.att` tag, e.g. cogbuild's SLSA provenance) must be signed by the same key and
    name the image's digest. Without --key nothing about signatures is checked, and the output says so.

    \b
    Examples:
      cogbuild verify 127.0.0.1:5000/hello:v1 --key cogbuild.pub
      cogbuild verify ghcr.io/me/model@sha256:… --key release.pub
      cogbuild verify 127.0.0.1:5000/hello:v1 --rebuild examples/hello   # same digest from source?
    """
    if not key_path and not rebuild_dir:
        raise UsageError("name what to check: --key PUB (signatures), --rebuild DIR (reproducibility), or both")
    progress = progress_printer(ctx)
    reference = parse_reference(ref)
    if key_path:
        key = load_public_key(key_path)
        progress(f"checking the signatures of {reference}")
        digests = verify_signatures(reference, key, insecure=insecure)
        # Later checks use the digest just verified, so a tag moved meanwhile cannot slip another image in.
        reference = reference.with_digest(digests[0])
        claims = verify_attestations(reference, key, insecure=insecure)
        result(f"{reference}: signed by {key_path} ({len(digests)} manifests checked); "
               f"attestations: {', '.join(claims) or 'none'}")
    if rebuild_dir:
        settings = settings_of(ctx)
        report = rebuild_and_compare(reference, rebuild_dir, settings.cache_root, insecure=insecure,
                                     progress=progress, source_date_epoch=settings.source_date_epoch())
        if not report.matches:
            raise CogbuildError(f"rebuilding {rebuild_dir} gives {report.rebuilt_digest}, not the "
                                f"{report.image_digest} of {ref}: {report.difference}")
        unchecked = "" if key_path else "; its signatures were not checked (give --key PUB for that)"
        result(f"{reference.with_digest(report.image_digest)}: rebuilt from {rebuild_dir} with the attached lock, "
               f"the same digest{unchecked}")
