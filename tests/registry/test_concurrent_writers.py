"""Many writers of the same content at once (CI runners sharing a cache repository) against a real
registry: every one of them must succeed, and the repository must hold exactly that content."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import partial

from cogbuild.layers.descriptor import OCI_MANIFEST, Descriptor, canonical_json
from cogbuild.registry.client import RegistryClient
from cogbuild.registry.referrers import OCI_EMPTY, push_small_blob
from cogbuild.registry.remote import put_manifest

WRITERS = 6
ROUNDS = 12


def _all_at_once(work: Callable[[], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(WRITERS)

    def run() -> None:
        start.wait()
        try:
            work()
        except BaseException as exc:  # noqa: BLE001  (collected and reported by the test)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _publish(client: RegistryClient, blobs: list[bytes], manifest: bytes, desc: Descriptor, tag: str) -> None:
    """What a cache writer does: its blobs, then the manifest naming them, under a tag."""
    for blob in blobs:
        push_small_blob(client, "team/cache", blob)
    put_manifest(client, "team/cache", manifest, desc, tag)


def test_concurrent_writers_of_the_same_blob_and_manifest_all_succeed(registry):
    client = RegistryClient(registry.host)
    for round_ in range(ROUNDS):
        blob = os.urandom(64) + str(round_).encode()  # new content each round: nobody finds it already there
        config = b"{}"
        manifest = canonical_json({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": Descriptor.of(OCI_EMPTY, config).to_json(),
            "layers": [Descriptor.of("application/octet-stream", blob).to_json()]})
        desc = Descriptor.of(OCI_MANIFEST, manifest)

        assert _all_at_once(partial(_publish, client, [config, blob], manifest, desc, f"entry-{round_}")) == [], \
            f"round {round_}"
        stored = client.request("GET", client.url(f"team/cache/manifests/entry-{round_}"),
                                repository="team/cache", headers={"Accept": OCI_MANIFEST}, action="read")
        assert stored.content == manifest
        fetched = client.request("GET", client.url(f"team/cache/blobs/{Descriptor.of('x', blob).digest}"),
                                 repository="team/cache", action="read")
        assert fetched.content == blob
