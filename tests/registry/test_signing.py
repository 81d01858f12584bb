"""Signatures in sigstore's format: cogbuild's keys and signatures against skopeo's and podman's checks.

The interop tests are the proof: skopeo signs with a key from `cogbuild keygen` and `cogbuild verify`
accepts it; cogbuild signs and podman, under a policy requiring `sigstoreSigned` with our public key,
pulls the image and refuses an unsigned or re-tagged one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from cogbuild.cli import cli
from cogbuild.errors import UsageError
from cogbuild.registry.attachments import SIGNATURE_KIND, attachment_tag, read_attachments
from cogbuild.registry.client import RegistryClient
from cogbuild.registry.layout import Layout
from cogbuild.registry.reference import Reference, parse_reference
from cogbuild.registry.remote import get_manifest, push_image, put_manifest
from cogbuild.registry.referrers import find_referrers
from cogbuild.registry.remote import fetch_small_blob
from cogbuild.signing import (SIGNATURE_ANNOTATION, SIGNATURE_ARTIFACT_TYPE, SignedImage, SigningError, generate_key_pair, identity_matches,
                              load_private_key, load_public_key, read_simple_signing, sign, sign_manifests,
                              signature_holds, simple_signing_payload, verify_signatures)
from components import sigstore_podman, sigstore_skopeo
from synthetic_images import write_image, write_index
from oci_registry_server import FakeReferrersRegistry

PASSPHRASE = "correct horse"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def keys(tmp_path) -> tuple[Path, Path]:
    private_pem, public_pem = generate_key_pair(PASSPHRASE.encode())
    (tmp_path / "k.key").write_bytes(private_pem)
    (tmp_path / "k.pub").write_bytes(public_pem)
    return tmp_path / "k.key", tmp_path / "k.pub"


def _cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


def _last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


# -- keys and payloads, offline ------------------------------------------------------------------------
def test_key_pair_round_trip_and_its_envelope_is_cosigns(keys):
    private_path, public_path = keys
    key = load_private_key(private_path, PASSPHRASE.encode())
    lines = private_path.read_text().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    assert envelope["kdf"]["name"] == "scrypt" and envelope["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert envelope["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(envelope["cipher"]["nonce"])) == 24
    payload = simple_signing_payload("127.0.0.1:5000/ns/m:v1", DIGEST)
    signature = sign(key, payload)
    public = load_public_key(public_path)
    assert signature_holds(public, payload, signature)
    assert not signature_holds(public, payload.replace(b"ab", b"cd"), signature)
    other = load_public_key(_write(public_path.with_name("o.pub"), generate_key_pair(b"x")[1]))
    assert not signature_holds(other, payload, signature)


def test_payload_is_the_simple_signing_layout_containers_image_reads():
    doc = json.loads(simple_signing_payload("127.0.0.1:5000/ns/m:v1", DIGEST))
    assert set(doc) == {"critical", "optional"}
    assert doc["critical"] == {"identity": {"docker-reference": "127.0.0.1:5000/ns/m:v1"},
                               "image": {"docker-manifest-digest": DIGEST},
                               "type": "cosign container image signature"}
    named = read_simple_signing(simple_signing_payload("r/x:1", DIGEST))
    assert (named.docker_reference, named.manifest_digest) == ("r/x:1", DIGEST)
    assert read_simple_signing(b'{"critical": {"type": "something else"}}') is None
    assert read_simple_signing(b"not json") is None


def test_wrong_passphrase_damaged_or_foreign_key_files_are_one_sentence(keys, tmp_path):
    private_path, public_path = keys
    with pytest.raises(UsageError, match=r"^the passphrase does not open the private key .*k\.key$"):
        load_private_key(private_path, b"wrong")
    lines = private_path.read_text().splitlines()
    damaged = _write(tmp_path / "damaged.key", "\n".join([lines[0], "bm90IGpzb24=", lines[-1]]).encode())
    with pytest.raises(UsageError, match="not a well-formed cosign private key"):
        load_private_key(damaged, PASSPHRASE.encode())
    with pytest.raises(UsageError, match="is a 'PUBLIC KEY' PEM, not a cosign private key"):
        load_private_key(public_path, PASSPHRASE.encode())
    with pytest.raises(UsageError, match="is not an ECDSA public key"):
        load_public_key(private_path)
    with pytest.raises(UsageError, match="is not a PEM key file"):
        load_public_key(_write(tmp_path / "plain.pub", b"hello\n"))
    with pytest.raises(UsageError, match="cannot read the key file"):
        load_public_key(tmp_path / "absent.pub")


def test_identity_follows_podmans_match_repo_digest_or_exact():
    by_tag = parse_reference("127.0.0.1:5000/ns/m:v1")
    assert identity_matches("127.0.0.1:5000/ns/m:v1", by_tag)
    assert not identity_matches("127.0.0.1:5000/ns/m:v2", by_tag)
    assert not identity_matches("127.0.0.1:5000/ns/other:v1", by_tag)
    by_digest = parse_reference(f"127.0.0.1:5000/ns/m@{DIGEST}")
    assert identity_matches("127.0.0.1:5000/ns/m:v2", by_digest)
    assert not identity_matches("127.0.0.1:5000/ns/other:v2", by_digest)
    assert not identity_matches("::not a reference::", by_tag)


def test_keygen_writes_a_pair_refuses_to_overwrite_and_needs_a_passphrase(tmp_path):
    env = {"COGBUILD_SIGN_PASSWORD": PASSPHRASE}
    made = _cli("keygen", str(tmp_path / "release"), env=env)
    assert made.exit_code == 0, made.output
    assert oct((tmp_path / "release.key").stat().st_mode & 0o777) == "0o600"
    load_private_key(tmp_path / "release.key", PASSPHRASE.encode())
    before = (tmp_path / "release.key").read_bytes()
    again = _cli("keygen", str(tmp_path / "release"), env=env)
    assert again.exit_code == 2
    assert _last_line(again.output) == (f"error: {tmp_path / 'release.key'} already exists; remove it or choose "
                                        "another PREFIX (keys are never overwritten)")
    assert (tmp_path / "release.key").read_bytes() == before
    no_secret = _cli("keygen", str(tmp_path / "other"), env={"COGBUILD_SIGN_PASSWORD": None,
                                                               "COSIGN_PASSWORD": None})
    assert no_secret.exit_code == 2 and "set COGBUILD_SIGN_PASSWORD" in no_secret.output
    assert not list(tmp_path.glob("other*"))


# -- against a real registry ---------------------------------------------------------------------------
pytest_e2e = pytest.mark.e2e


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    if check:
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"
    return done


def _use_sigstore_attachments(registry_host: str) -> None:
    """registries.d in $HOME (the fixture's), where skopeo and podman read it."""
    config = Path(os.environ["HOME"]) / ".config" / "containers" / "registries.d"
    config.mkdir(parents=True, exist_ok=True)
    (config / "cogbuild-test.yaml").write_text(f"docker:\n  {registry_host}:\n    use-sigstore-attachments: true\n")


def _require_signed_by(registry_host: str, public_key: Path) -> None:
    policy = {"default": [{"type": "insecureAcceptAnything"}],
              "transports": {"docker": {registry_host: [{
                  "type": "sigstoreSigned", "keyPath": str(public_key),
                  "signedIdentity": {"type": "matchRepoDigestOrExact"}}]}}}
    (Path(os.environ["HOME"]) / ".config" / "containers" / "policy.json").write_text(json.dumps(policy))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _check_policy(fetch: Callable[[str], subprocess.CompletedProcess], registry, layout, keys,
                  repository: str) -> Reference:
    """Under a policy requiring our key, `fetch` takes the signed image and refuses unsigned, re-tagged and
    another key's; returns the signed reference."""
    private_path, public_path = keys
    amd = write_image(layout, [{"src/predict.py": repository.encode()}], arch="amd64")
    index = write_index(layout, [amd])
    signed = parse_reference(f"{registry.host}/{repository}:v1")
    push_image(layout, index, signed)
    sign_manifests(signed, [amd, index], load_private_key(private_path, PASSPHRASE.encode()))
    push_image(layout, write_image(layout, [{"src/predict.py": b"unsigned"}]), signed.with_tag("unsigned"))
    put_manifest(RegistryClient(registry.host), repository, layout.read_blob(index.digest), index, "retagged")
    _use_sigstore_attachments(registry.host)
    _require_signed_by(registry.host, public_path)

    accepted = fetch(str(signed))
    assert accepted.returncode == 0, accepted.stderr
    unsigned = fetch(str(signed.with_tag("unsigned")))
    assert unsigned.returncode != 0 and "A signature was required, but no signature exists" in unsigned.stderr
    retagged = fetch(str(signed.with_tag("retagged")))
    assert retagged.returncode != 0
    # skopeo logs the error quoted (\"), podman prints it as it is
    assert re.search(rf'Signature for identity \\?"{re.escape(str(signed))}\\?" is not accepted', retagged.stderr)
    # Another key's policy refuses what our key signed: the key is checked, not the presence of a .sig tag.
    _require_signed_by(registry.host, _write(public_path.with_name("other.pub"), generate_key_pair(b"x")[1]))
    refused = fetch(str(signed))
    assert refused.returncode != 0 and "cryptographic signature verification failed" in refused.stderr
    return signed


@pytest_e2e
def test_skopeo_policy_accepts_cogbuilds_signature_and_refuses_unsigned_and_retagged(registry, layout, keys,
                                                                                    tmp_path):
    """containers/image's policy engine through skopeo (the podman test below goes through podman itself)."""
    skopeo = sigstore_skopeo()

    def copy(ref: str) -> subprocess.CompletedProcess:
        return _run(skopeo, "copy", "--remove-signatures", "--src-tls-verify=false", f"docker://{ref}",
                    f"oci:{tmp_path / 'out'}:{ref.rsplit(':', 1)[1]}", check=False)

    _check_policy(copy, registry, layout, keys, "ns/model")


@pytest_e2e
def test_podman_pull_accepts_cogbuilds_signature_and_refuses_unsigned_and_retagged(registry, layout, keys,
                                                                                   tmp_path):
    """The issue's acceptance test: podman itself (trixie's, bookworm's has sigstore disabled) under the policy."""
    podman = [*sigstore_podman(), "--root", str(tmp_path / "podman-root"), "--runroot", str(tmp_path / "podman-run"),
              "--storage-driver", "vfs"]
    pulled: list[str] = []

    def pull(ref: str) -> subprocess.CompletedProcess:
        done = _run(*podman, "pull", "--tls-verify=false", "--arch", "amd64", ref, check=False)
        if done.returncode == 0:
            pulled.append(ref)
        _run(*podman, "rmi", "--all")  # each pull fetches and checks anew
        return done

    signed = _check_policy(pull, registry, layout, keys, "ns/podman")
    assert pulled == [str(signed)]


@pytest_e2e
def test_skopeo_signs_with_a_cogbuild_key_and_cogbuild_verify_accepts_it(registry, layout, keys, tmp_path):
    skopeo = sigstore_skopeo()
    private_path, public_path = keys
    desc = write_image(layout, [{"src/predict.py": b"from skopeo"}])
    layout.tag("src", desc)
    (tmp_path / "passphrase").write_text(PASSPHRASE)
    _use_sigstore_attachments(registry.host)
    ref = f"{registry.host}/ns/skopeo:v1"
    _run(skopeo, "copy", "--dest-tls-verify=false", "--sign-by-sigstore-private-key", str(private_path),
         "--sign-passphrase-file", str(tmp_path / "passphrase"), f"oci:{layout.root}:src", f"docker://{ref}")
    attached = read_attachments(ref, desc.digest, SIGNATURE_KIND)
    assert len(attached) == 1 and SIGNATURE_ANNOTATION in attached[0].annotations  # skopeo's, not ours
    ok = _cli("verify", ref, "--key", str(public_path))
    assert ok.exit_code == 0, ok.output
    assert f"{ref}@{desc.digest}: signed by" in ok.output
    other_public = _write(tmp_path / "other.pub", generate_key_pair(b"x")[1])
    refused = _cli("verify", ref, "--key", str(other_public))
    assert refused.exit_code == 1
    assert _last_line(refused.output) == (f"error: no valid signature for {ref}: the 1 attached are not made by "
                                          "the given key")


@pytest_e2e
def test_verify_names_what_is_wrong_in_one_sentence(registry, layout, keys):
    private_path, public_path = keys
    key = load_private_key(private_path, PASSPHRASE.encode())
    amd = write_image(layout, [{"src/predict.py": b"a"}], arch="amd64")
    arm = write_image(layout, [{"src/predict.py": b"b"}], arch="arm64")
    index = write_index(layout, [amd, arm])
    ref = parse_reference(f"{registry.host}/ns/partial:v1")
    push_image(layout, index, ref)
    unsigned = _cli("verify", str(ref), "--key", str(public_path))
    assert unsigned.exit_code == 1
    assert _last_line(unsigned.output) == f"error: {ref} is not signed: no signature is attached to it"
    sign_manifests(ref, [index, amd], key)  # arm64 left out
    with pytest.raises(SigningError, match=rf"^{ref} \({arm.digest}\) is not signed"):
        verify_signatures(ref, load_public_key(public_path))
    sign_manifests(ref, [arm], key)
    assert verify_signatures(ref, load_public_key(public_path)) == [index.digest, amd.digest, arm.digest]
    # The same digest under another tag: the signatures name v1, so v2 is refused (podman's rule) ...
    put_manifest(RegistryClient(registry.host), "ns/partial", layout.read_blob(index.digest), index, "v2")
    with pytest.raises(SigningError, match=r"for another name \(.*/ns/partial:v1\)$"):
        verify_signatures(ref.with_tag("v2"), load_public_key(public_path))
    # ... and by digest the repository is what counts.
    assert verify_signatures(ref.with_digest(index.digest), load_public_key(public_path))[0] == index.digest


@pytest_e2e
def test_a_second_keys_signature_joins_the_first(registry, layout, keys):
    private_path, _ = keys
    desc = write_image(layout, [{"f": b"x"}])
    ref = parse_reference(f"{registry.host}/ns/twice:v1")
    push_image(layout, desc, ref)
    sign_manifests(ref, [desc], load_private_key(private_path, PASSPHRASE.encode()))
    first = read_attachments(ref, desc.digest, SIGNATURE_KIND)
    other = Path(str(private_path) + ".2")
    other.write_bytes(generate_key_pair(b"p")[0])
    sign_manifests(ref, [desc], load_private_key(other, b"p"))
    both = read_attachments(ref, desc.digest, SIGNATURE_KIND)
    assert len(both) == 2 and both[0] == first[0]
    _, tagged = get_manifest(RegistryClient(registry.host), ref, attachment_tag(desc.digest, SIGNATURE_KIND))
    assert tagged.media_type == "application/vnd.oci.image.manifest.v1+json"


@pytest_e2e
def test_with_a_verify_key_pull_predict_and_run_refuse_unsigned_images(registry, layout, keys, tmp_path):
    private_path, public_path = keys
    signed_desc = write_image(layout, [{"src/predict.py": b"signed"}])
    signed = parse_reference(f"{registry.host}/ns/gate:signed")
    push_image(layout, signed_desc, signed)
    sign_manifests(signed, [signed_desc], load_private_key(private_path, PASSPHRASE.encode()))
    unsigned = f"{registry.host}/ns/gate:unsigned"
    push_image(layout, write_image(layout, [{"src/predict.py": b"unsigned"}]), unsigned)
    store = Path(os.environ["COGBUILD_STORE"])
    gate = {"COGBUILD_VERIFY_KEY": str(public_path)}

    refused = _cli("pull", unsigned, env=gate)
    assert refused.exit_code == 1
    assert _last_line(refused.output) == (f"error: {unsigned} is not signed: no signature is attached to it; "
                                          f"COGBUILD_VERIFY_KEY asks for images signed by {public_path}")
    def nothing_stored() -> bool:
        return not (store / "index.json").exists() or unsigned not in (store / "index.json").read_text()

    assert nothing_stored()
    pulled = _cli("pull", str(signed), env=gate)
    assert pulled.exit_code == 0, pulled.output
    assert _last_line(pulled.output) == f"{signed.name}@{signed_desc.digest}"
    for command in (["predict", unsigned, "-i", "x=1"], ["run", unsigned]):
        stopped = _cli(*command, env=gate)
        assert stopped.exit_code == 1, stopped.output
        assert "is not signed" in _last_line(stopped.output) and nothing_stored()
    # Pulled before the key was set: the stored copy is checked too, against the registry, by its digest.
    assert _cli("pull", unsigned).exit_code == 0
    stored = _cli("predict", unsigned, "-i", "x=1", env=gate)
    assert stored.exit_code == 1 and "is not signed" in _last_line(stored.output)


def test_a_key_file_asking_for_huge_scrypt_work_is_refused_without_doing_it(keys, tmp_path):
    private_path, _ = keys
    lines = private_path.read_text().splitlines()
    envelope = json.loads(base64.b64decode("".join(lines[1:-1])))
    envelope["kdf"]["params"]["N"] = 1 << 30  # 128 GiB of memory if obeyed
    body = base64.b64encode(json.dumps(envelope).encode()).decode()
    hostile = _write(tmp_path / "hostile.key", "\n".join([lines[0], body, lines[-1]]).encode())
    with pytest.raises(UsageError, match="not a well-formed cosign private key"):
        load_private_key(hostile, PASSPHRASE.encode())


def _signature_referrers(ref: str, subject_digest: str) -> list[tuple[bytes, str]]:
    """(payload, signature) of each signature listed as a referrer of the subject."""
    parsed = parse_reference(ref)
    client = RegistryClient(parsed.registry, parsed.api_host)
    named = []
    for artifact in find_referrers(ref, subject_digest, artifact_type=SIGNATURE_ARTIFACT_TYPE):
        data, _ = get_manifest(client, parsed.with_digest(artifact.digest))
        doc = json.loads(data)
        assert doc["subject"]["digest"] == subject_digest
        (layer,) = doc["layers"]
        payload = fetch_small_blob(client, parsed, layer["digest"])
        named.append((payload, layer["annotations"][SIGNATURE_ANNOTATION]))
    return named


@pytest_e2e
def test_signatures_are_also_referrers_through_the_fallback_tag(registry, layout, keys):
    """docker-registry 2.8 has no referrers API: the signatures are listed in the `sha256-<hex>` index."""
    private_path, public_path = keys
    amd = write_image(layout, [{"src/predict.py": b"a"}], arch="amd64")
    index = write_index(layout, [amd])
    ref = parse_reference(f"{registry.host}/ns/referred:v1")
    push_image(layout, index, ref)
    sign_manifests(ref, [index, amd], load_private_key(private_path, PASSPHRASE.encode()))
    public = load_public_key(public_path)
    for desc in (index, amd):
        ((payload, signature),) = _signature_referrers(str(ref), desc.digest)
        assert signature_holds(public, payload, signature)
        assert read_simple_signing(payload) == SignedImage(str(ref), desc.digest)
    _, fallback = get_manifest(RegistryClient(registry.host), ref, attachment_tag(index.digest, SIGNATURE_KIND)[:-4])
    assert fallback.media_type == "application/vnd.oci.image.index.v1+json"


def test_signatures_are_referrers_through_the_api_where_the_registry_has_it(keys):
    private_path, public_path = keys
    fake = FakeReferrersRegistry()
    subject = write_image(Layout(private_path.parent / "store").init(), [{"f": b"x"}])
    ref = f"{fake.host}/ns/m:v1"
    try:
        sign_manifests(parse_reference(ref), [subject], load_private_key(private_path, PASSPHRASE.encode()))
        found = find_referrers(ref, subject.digest, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    finally:
        fake.close()
    assert len(found) == 1
    assert not [tag for tag in fake.puts if tag.startswith("sha256-") and not tag.endswith(".sig")]  # no fallback
    artifact = json.loads(fake.manifests[found[0].digest])
    assert artifact["subject"]["digest"] == subject.digest
    (layer,) = artifact["layers"]
    payload = simple_signing_payload(ref, subject.digest)
    assert layer["digest"] == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert signature_holds(load_public_key(public_path), payload, layer["annotations"][SIGNATURE_ANNOTATION])
