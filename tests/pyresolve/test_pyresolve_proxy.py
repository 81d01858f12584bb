"""The metadata proxy pip resolves through: same answers as without it, METADATA read with range
requests (or one download), cached by wheel hash and checked on read."""

from __future__ import annotations

import httpx
import pytest
from wheelindex import Dist, WheelIndex, build_wheel

from cogbuild.pyresolve import Target, resolve_requirements
from cogbuild.pyresolve.lazywheel import wheel_metadata
from cogbuild.content_store import ContentStore
from cogbuild.pyresolve.metadata_proxy import metadata_store

X86 = Target("3.11", "x86_64", "2.36")


def test_same_lock_with_and_without_the_proxy(simple_url):
    requirements = ["purelib", "fastmath", "markers", "withextra[more]", "stable"]
    through_proxy = resolve_requirements(requirements, X86, index_url=simple_url)
    direct = resolve_requirements(requirements, X86, index_url=simple_url, proxy=False)  # COGBUILD_PIP_PROXY=0
    assert through_proxy == direct
    assert [a.required_by for a in through_proxy] == [a.required_by for a in direct]
    assert all(a.url.startswith(simple_url.replace("/simple/", "/files/")) for a in through_proxy)


def test_metadata_is_cached_by_wheel_hash(simple_url, tmp_path, wheel_dir):
    artifacts = resolve_requirements(["purelib"], X86, index_url=simple_url, uv=False, cache_root=tmp_path)  # the proxy serves pip
    cache = metadata_store(tmp_path)
    assert cache.root == tmp_path / "wheel-metadata"
    for artifact in artifacts:
        assert cache.get_named(artifact.sha256).startswith(b"Metadata-Version: 2.1\nName: " + artifact.name.encode())


def test_corrupt_cache_entry_is_dropped(tmp_path):
    cache = ContentStore(tmp_path)
    cache.put_named("ab" * 32, b"Metadata-Version: 2.1\nName: x\n")
    assert cache.get_named("ab" * 32) == b"Metadata-Version: 2.1\nName: x\n"
    entry = cache.path(cache.get_ref("ab" * 32))
    entry.write_bytes(b"tampered")
    assert cache.get_named("ab" * 32) is None and not entry.exists()


@pytest.mark.parametrize("serve_ranges", [True, False])
def test_wheel_metadata_with_and_without_range_support(tmp_path, serve_ranges):
    wheel = build_wheel(tmp_path, Dist("ranged", "1.0", requires=["helper"]))
    server = WheelIndex(tmp_path, serve_ranges=serve_ranges)
    try:
        with httpx.Client() as http:
            metadata = wheel_metadata(http, f"{server.url}/files/{wheel.name}", wheel.stat().st_size)
    finally:
        server.close()
    assert b"Name: ranged\n" in metadata and b"Requires-Dist: helper\n" in metadata
    # Without range support the first (range) request gets the whole file and a plain GET follows.
    used_ranges_only = all(r.startswith("range ") for r in server.file_requests())
    assert used_ranges_only == serve_ranges
