"""cogbuild pull: fetch an image (all platforms and variants) into the local store, verifying every blob."""

from __future__ import annotations

import click

from ..cache import mount_hints_dir
from ..project import open_store
from ..transfer_progress import TransferProgress
from ..registry.reference import parse_reference
from ..registry.remote import pull_image
from ..registry.transfer import TransferStats
from ..signing import check_configured_signature
from ..settings import settings_of
from ..ui import progress_printer, result


@click.command("pull")
@click.argument("ref")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP to a registry that is not on loopback.")
@click.pass_context
def command(ctx: click.Context, ref: str, insecure: bool) -> None:
    """Fetch REF into the local store; print REF@sha256:….

    \b
    Examples:
      cogbuild pull 127.0.0.1:5000/hello:v1
      cogbuild pull ghcr.io/me/model@sha256:…
      COGBUILD_VERIFY_KEY=release.pub cogbuild pull 127.0.0.1:5000/hello:v1   # only if signed by that key
    """
    progress = progress_printer(ctx)
    reference = parse_reference(ref)
    progress(f"pulling {reference}")
    stats = TransferStats()
    # before a byte is stored
    settings = settings_of(ctx)
    verified = check_configured_signature(reference, settings.verify_key, insecure=insecure)
    if verified:
        reference = reference.with_digest(verified)
    desc = pull_image(reference, open_store(settings.store_root), insecure=insecure, stats=stats,
                      progress=TransferProgress(progress, "downloaded"), hints=mount_hints_dir(settings.cache_root))
    progress(f"{stats.blobs_downloaded} blobs downloaded ({stats.bytes_received / 1e6:.1f} MB), "
             f"{stats.blobs_skipped} already present")
    result(f"{reference.name}@{desc.digest}")
