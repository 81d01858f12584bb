"""Check an archive's InRelease with gpgv and keep only the text the signature covers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import CogbuildError


def verified_release_text(inrelease: bytes, *, keyring: Path, what: str) -> bytes:
    """The signed content of a clearsigned InRelease, or CogbuildError when no trusted key signed it.

    Like apt: at least one good signature (GOODSIG: valid, key neither expired nor revoked) from the
    keyring is needed and any bad signature is fatal; signatures from keys outside the keyring
    (Debian signs with several) are ignored.
    """
    with tempfile.TemporaryDirectory(prefix="cogbuild-gpgv-") as tmp:
        signed, content = Path(tmp, "InRelease"), Path(tmp, "Release")
        signed.write_bytes(inrelease)
        _gpgv(["--output", str(content), str(signed)], keyring=keyring, what=what)
        if not content.exists():
            raise CogbuildError(f"{what} is not signed by a key in {keyring}.")
        return content.read_bytes()


def verified_detached(release: bytes, signature: bytes, *, keyring: Path, what: str) -> bytes:
    """`release` itself once its detached signature (Release.gpg) checks out, by the same rules."""
    with tempfile.TemporaryDirectory(prefix="cogbuild-gpgv-") as tmp:
        data, detached = Path(tmp, "Release"), Path(tmp, "Release.gpg")
        data.write_bytes(release)
        detached.write_bytes(signature)
        _gpgv([str(detached), str(data)], keyring=keyring, what=what)
    return release


def _gpgv(arguments: list[str], *, keyring: Path, what: str) -> None:
    gpgv = shutil.which("gpgv")
    if gpgv is None:
        raise CogbuildError(
            "gpgv is not installed, so Debian archive signatures cannot be checked (apt-get install gpgv)."
        )
    if not Path(keyring).is_file():
        raise CogbuildError(f"The Debian archive keyring {keyring} does not exist.")
    result = subprocess.run([gpgv, "--status-fd", "1", "--keyring", str(keyring), *arguments], capture_output=True)
    status = _status_keywords(result.stdout)
    if "BADSIG" in status:
        raise CogbuildError(f"{what} has a bad signature (the file was altered after signing).")
    if "GOODSIG" not in status and status & {"EXPKEYSIG", "REVKEYSIG", "EXPSIG"}:
        raise CogbuildError(f"{what} is signed only by an expired or revoked key (or the signature expired).")
    if "GOODSIG" not in status:
        raise CogbuildError(f"{what} is not signed by a key in {keyring}.")


def _status_keywords(status: bytes) -> set[str]:
    """Keywords of gpgv's machine-readable `[GNUPG:] KEYWORD ...` lines."""
    words = set()
    for line in status.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "[GNUPG:]":
            words.add(parts[1])
    return words
