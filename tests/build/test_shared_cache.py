"""`--cache REPO`: a real docker-registry on loopback as the binary cache shared by "runners" (each test
runner is a fresh download cache and store), with the lock's upstream served by a loopback stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

import pytest

from cogbuild import build as build_module
from cogbuild import schema as schema_module
from cogbuild.artifacts import Artifact
from cogbuild.build import BuildOptions, BuildResult, build
from cogbuild.cache import BlobCache
from cogbuild.commands.build import write_output
from cogbuild.config import load_config
from cogbuild.debian.snapshot import SNAPSHOT, binfiles_url, file_urls
from cogbuild.errors import CogbuildError, UsageError
from cogbuild.images import find_image
from cogbuild.layers.descriptor import OCI_MANIFEST, Descriptor
from cogbuild.lock import write_lock
from cogbuild.policy import lock_inputs_digest
from cogbuild.registry.binary_cache import (DOCUMENT_ARTIFACT, INLINE, LAYER_ARTIFACT, CacheRepository, document_tag,
                                            layer_tag)
from cogbuild.registry.layout import Layout
from cogbuild.registry.referrers import artifact_manifest, push_small_blob
from cogbuild.registry.remote import pull_image, push_image, put_manifest
from cogbuild.registry.transfer import TransferStats
from cogbuild.shared_cache import CACHE_REPO_ENV, RECORD_DAYS, Holdings, cache_repository
from cli_helpers import cogbuild, configured_cache_root, one_line_error
from oci_registry_server import RegistryServer, free_port
from test_build import model, served_lock  # noqa: F401  (fixtures)


@pytest.fixture
def registry(tmp_path):
    server = RegistryServer(tmp_path / "registry").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "home" / ".docker"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv(CACHE_REPO_ENV, raising=False)


def runner(monkeypatch, tmp_path, name: str) -> Layout:
    """A fresh machine: an empty download and layer cache and an empty store (its CLI reads them from the
    environment; library calls here pass configured_cache_root())."""
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / name / "cache"))
    monkeypatch.setenv("COGBUILD_STORE", str(tmp_path / name / "store"))
    return Layout(tmp_path / name / "store")


def build_with_cache(model_dir, lock, store: Layout, repo: str | None, source_date_epoch: int = 0,
                     debian_snapshot: str | None = SNAPSHOT):
    options = BuildOptions(bytecode=False, cache_repository=CacheRepository(repo) if repo else None,
                           source_date_epoch=source_date_epoch, debian_snapshot=debian_snapshot,
                           cache_root=configured_cache_root())
    return build(load_config(model_dir / "cog.yaml"), lock, "sha256:" + "1" * 64, store, options)


def layer_digests(store: Layout, manifest_digest: str) -> list[str]:
    return [layer["digest"] for layer in store.read_json(manifest_digest)["layers"]]


@pytest.fixture
def compositions(monkeypatch) -> list:
    composed: list = []
    real_write = build_module.write_layer
    monkeypatch.setattr(build_module, "write_layer",
                        lambda tree, *a, **k: composed.append(tree) or real_write(tree, *a, **k))
    return composed


@pytest.fixture
def schema_computations(monkeypatch) -> list:
    computed: list = []
    real_compute = schema_module._compute
    monkeypatch.setattr(schema_module, "_compute", lambda entries: computed.append(entries) or real_compute(entries))
    return computed


@dataclass
class FreshRunner:
    repo: str  # the cache repository a warm runner filled
    store: Layout  # the fresh runner's store, after its build
    result: BuildResult


@pytest.fixture
def fresh_runner(model, served_lock, registry, tmp_path, monkeypatch) -> FreshRunner:
    """A warm runner's build filled the cache repository; then a runner with empty caches built the model."""
    server, lock = served_lock
    repo = f"{registry.host}/team/cache"
    build_with_cache(model, lock, runner(monkeypatch, tmp_path, "a"), repo)
    fresh = runner(monkeypatch, tmp_path, "b")
    return FreshRunner(repo, fresh, build_with_cache(model, lock, fresh, repo))


def test_a_fresh_runner_composes_and_downloads_nothing_the_cache_repository_has(
        model, served_lock, registry, tmp_path, monkeypatch, compositions):
    server, lock = served_lock
    repo = f"{registry.host}/team/cache"
    first = build_with_cache(model, lock, runner(monkeypatch, tmp_path, "a"), repo)
    assert len(compositions) == 3
    upstream = sum(server.hits.values())
    fresh = runner(monkeypatch, tmp_path, "b")
    second = build_with_cache(model, lock, fresh, repo)
    assert second.descriptor == first.descriptor  # the same image, to the manifest digest
    assert len(compositions) == 3 and sum(server.hits.values()) == upstream
    layers = layer_digests(fresh, second.descriptor.digest)
    assert not any(fresh.has_blob(d) for d in layers)  # named by descriptor only
    assert all(fresh.remote_source(d) == f"{registry.host}/team/cache" for d in layers)
    # Running it locally fetches what the runtime needs, verified.
    fresh.tag("model:latest", second.descriptor)
    find_image("model:latest", fresh, gpu=False, cache_root=configured_cache_root())
    assert all(fresh.read_blob(d) for d in layers)


def test_a_warm_runner_seeds_the_cache_repository_with_the_layers_and_schema_it_had_cached(
        model, served_lock, registry, tmp_path, monkeypatch, compositions, schema_computations):
    server, lock = served_lock
    repo = f"{registry.host}/team/cache"
    warm = runner(monkeypatch, tmp_path, "a")
    first = build_with_cache(model, lock, warm, None)
    assert build_with_cache(model, lock, warm, repo).descriptor == first.descriptor
    assert len(compositions) == 3 and len(schema_computations) == 1  # nothing made again, yet published
    # The schema label is part of the config, so equal manifests also mean the same schema.
    assert build_with_cache(model, lock, runner(monkeypatch, tmp_path, "b"), repo).descriptor == first.descriptor
    assert len(compositions) == 3 and len(schema_computations) == 1
    build_with_cache(model, lock, runner(monkeypatch, tmp_path, "c"), None)
    assert len(schema_computations) == 2  # without the cache repository a fresh runner computes it


def test_a_second_build_on_the_same_runner_asks_the_cache_repository_nothing(fresh_runner, model, served_lock,
                                                                             registry, tmp_path):
    server, lock = served_lock
    registry.stop()  # any lookup would now fail, and say so
    messages: list[str] = []
    options = BuildOptions(bytecode=False, cache_repository=CacheRepository(fresh_runner.repo),
                           cache_root=configured_cache_root())
    options.cache_repository.client.backoff = 0
    again = build(load_config(model / "cog.yaml"), lock, "sha256:" + "1" * 64, fresh_runner.store, options,
                  messages.append)
    assert again.descriptor == fresh_runner.result.descriptor
    assert not [m for m in messages if m.startswith("warning:")]


def test_writing_the_image_out_fetches_the_layers_the_cache_repository_holds(fresh_runner, tmp_path):
    write_output(fresh_runner.store, str(tmp_path / "out"), "model:v1", fresh_runner.result.descriptor)
    out = Layout(tmp_path / "out")
    assert all(out.read_blob(d) for d in layer_digests(out, fresh_runner.result.descriptor.digest))


def test_a_push_mounts_cached_layers_and_sends_nothing_to_the_cache_itself(fresh_runner, registry, tmp_path):
    fresh, result, repo = fresh_runner.store, fresh_runner.result, fresh_runner.repo
    elsewhere, to_cache = TransferStats(), TransferStats()
    push_image(fresh, result.descriptor, f"{registry.host}/team/model:v1", stats=elsewhere,
               hints=tmp_path / "hints")
    config = fresh.read_json(result.descriptor.digest)["config"]
    assert (elsewhere.blobs_mounted, elsewhere.blobs_uploaded) == (3, 1)  # 1: the config, made here
    assert elsewhere.bytes_sent == config["size"]
    push_image(fresh, result.descriptor, f"{repo}:v1", stats=to_cache, hints=tmp_path / "hints")
    assert (to_cache.blobs_skipped, to_cache.blobs_mounted, to_cache.bytes_sent) == (3, 1, 0)
    assert not any(fresh.has_blob(d) for d in layer_digests(fresh, result.descriptor.digest))
    pulled = Layout(tmp_path / "pulled").init()
    assert pull_image(f"{registry.host}/team/model:v1", pulled) == result.descriptor  # complete, hash-checked


def test_a_push_to_another_registry_uploads_the_bytes_it_fetches_from_the_cache(fresh_runner, tmp_path):
    fresh, result = fresh_runner.store, fresh_runner.result
    other = RegistryServer(tmp_path / "other-registry").start()
    try:
        stats = TransferStats()
        push_image(fresh, result.descriptor, f"{other.host}/model:v1", stats=stats)
        assert (stats.blobs_uploaded, stats.blobs_mounted) == (4, 0)
        assert pull_image(f"{other.host}/model:v1", Layout(tmp_path / "pulled").init()) == result.descriptor
    finally:
        other.stop()


def test_writers_of_the_same_key_write_the_same_bytes_even_at_once(model, served_lock, registry, tmp_path,
                                                                     monkeypatch):
    server, lock = served_lock
    repo = CacheRepository(f"{registry.host}/team/cache")
    store = runner(monkeypatch, tmp_path, "a")
    result = build_with_cache(model, lock, store, None)
    layer = Descriptor.from_json(store.read_json(result.descriptor.digest)["layers"][0])
    desc = Descriptor(layer.media_type, layer.digest, layer.size, annotations={"run.cog.diff-id": "sha256:" + "2" * 64})
    key = "ab" * 32
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            CacheRepository(repo.name).publish(store, key, desc)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    response = repo.client.request("GET", repo.client.url(f"team/cache/manifests/{layer_tag(key)}"),
                                   repository="team/cache", action="read", headers={"Accept": OCI_MANIFEST})
    assert response.content == artifact_manifest(LAYER_ARTIFACT, [desc])
    assert repo.lookup(key) == desc and repo.lookup(key).annotations == desc.annotations
    assert repo.lookup("cd" * 32) is None


LOOK_UP = """
import json, sys
from cogbuild.registry.binary_cache import CacheRepository
repository = CacheRepository(sys.argv[1])
found = [repository.lookup(key) for key in sys.argv[2:]]
print(json.dumps({"found": [d.digest if d else None for d in found], "modules": sorted(sys.modules)}))
"""


def test_lookups_load_no_http_library_or_upload_code(model, served_lock, registry, tmp_path, monkeypatch):
    server, lock = served_lock
    store = runner(monkeypatch, tmp_path, "a")
    result = build_with_cache(model, lock, store, f"{registry.host}/team/cache")  # publishes every layer
    layers = {layer["digest"] for layer in store.read_json(result.descriptor.digest)["layers"]}
    with urllib.request.urlopen(f"http://{registry.host}/v2/team/cache/tags/list", timeout=10) as answer:
        keys = sorted(tag.removeprefix("layer-") for tag in json.load(answer)["tags"] if tag.startswith("layer-"))
    done = subprocess.run([sys.executable, "-c", LOOK_UP, f"{registry.host}/team/cache", *keys, "cd" * 32],
                          capture_output=True, text=True, timeout=120, check=True)
    answer = json.loads(done.stdout)
    assert len(keys) == len(layers) and set(answer["found"][:-1]) == layers and answer["found"][-1] is None
    assert not [m for m in answer["modules"] if m.split(".")[0] in ("requests", "urllib3")
                or m in ("cogbuild.registry.client", "cogbuild.registry.transfer", "cogbuild.registry.remote")]


def test_inputs_upstream_no_longer_serves_come_from_the_cache_repository(model, served_lock, registry, tmp_path,
                                                                         monkeypatch):
    server, lock = served_lock
    repo = f"{registry.host}/team/cache"
    first = build_with_cache(model, lock, runner(monkeypatch, tmp_path, "a"), repo)
    server.files.clear()  # upstream answers 404 for every file now, and snapshot.debian.org has none either
    fresh = runner(monkeypatch, tmp_path, "b")
    # another SOURCE_DATE_EPOCH: other layer keys, so every layer is composed again
    second = build_with_cache(model, lock, fresh, repo, source_date_epoch=1700000000, debian_snapshot=server.url)
    assert second.descriptor != first.descriptor
    for a in (p.artifact for p in lock.packages):
        assert server.hits[f"/{a.filename}"] == 2  # the first build's download, then a 404
        assert BlobCache(configured_cache_root()).get(a) is not None
    asked = [path for path in server.hits if path.startswith("/mr/binary/")]
    assert sorted(asked) == sorted(binfiles_url(p.artifact, "") for p in lock.packages if p.artifact.kind == "deb")


def test_an_input_that_is_nowhere_is_one_sentence_naming_it_and_the_cache(model, served_lock, registry, tmp_path,
                                                                            monkeypatch):
    server, lock = served_lock
    server.files.clear()
    runner(monkeypatch, tmp_path, "a")
    with pytest.raises(CogbuildError, match=r"HTTP 404, and the cache repository .*/team/cache does not have it"):
        build_with_cache(model, lock, Layout(tmp_path / "a" / "store"), f"{registry.host}/team/cache",
                         debian_snapshot=None)  # COGBUILD_DEBIAN_SNAPSHOT=off


def test_an_unreachable_cache_repository_warns_and_the_build_goes_on(model, served_lock, tmp_path, monkeypatch):
    server, lock = served_lock
    store = runner(monkeypatch, tmp_path, "a")
    messages: list[str] = []
    options = BuildOptions(bytecode=False, cache_repository=CacheRepository(f"127.0.0.1:{free_port()}/cache"),
                           cache_root=configured_cache_root())
    options.cache_repository.client.backoff = 0
    result = build(load_config(model / "cog.yaml"), lock, "sha256:" + "1" * 64, store, options, messages.append)
    assert all(store.has_blob(d) for d in layer_digests(store, result.descriptor.digest))
    assert any(m.startswith("warning: the cache repository 127.0.0.1:") and "building without it" in m
               for m in messages)


@pytest.mark.parametrize("text", ["127.0.0.1:5000/cache:v1", "127.0.0.1:5000/cache@sha256:" + "0" * 64,
                                  "127.0.0.1:5000/Not Valid"])
def test_a_cache_that_is_not_a_repository_is_refused(text):
    with pytest.raises(UsageError, match="cache repository"):
        cache_repository(text)


@pytest.mark.parametrize("command", [["build"], ["push", "127.0.0.1:9/model:v1"]])
def test_the_cli_refuses_a_tagged_cache_before_any_work(command, model, tmp_path):
    env = {**os.environ, "COGBUILD_CACHE": str(tmp_path / "c"), "COGBUILD_STORE": str(tmp_path / "s")}
    run = cogbuild([*command, "--cache", "127.0.0.1:5000/cache:v1"], model, env)
    assert run.code == 2
    assert "must name a repository without a tag or digest" in one_line_error(run)
    assert not (model / "cog.lock").exists()


def test_the_cli_takes_the_cache_repository_from_the_environment(model, served_lock, registry, tmp_path):
    server, lock = served_lock
    lock.inputs = lock_inputs_digest(load_config(model / "cog.yaml"))  # current: no locking, no network
    write_lock(lock, model / "cog.lock")
    runs = []
    for name in ("a", "b"):
        env = {**os.environ, "COGBUILD_CACHE": str(tmp_path / name / "cache"),
               "COGBUILD_STORE": str(tmp_path / name / "store"), CACHE_REPO_ENV: f"{registry.host}/team/cache"}
        runs.append(cogbuild(["build", "--no-bytecode", "-t", "model:v1"], model, env))
        assert runs[-1].code == 0, runs[-1].err
    assert runs[0].out == runs[1].out
    fresh = Layout(tmp_path / "b" / "store")
    assert not any(fresh.has_blob(d) for d in layer_digests(fresh, runs[1].out.strip()))


# -- snapshot.debian.org URLs, derived from the lock (the service is not reachable from the tests) --------

DEB = Artifact("deb", "libc6", "2.36-9+deb12u4", "libc6_2.36-9+deb12u4_amd64.deb",
               "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36-9+deb12u4_amd64.deb", "0" * 64, 1)


def test_the_snapshot_query_names_the_locked_package_and_version():
    assert binfiles_url(DEB) == ("https://snapshot.debian.org/mr/binary/libc6/2.36-9%2Bdeb12u4/binfiles"
                                 "?fileinfo=1")
    epoch = Artifact("deb", "python3-pip", "1:23.0.1+dfsg-1", "python3-pip_23.0.1+dfsg-1_all.deb", "", "0" * 64, 1)
    assert binfiles_url(epoch).startswith("https://snapshot.debian.org/mr/binary/python3-pip/1%3A23.0.1%2Bdfsg-1/")


def test_snapshot_urls_are_the_locked_files_archive_locations_oldest_first():
    answer = {"fileinfo": {
        "aaa": [{"archive_name": "debian", "first_seen": "20240210T090000Z", "path": "/pool/main/g/glibc",
                 "name": DEB.filename, "size": 1}],
        "bbb": [{"archive_name": "debian", "first_seen": "20231007T030000Z", "path": "/pool/main/g/glibc",
                 "name": DEB.filename, "size": 1},
                {"archive_name": "debian", "first_seen": "20231007T030000Z", "path": "/pool/main/g/glibc",
                 "name": "libc6_2.36-9+deb12u4_arm64.deb", "size": 1}],
        "ccc": [{"archive_name": "debian-security", "first_seen": 7, "path": "/pool", "name": DEB.filename}],
        "ddd": "not a list",
    }}
    pool = "pool/main/g/glibc/libc6_2.36-9%2Bdeb12u4_amd64.deb"
    assert file_urls(DEB, answer) == [f"https://snapshot.debian.org/archive/debian/20231007T030000Z/{pool}",
                                      f"https://snapshot.debian.org/archive/debian/20240210T090000Z/{pool}"]
    assert file_urls(DEB, {"fileinfo": []}) == file_urls(DEB, ["junk"]) == []


def test_a_malformed_cache_entry_is_a_miss(registry):
    repo = CacheRepository(f"{registry.host}/team/cache")
    push_small_blob(repo.client, "team/cache", b"{}")
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": Descriptor.of(
        "application/vnd.oci.empty.v1+json", b"{}").to_json(), "layers": []}).encode()
    put_manifest(repo.client, "team/cache", data, Descriptor.of(OCI_MANIFEST, data), layer_tag("ef" * 32))
    assert repo.lookup("ef" * 32) is None


def test_a_cached_document_whose_inline_copy_does_not_match_its_blob_is_a_miss(registry):
    repo = CacheRepository(f"{registry.host}/team/cache")
    key = "ab" * 32
    repo.publish_document("schema", key, b'{"openapi": "3.0.2"}')
    assert repo.lookup_document("schema", key) == b'{"openapi": "3.0.2"}'
    stored = Descriptor.of("application/json", b'{"openapi": "3.0.2"}')
    data = artifact_manifest(DOCUMENT_ARTIFACT, [stored], {INLINE: '{"openapi": "tampered"}'})
    put_manifest(repo.client, "team/cache", data, Descriptor.of(OCI_MANIFEST, data), document_tag("schema", key))
    assert repo.lookup_document("schema", key) is None


def test_a_document_kind_cannot_take_the_tags_of_layers_or_inputs():
    for kind in ("layer", "inputs", "Schema", ""):
        with pytest.raises(ValueError, match="document kind"):
            document_tag(kind, "ab" * 32)


def test_a_holdings_record_that_does_not_match_its_hash_is_absent(tmp_path):
    holdings = Holdings(tmp_path, "127.0.0.1:5000/team/cache")
    holdings.put("layer", "ab" * 32, b'{"digest": "x"}')
    assert holdings.get("layer", "ab" * 32) == b'{"digest": "x"}'
    assert Holdings(tmp_path, "127.0.0.1:5000/other").get("layer", "ab" * 32) is None  # each repository its own record
    path = holdings.records.path(holdings.records.get_ref("layer-" + "ab" * 32))
    path.write_bytes(path.read_bytes().replace(b'"x"', b'"y"'))
    assert holdings.get("layer", "ab" * 32) is None


def test_a_holdings_record_is_believed_for_a_day_only(tmp_path):
    holdings = Holdings(tmp_path, "127.0.0.1:5000/team/cache")
    holdings.put("schema", "cd" * 32, b"{}")
    path = holdings.records.refs / ("schema-" + "cd" * 32)
    day_old = time.time() - RECORD_DAYS * 86400
    os.utime(path, (day_old + 60, day_old + 60))
    assert holdings.get("schema", "cd" * 32) == b"{}"
    os.utime(path, (day_old - 60, day_old - 60))
    assert holdings.get("schema", "cd" * 32) is None  # asked again: the registry may have dropped it
