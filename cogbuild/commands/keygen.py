"""cogbuild keygen: a signing key pair in the format cosign, skopeo and podman read."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import UsageError
from ..signing import generate_key_pair, read_passphrase
from ..settings import settings_of
from ..ui import result


@click.command("keygen")
@click.argument("prefix", default="cogbuild", required=False)
@click.pass_context
def command(ctx: click.Context, prefix: str) -> None:
    """Write a signing key pair: PREFIX.key (encrypted with a passphrase) and PREFIX.pub.

    The passphrase comes from COGBUILD_SIGN_PASSWORD (or COSIGN_PASSWORD), else it is asked for.
    The files are those of `cosign generate-key-pair`: `skopeo copy --sign-by-sigstore-private-key`,
    `cosign sign --key` and podman's `sigstoreSigned` policy take them as they are.

    \b
    Examples:
      cogbuild keygen                      # cogbuild.key, cogbuild.pub
      COGBUILD_SIGN_PASSWORD=… cogbuild keygen ci/release
    """
    private_path, public_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} already exists; remove it or choose another PREFIX (keys are never overwritten)")
    passphrase = read_passphrase("encrypt the new private key", settings_of(ctx).sign_password, confirm=True)
    private_pem, public_pem = generate_key_pair(passphrase)
    _write_new(private_path, private_pem, 0o600)
    _write_new(public_path, public_pem, 0o644)
    result(f"{private_path}\n{public_path}")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` whole or not at all, never replacing a file that appeared meanwhile."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.link(temporary, path)  # fails if the name exists, unlike rename
    except FileExistsError:
        raise UsageError(f"{path} appeared while the key was made; it was left as it is") from None
    finally:
        temporary.unlink()
