"""Push and pull through Basic (htpasswd) and bearer-token auth, credentials from Docker's config."""

from __future__ import annotations

import json
import os

import pytest

from cogbuild.registry.errors import OCIError
from cogbuild.registry.auth import docker_config_path, store_credentials
from cogbuild.registry.blob_locations import BlobLocations
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import pull_image, push_image
from cogbuild.registry.transfer import TransferStats
from oci_registry_server import PASSWORD, USER, RegistryServer, TokenServer
from synthetic_images import write_image

pytestmark = pytest.mark.e2e


def test_basic_auth_push_and_pull_with_stored_login(basic_registry, layout, tmp_path):
    desc = write_image(layout, [{"code.py": b"x = 1\n"}])
    ref = f"{basic_registry.host}/ns/private:v1"
    with pytest.raises(OCIError, match=r"needs credentials .*cogbuild login"):
        push_image(layout, desc, ref)
    store_credentials(basic_registry.host, USER, PASSWORD)
    assert push_image(layout, desc, ref) == desc.digest
    assert pull_image(ref, Layout(tmp_path / "pulled")).digest == desc.digest


def test_login_file_is_private_and_docker_shaped(basic_registry):
    where = store_credentials(basic_registry.host, USER, PASSWORD)
    path = docker_config_path()
    assert where == str(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text())["auths"]) == {basic_registry.host}


def test_basic_auth_wrong_password_names_login(basic_registry, layout):
    store_credentials(basic_registry.host, USER, "wrong")
    desc = write_image(layout, [{"a": b"a"}])
    with pytest.raises(OCIError, match=r"rejected the stored credentials.*cogbuild login"):
        push_image(layout, desc, f"{basic_registry.host}/ns/private:v1")


def test_bearer_token_flow_push_pull_and_mount(token_registry, token_server, layout, tmp_path):
    desc = write_image(layout, [{"model.py": b"def predict(): ...\n"}])
    with pytest.raises(OCIError, match=r"cogbuild login"):
        push_image(layout, desc, f"{token_registry.host}/ns/tok:v1")
    store_credentials(token_registry.host, USER, PASSWORD)
    push_image(layout, desc, f"{token_registry.host}/ns/tok:v1", hints=tmp_path / "hints")
    stats = TransferStats()
    push_image(layout, desc, f"{token_registry.host}/other/tok:v1", stats=stats, hints=tmp_path / "hints")
    assert stats.blobs_mounted == 2  # the mount asked for push on other/tok and pull on ns/tok
    asked = [_normal(r["scopes"]) for r in token_server.tokens_issued]
    assert {("other/tok", ("pull", "push")), ("ns/tok", ("pull",))} in asked
    assert pull_image(f"{token_registry.host}/other/tok:v1", Layout(tmp_path / "p")).digest == desc.digest
    assert {r["user"] for r in token_server.tokens_issued} == {None, USER}  # anonymous first, then the login


def test_anonymous_token_pull_from_public_repository(tmp_path, layout):
    tokens = TokenServer(tmp_path / "public-tokens", {USER: PASSWORD}, anonymous_pull=True)
    server = RegistryServer(tmp_path / "public-registry", auth=tokens.registry_auth()).start()
    try:
        desc = write_image(layout, [{"pub": b"public"}])
        store_credentials(server.host, USER, PASSWORD)
        push_image(layout, desc, f"{server.host}/pub/model:v1")
        docker_config_path().unlink()  # forget the login: pulls go anonymous
        assert pull_image(f"{server.host}/pub/model:v1", Layout(tmp_path / "anon")).digest == desc.digest
        assert tokens.tokens_issued[-1]["user"] is None
        with pytest.raises(OCIError, match="needs credentials"):
            push_image(layout, desc, f"{server.host}/pub/model:v2")
    finally:
        server.stop()
        tokens.close()


def test_mount_from_a_repository_without_access_falls_back_to_upload(tmp_path, layout):
    tokens = TokenServer(tmp_path / "t", {USER: PASSWORD}, denied={"forbidden/src"})
    server = RegistryServer(tmp_path / "r", auth=tokens.registry_auth()).start()
    try:
        store_credentials(server.host, USER, PASSWORD)
        desc = write_image(layout, [{"m": b"mount me"}])
        blobs = [b["digest"] for b in [json.loads(layout.read_blob(desc.digest))["config"],
                                       *json.loads(layout.read_blob(desc.digest))["layers"]]]
        hints = BlobLocations(server.host, tmp_path / "hints")
        hints.remember("forbidden/src", blobs)
        hints.save()
        stats = TransferStats()
        push_image(layout, desc, f"{server.host}/ns/target:v1", stats=stats, hints=tmp_path / "hints")
        assert (stats.blobs_mounted, stats.blobs_uploaded) == (0, 2)
    finally:
        server.stop()
        tokens.close()


def _normal(scopes: list[str]) -> set[tuple[str, tuple[str, ...]]]:
    """The registry orders scopes and actions as it likes: compare as sets."""
    out = set()
    for scope in scopes:
        _, name, actions = scope.split(":")
        out.add((name, tuple(sorted(actions.split(",")))))
    return out


@pytest.mark.parametrize("style", ["credsStore", "credHelpers"])
def test_credentials_from_a_credential_helper(basic_registry, layout, tmp_path, monkeypatch, style):
    helper_dir = tmp_path / "bin"
    helper_dir.mkdir()
    store = tmp_path / "helper-store.json"
    helper = helper_dir / "docker-credential-testhelper"
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
action = sys.argv[1]
if action == "store":
    payload = json.load(sys.stdin)
    json.dump(payload, open(path, "w"))
elif action == "get":
    server = sys.stdin.read().strip()
    payload = json.load(open(path))
    if payload["ServerURL"] != server:
        print("credentials not found in native keychain"); sys.exit(1)
    json.dump({{"Username": payload["Username"], "Secret": payload["Secret"]}}, sys.stdout)
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper_dir}:{os.environ['PATH']}")
    path = docker_config_path()
    path.parent.mkdir(parents=True)
    config = {"credsStore": "testhelper"} if style == "credsStore" else \
        {"credHelpers": {basic_registry.host: "testhelper"}}
    path.write_text(json.dumps(config))
    assert store_credentials(basic_registry.host, USER, PASSWORD) == "docker-credential-testhelper"
    assert "auth" not in json.loads(path.read_text())["auths"].get(basic_registry.host, {})
    desc = write_image(layout, [{"b": b"helper"}])
    assert push_image(layout, desc, f"{basic_registry.host}/ns/helper:v1") == desc.digest
