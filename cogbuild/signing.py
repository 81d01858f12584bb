"""Keys and signatures in the formats cosign, skopeo and podman use (sigstore, without a transparency log).

Keys: ECDSA P-256. The private key is its PKCS #8 DER encrypted the way cosign does it — scrypt derives
a NaCl secretbox key from the passphrase, and the JSON envelope {kdf, cipher, ciphertext} is the body of
an `ENCRYPTED SIGSTORE PRIVATE KEY` PEM block; the public key is a plain `PUBLIC KEY` PEM.
Signatures: a "simple signing" JSON payload naming the image (`docker-reference`) and its manifest digest,
signed with ECDSA over SHA-256 (DER, base64) — what containers/image checks for `sigstoreSigned`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import click
import nacl.exceptions
import nacl.secret
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import __version__
from .errors import CogbuildError, UsageError
from .layers.descriptor import INDEX_TYPES, MANIFEST_TYPES, Descriptor, children
from .registry.attachments import SIGNATURE_KIND, Attachment, attach, read_attachments
from .registry.client import RegistryClient
from .registry.referrers import ArtifactFile, attach_artifact
from .registry.errors import OCIError
from .registry.reference import Reference, parse_reference
from .registry.remote import get_manifest

PRIVATE_PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SIGNATURE_TYPE = "cosign container image signature"
SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
# cosign's artifact type for a signature stored as an OCI 1.1 referrer (`--registry-referrers-mode=oci-1-1`).
SIGNATURE_ARTIFACT_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
# cosign's scrypt parameters (N=2^15, r=8, p=1): the ones every reader of this format accepts.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
SALT_BYTES = 32


class SigningError(CogbuildError):
    """A key that cannot be used, or a signature that does not hold."""


# -- keys ------------------------------------------------------------------------------------------
def generate_key_pair(passphrase: bytes) -> tuple[bytes, bytes]:
    """A new P-256 key pair: (encrypted private PEM, public PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return _pem(PRIVATE_PEM_TYPES[0], _encrypt(der, passphrase)), public_pem(key.public_key())


def public_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """The signing key in `path` (cosign's encrypted PEM); one sentence when it cannot be opened."""
    kind, body = _read_pem(path)
    if kind not in PRIVATE_PEM_TYPES:
        raise UsageError(f"{path} is a {kind!r} PEM, not a cosign private key (make one with `cogbuild keygen`)")
    try:
        envelope = json.loads(body)
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError("unknown kdf or cipher")
        params = kdf["params"]
        secret = _scrypt(passphrase, base64.b64decode(kdf["salt"]), params["N"], params["r"], params["p"])
        nonce, ciphertext = base64.b64decode(cipher["nonce"]), base64.b64decode(envelope["ciphertext"])
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{path} is not a well-formed cosign private key (its encrypted envelope is damaged)") \
            from None
    try:
        der = nacl.secret.SecretBox(secret).decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise UsageError(f"the passphrase does not open the private key {path}") from None
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise UsageError(f"{path} holds a key cogbuild does not sign with: only ECDSA P-256 keys are supported")
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    kind, _ = _read_pem(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError:
        key = None
    if kind != "PUBLIC KEY" or not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError(f"{path} is not an ECDSA public key in PEM form (the .pub of `cogbuild keygen`)")
    return key


def _encrypt(plaintext: bytes, passphrase: bytes) -> bytes:
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    secret = _scrypt(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    sealed = nacl.secret.SecretBox(secret).encrypt(plaintext, nonce).ciphertext  # MAC + ciphertext
    envelope = {
        "kdf": {"name": "scrypt", "params": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P},
                "salt": _b64(salt)},
        "cipher": {"name": "nacl/secretbox", "nonce": _b64(nonce)},
        "ciphertext": _b64(sealed),
    }
    return json.dumps(envelope).encode()


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    # Up to the strongest setting in use (N=2^17, r=8): a hostile key file cannot ask for more than 128 MiB.
    if not (all(isinstance(v, int) for v in (n, r, p)) and 1 < n <= 1 << 17 and n & (n - 1) == 0
            and 0 < r <= 8 and 0 < p <= 4):
        raise ValueError("scrypt parameters out of range")
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, dklen=nacl.secret.SecretBox.KEY_SIZE,
                          maxmem=256 * r * (n + p + 2))


def _pem(kind: str, body: bytes) -> bytes:
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i:i + 64] for i in range(0, len(encoded), 64)]
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""]).encode()


def _read_pem(path: Path) -> tuple[str, bytes]:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the key file {path} ({exc.__class__.__name__})") from None
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 2 or not lines[0].startswith("-----BEGIN ") or not lines[-1].startswith("-----END "):
        raise UsageError(f"{path} is not a PEM key file")
    kind = lines[0][len("-----BEGIN "):].rstrip("-")
    try:
        return kind, base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise UsageError(f"{path} is not a PEM key file (its base64 body is damaged)") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- simple signing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignedImage:
    """What a verified payload says: this manifest digest is the image named `docker_reference`."""

    docker_reference: str
    manifest_digest: str


def simple_signing_payload(docker_reference: str, manifest_digest: str) -> bytes:
    doc = {
        "critical": {"identity": {"docker-reference": docker_reference},
                     "image": {"docker-manifest-digest": manifest_digest},
                     "type": SIGNATURE_TYPE},
        "optional": {"creator": f"cogbuild {__version__}"},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def sign(key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    """The base64 DER ECDSA-SHA256 signature of `payload`, as cosign annotates it."""
    return _b64(key.sign(payload, ec.ECDSA(hashes.SHA256())))


def signature_holds(key: ec.EllipticCurvePublicKey, payload: bytes, signature_b64: str) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), payload, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


def read_simple_signing(payload: bytes) -> SignedImage | None:
    """The identity and digest a payload names; None when it is not a cosign image signature."""
    try:
        critical = json.loads(payload)["critical"]
        if critical["type"] != SIGNATURE_TYPE:
            return None
        reference = critical["identity"]["docker-reference"]
        digest = critical["image"]["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(reference, str) or not isinstance(digest, str):
        return None
    return SignedImage(reference, digest)


# -- passphrases -------------------------------------------------------------------------------------
PASSPHRASE_VARIABLES = ("COGBUILD_SIGN_PASSWORD", "COSIGN_PASSWORD")


def read_passphrase(purpose: str, given: str | None, *, confirm: bool = False) -> bytes:
    """The passphrase `given` by COGBUILD_SIGN_PASSWORD or COSIGN_PASSWORD (Settings.sign_password; empty is an
    empty passphrase), else a prompt."""
    if given is not None:
        return given.encode()
    if not sys.stdin.isatty():
        raise UsageError(f"a passphrase is needed to {purpose}: set COGBUILD_SIGN_PASSWORD (or COSIGN_PASSWORD), "
                         "or run on a terminal to be asked")
    return click.prompt(f"Passphrase to {purpose}", hide_input=True, confirmation_prompt=confirm,
                        default="", show_default=False).encode()


# -- signatures attached to images -------------------------------------------------------------------
VERIFY_KEY_VARIABLE = "COGBUILD_VERIFY_KEY"


def check_configured_signature(ref: Reference, path: Path | None, *, insecure: bool = False) -> str | None:
    """With a key `path` (COGBUILD_VERIFY_KEY), the digest of `ref` once its signatures hold; else None."""
    if path is None:
        return None
    key = load_public_key(path)
    try:
        return verify_signatures(ref, key, insecure=insecure)[0]
    except SigningError as exc:
        raise SigningError(f"{exc}; {VERIFY_KEY_VARIABLE} asks for images signed by {path}") from None


def signed_identity(ref: Reference) -> str:
    """The docker-reference a signature names: the repository and the tag it was pushed under."""
    return str(ref.with_tag(ref.tag or "latest"))


def identity_matches(signed_reference: str, ref: Reference) -> bool:
    """podman's default rule (matchRepoDigestOrExact): by tag, the exact name; by digest, the repository."""
    try:
        signed = parse_reference(signed_reference)
    except OCIError:
        return False
    if signed.name != ref.name:
        return False
    return bool(ref.digest) or signed.tag == (ref.tag or "latest")


def sign_manifests(ref: Reference, manifests: Sequence[Descriptor], key: ec.EllipticCurvePrivateKey, *,
                   insecure: bool = False) -> None:
    """Sign each manifest as the image `ref`: under its `sha256-<hex>.sig` tag and as an OCI referrer.

    The tag is where podman and skopeo look; the referrer is for registries and tools that list artifacts
    (the referrers API, or its `sha256-<hex>` fallback tag where the registry has none).
    """
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    for manifest in manifests:
        payload = simple_signing_payload(signed_identity(ref), manifest.digest)
        annotations = {SIGNATURE_ANNOTATION: sign(key, payload)}
        attach(ref, manifest.digest, SIGNATURE_KIND, Attachment(SIMPLE_SIGNING_MEDIA_TYPE, payload, annotations),
               client=client)
        attach_artifact(ref, manifest, SIGNATURE_ARTIFACT_TYPE,
                        [ArtifactFile("signature.json", SIMPLE_SIGNING_MEDIA_TYPE, payload, annotations)],
                        client=client)


def verify_signatures(ref: Reference, key: ec.EllipticCurvePublicKey, *, insecure: bool = False) -> list[str]:
    """Check that `key` signed `ref` and, for an index, each manifest in it; return the digests checked."""
    client = RegistryClient(ref.registry, ref.api_host, insecure=insecure)
    data, top = get_manifest(client, ref)
    digests: list[str] = [top.digest]
    if top.media_type in INDEX_TYPES:
        digests += [child.digest for child in children(json.loads(data), top.media_type)
                    if child.media_type in INDEX_TYPES + MANIFEST_TYPES]
    for digest in digests:
        what = str(ref) if digest == top.digest else f"{ref} ({digest})"
        problem = _signature_problem(ref, digest, what, read_attachments(ref, digest, SIGNATURE_KIND, client=client),
                                     key)
        if problem:
            raise SigningError(problem)
    return digests


def _signature_problem(ref: Reference, digest: str, what: str, attached: list[Attachment],
                       key: ec.EllipticCurvePublicKey) -> str | None:
    """None when one attached signature by `key` names `digest` as `ref`; else what is wrong, in a sentence."""
    signatures = [a for a in attached if a.media_type == SIMPLE_SIGNING_MEDIA_TYPE]
    if not signatures:
        return f"{what} is not signed: no signature is attached to it"
    problems = []
    for item in signatures:
        named = read_simple_signing(item.data)
        if not signature_holds(key, item.data, item.annotations.get(SIGNATURE_ANNOTATION, "")):
            problems.append("not made by the given key")
        elif named is None:
            problems.append("not a cosign image signature")
        elif named.manifest_digest != digest:
            problems.append(f"for another digest ({named.manifest_digest})")
        elif not identity_matches(named.docker_reference, ref):
            problems.append(f"for another name ({named.docker_reference})")
        else:
            return None
    return f"no valid signature for {what}: the {len(signatures)} attached are " + "; ".join(sorted(set(problems)))
