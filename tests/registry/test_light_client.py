"""The light registry client (questions only, standard library) against a real docker-registry: anonymous,
Basic and bearer-token auth, and one sentence for each way a registry can say no."""

from __future__ import annotations

import hashlib

import pytest

from cogbuild.registry.auth import store_credentials
from cogbuild.registry.errors import RegistryError
from cogbuild.registry.http_policy import RetryPolicy
from cogbuild.registry.light import LightClient
from cogbuild.registry.remote import push_image
from http_server import LoopbackHTTPServer, Reply
from oci_registry_server import PASSWORD, USER
from synthetic_images import write_image

pytestmark = pytest.mark.e2e

MISSING = "sha256:" + hashlib.sha256(b"never pushed").hexdigest()
NO_WAITING = RetryPolicy(attempts=2, backoff=0.0)


def pushed(layout, host: str, repository: str = "ns/app") -> tuple:
    desc = write_image(layout, [{"predict.py": b"def predict(): ...\n"}])
    push_image(layout, desc, f"{host}/{repository}:v1")
    return desc


def test_answers_what_an_anonymous_registry_holds(registry, layout):
    desc = pushed(layout, registry.host)
    client = LightClient(registry.host)

    assert client.manifest_digest("ns/app", "v1") == desc.digest
    manifest = client.manifest("ns/app", "v1")
    assert manifest is not None and manifest.data == layout.read_blob(desc.digest)
    assert manifest.media_type == desc.media_type
    config = client.json_manifest("ns/app", desc.digest)["config"]
    assert client.has_blob("ns/app", config["digest"])
    assert client.blob_size("ns/app", config["digest"]) == config["size"]


def test_absent_things_are_none_not_errors(registry, layout):
    pushed(layout, registry.host)
    client = LightClient(registry.host)

    assert client.manifest_digest("ns/app", "v2") is None
    assert client.manifest("ns/app", MISSING) is None
    assert not client.has_blob("ns/app", MISSING)
    assert client.manifest_digest("ns/never-pushed", "v1") is None


def test_basic_auth_uses_the_stored_login(basic_registry, layout):
    store_credentials(basic_registry.host, USER, PASSWORD)
    desc = pushed(layout, basic_registry.host)

    assert LightClient(basic_registry.host).manifest_digest("ns/app", "v1") == desc.digest


def test_basic_auth_without_credentials_is_one_sentence_naming_login(basic_registry):
    with pytest.raises(RegistryError, match=r"needs credentials to check manifest v1 in .*cogbuild login") as caught:
        LightClient(basic_registry.host).manifest_digest("ns/app", "v1")
    assert caught.value.status == 401 and "\n" not in str(caught.value)


def test_basic_auth_with_a_wrong_password_is_one_sentence(basic_registry):
    store_credentials(basic_registry.host, USER, "wrong")
    with pytest.raises(RegistryError, match=r"rejected the stored credentials.*cogbuild login .* again"):
        LightClient(basic_registry.host).has_blob("ns/app", MISSING)


def test_bearer_token_for_the_pull_scope_only(token_registry, token_server, layout):
    store_credentials(token_registry.host, USER, PASSWORD)
    desc = pushed(layout, token_registry.host)
    token_server.tokens_issued.clear()
    client = LightClient(token_registry.host)

    assert client.manifest_digest("ns/app", "v1") == desc.digest
    assert client.has_blob("ns/app", desc.digest) is False  # a manifest is not a blob; the token is reused
    assert [(t["user"], t["scopes"]) for t in token_server.tokens_issued] == [(USER, ["repository:ns/app:pull"])]


@pytest.mark.parametrize("status, sentence, tries", [
    (503, r"failed with 503 .* after 2 tries; try again later", 2),
    (403, r"denied permission to check blob .* in 127\.0\.0\.1:\d+/ns/app; check that your account", 1),
    (400, r"refused to check blob .*: 400", 1),
])
def test_refusals_are_one_sentence_and_only_server_errors_are_retried(status, sentence, tries):
    with LoopbackHTTPServer(script=[Reply(status)]) as server:
        with pytest.raises(RegistryError, match=sentence) as caught:
            LightClient(server.host, policy=NO_WAITING).has_blob("ns/app", MISSING)
    assert caught.value.status == status and "\n" not in str(caught.value)
    assert len(server.requests) == tries


def test_an_unreachable_registry_is_one_sentence(registry):
    host = registry.host
    registry.stop()
    with pytest.raises(RegistryError, match=rf"could not check manifest v1 in {host}/ns/app: the registry is "
                                            r"unreachable .*\(Connection refused\)"):
        LightClient(host, policy=NO_WAITING).manifest_digest("ns/app", "v1")


def test_a_registry_not_on_loopback_is_asked_over_https_unless_insecure():
    assert LightClient("registry.example").base == "https://registry.example/v2/"
    assert LightClient("registry.example", insecure=True).base == "http://registry.example/v2/"
    assert LightClient("127.0.0.1:5000").base == "http://127.0.0.1:5000/v2/"
