"""Digests from outside (a registry's answers, a layout's index.json and manifests) are checked before use.

The registry here is a loopback stand-in serving fixed answers (a real registry checks digests itself and
would never store these manifests); it records every path asked of it.
"""

from __future__ import annotations

import json
import tempfile

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cogbuild.cli import USER_ERRORS, cli
from cogbuild.images import find_image
from cogbuild.layers.descriptor import (OCI_INDEX, OCI_MANIFEST, Descriptor, Digest, InvalidDigest, is_digest,
                                        sha256_digest)
from cogbuild.registry.archive import export_layout
from cogbuild.registry.auth import RegistryAuth, parse_challenge
from cogbuild.registry.errors import OCIError
from cogbuild.registry.layout import Layout, LayoutError
from cogbuild.registry.remote import plan_from_layout, pull_image
from static_server import StaticServer

REPO = "evil/model"


def climbing_digest(levels: int, target: str) -> str:
    """A "digest" of the old accepted length whose hex part is a path leaving blobs/sha256/ for `target`."""
    climb = "/".join([".."] * levels) + "/" + target
    part = ".." + "/" * (64 - len(climb)) + climb[2:]
    assert len(part) == 64
    return f"sha256:{part}"


def manifest_naming(layer_digest: str, layer_size: int) -> tuple[bytes, bytes]:
    config = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                    "size": layer_size}]}).encode()
    return manifest, config


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))


def test_a_layer_digest_naming_a_host_file_is_refused_before_any_path_or_request(tmp_path, cache):
    secret = tmp_path / "secret"
    secret.write_bytes(b"the host's private key")
    # From <store>/blobs/sha256/ three levels up is tmp_path: the old length-only check took this as a blob
    # already present (same size), skipped its download, and tagged an image whose layer was `secret`.
    evil = climbing_digest(3, "secret")
    manifest, config = manifest_naming(evil, secret.stat().st_size)
    with StaticServer() as registry:
        registry.files[f"/v2/{REPO}/manifests/v1"] = manifest
        registry.files[f"/v2/{REPO}/blobs/{sha256_digest(config)}"] = config
        store = Layout(tmp_path / "store")
        host = registry.url.removeprefix("http://")
        with pytest.raises(OCIError) as refused:
            pull_image(f"{host}/{REPO}:v1", store)
        assert all(path.startswith(f"/v2/{REPO}/") for path in registry.hits)
        assert not [path for path in registry.hits if ".." in path]
    message = str(refused.value)
    assert "\n" not in message and "is not a digest" in message and "nothing was stored" in message
    assert store.manifests() == [], "no image was tagged"
    assert secret.read_bytes() == b"the host's private key"


@pytest.mark.parametrize("bad", [
    "sha256:" + "AB" * 32,                 # upper case
    "sha256:" + "ab" * 32 + "\n",          # a trailing newline ($ in a regex would let it through)
    "sha256:" + "ab" * 31,                 # short
    "sha512:" + "ab" * 32,                 # sha512 needs 128 hex digits
    "md5:" + "ab" * 16,                    # an algorithm we do not take
    "sha256:" + "/" * 60 + "etc/",         # a path
])
def test_an_index_child_that_is_not_a_digest_is_never_requested(tmp_path, cache, bad):
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": bad, "size": 10}]}).encode()
    with StaticServer() as registry:
        registry.files[f"/v2/{REPO}/manifests/v1"] = index
        host = registry.url.removeprefix("http://")
        with pytest.raises(OCIError, match="is not a digest"):
            pull_image(f"{host}/{REPO}:v1", Layout(tmp_path / "store"))
        assert list(registry.hits) == [f"/v2/{REPO}/manifests/v1"]


def test_the_digest_type_takes_exact_forms_only():
    good = "sha256:" + "0a" * 32
    assert Digest(good) == good and Digest(good).hex == "0a" * 32 and Digest(good).algorithm == "sha256"
    assert Digest("sha512:" + "f" * 128).algorithm == "sha512"
    for bad in ("", "sha256:", good.upper(), good + "\n", good[:-1], "sha256:" + "g" * 64, None, 7):
        with pytest.raises(InvalidDigest):
            Digest(bad)


def test_a_layout_whose_manifest_names_a_path_is_refused_by_push_export_and_run(tmp_path):
    store = Layout(tmp_path / "store").init()
    (tmp_path / "secret").write_bytes(b"private")
    manifest, config = manifest_naming(climbing_digest(3, "secret"), 7)
    store.write_blob(config)
    top = Descriptor(OCI_MANIFEST, store.write_blob(manifest), len(manifest),
                     platform={"os": "linux", "architecture": "amd64"})
    store.tag("evil:v1", top)
    with pytest.raises(OCIError, match="is damaged: .*is not a digest"):
        plan_from_layout(store, top)  # what push walks before it uploads a byte
    with pytest.raises(LayoutError, match="is damaged: .*is not a digest"):
        export_layout(store, top, "evil:v1", tmp_path / "exported")
    assert not (tmp_path / "exported" / "blobs" / "sha256").exists() or \
        list((tmp_path / "exported" / "blobs" / "sha256").iterdir()) == []


def test_an_index_json_naming_a_path_is_one_sentence(cache_root, tmp_path):
    store = Layout(tmp_path / "store").init()
    (tmp_path / "store" / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": climbing_digest(3, "secret"), "size": 7,
         "annotations": {"org.opencontainers.image.ref.name": "evil:v1"}}]}))
    with pytest.raises(USER_ERRORS) as refused:  # what the CLI prints as one sentence
        find_image("evil:v1", store, gpu=False, cache_root=cache_root)
    assert "index.json is damaged" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(LayoutError, match="cannot look up a blob"):
        store.blob_path(climbing_digest(3, "secret"))


def test_cogbuild_pull_and_show_print_one_sentence_for_a_hostile_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COGBUILD_STORE", str(tmp_path / "store"))
    manifest, config = manifest_naming(climbing_digest(3, "secret"), 7)
    with StaticServer() as registry:
        registry.files[f"/v2/{REPO}/manifests/v1"] = manifest
        registry.files[f"/v2/{REPO}/blobs/{sha256_digest(config)}"] = config
        host = registry.url.removeprefix("http://")
        for command in (["pull", f"{host}/{REPO}:v1"], ["show", f"{host}/{REPO}:v1"]):
            result = CliRunner().invoke(cli, command)
            assert result.exit_code == 1, result.output
            errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1 and "is not a digest" in errors[0], result.output  # progress lines aside
            assert result.output.rstrip().endswith(errors[0]) and "Traceback" not in result.output


# -- generated answers ---------------------------------------------------------------------------
digest_text = st.one_of(st.sampled_from(["sha256:" + "ab" * 32, "sha256:" + "AB" * 32, climbing_digest(3, "x"),
                                         "sha256:" + "ab" * 32 + "\n", "sha512:" + "ab" * 64]),
                        st.text(max_size=70))
answer_descriptor = st.fixed_dictionaries({
    "mediaType": st.sampled_from([OCI_MANIFEST, OCI_INDEX, "application/vnd.oci.image.layer.v1.tar", "x"]),
    "digest": digest_text, "size": st.one_of(st.integers(-1, 100), st.text(max_size=3))})
answer = st.fixed_dictionaries(
    {"schemaVersion": st.just(2), "mediaType": st.sampled_from([OCI_MANIFEST, OCI_INDEX])},
    optional={"manifests": st.lists(answer_descriptor, max_size=3), "config": answer_descriptor,
              "layers": st.lists(answer_descriptor, max_size=3)})


@pytest.fixture
def stand_in():
    with StaticServer() as registry:
        yield registry


@settings(max_examples=40, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=answer, extra=st.binary(max_size=64))
def test_any_manifest_answer_is_pulled_or_refused_in_one_sentence(tmp_path, cache, stand_in, top, extra):
    """Only paths under /v2/<repo>/ that end in a tag or an exact digest are ever requested."""
    stand_in.requests.clear()
    stand_in.files.clear()
    stand_in.files[f"/v2/{REPO}/manifests/v1"] = json.dumps(top).encode()
    stand_in.files[f"/v2/{REPO}/blobs/{sha256_digest(extra)}"] = extra
    with tempfile.TemporaryDirectory(dir=tmp_path) as store_dir:
        try:
            pull_image(f"{stand_in.url.removeprefix('http://')}/{REPO}:v1", Layout(store_dir))
        except USER_ERRORS as exc:
            assert "\n" not in str(exc)
    for path in stand_in.hits:
        kind, _, name = path.removeprefix(f"/v2/{REPO}/").partition("/")
        assert kind in ("manifests", "blobs") and (name == "v1" or is_digest(name)), path


# -- token services named by a registry ------------------------------------------------------------
def token_challenge(realm: str):
    return parse_challenge(f'Bearer realm="{realm}",service="svc",scope="repository:a:pull"')


def test_credentials_never_go_to_a_plain_http_token_service_of_a_tls_registry(stand_in):
    auth = RegistryAuth("registry.example", plain_http=False)
    auth.use_credentials("me", "secret")
    with pytest.raises(OCIError, match="sends them over HTTPS only"):
        auth.request_token(token_challenge(f"{stand_in.url}/token"))
    assert not stand_in.hits, "nothing was sent"


def token_auth(stand_in, body: bytes) -> RegistryAuth:
    stand_in.files["/token?service=svc&scope=repository%3Aa%3Apull"] = body
    return RegistryAuth("127.0.0.1:1", plain_http=True)


@pytest.mark.parametrize("body, token", [(b"[1, 2]", None), (b'{"token": 7}', None), (b'{"token": "t0k"}', "t0k")])
def test_a_token_service_answer_must_hold_a_token(stand_in, body, token):
    assert token_auth(stand_in, body).request_token(token_challenge(f"{stand_in.url}/token")) == token


def test_a_token_service_answering_something_else_than_json_is_one_sentence(stand_in):
    with pytest.raises(OCIError, match="the token service .* failed: JSONDecodeError"):
        token_auth(stand_in, b"<html>").request_token(token_challenge(f"{stand_in.url}/token"))
