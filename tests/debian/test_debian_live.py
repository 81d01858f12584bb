"""The real Debian archive: bookworm's python3.11 closure, verified with the system's Debian keyring."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from debian_fixture_repo import require, require_tools

from cogbuild.debian import DebianSource, debian_suite, resolve_closure

pytestmark = pytest.mark.network


def _reachable(host: str) -> bool:
    try:
        socket.create_connection((host, 80), timeout=10).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def live_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tools("gpgv")
    require(DebianSource().keyring.is_file(), f"the Debian archive keyring {DebianSource().keyring}")
    require(_reachable("deb.debian.org"), "network access to deb.debian.org")
    return tmp_path_factory.mktemp("debian-cache")


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_python311_closure_on_bookworm(arch: str, live_cache: Path):
    debs = resolve_closure(["python3.11"], suite=debian_suite("3.11"), arch=arch,
                           exclude=["debconf", "debconf-2.0"], cache_root=live_cache)  # fmt: skip
    by_name = {deb.name: deb for deb in debs}
    for name in ("libc6", "libpython3.11-stdlib", "python3.11-minimal"):
        deb = by_name[name]
        assert re.fullmatch(r"[0-9a-f]{64}", deb.sha256)
        assert deb.size > 10_000
        assert deb.filename.endswith(f"_{arch}.deb") and deb.url.endswith("/" + deb.filename)
        assert deb.url.startswith(("http://deb.debian.org/debian/pool/", "http://deb.debian.org/debian-security/pool/"))
    assert by_name["python3.11"].required_by == ("request",)
    assert "debconf" not in by_name
    assert all(deb.filename.endswith((f"_{arch}.deb", "_all.deb")) for deb in debs)


def test_the_patch_debian_ships_stays_with_debian_and_any_other_goes_standalone(live_cache: Path):
    from cogbuild.interpreter import choose_interpreter, debian_patch

    shipped = debian_patch("bookworm", "3.11", "amd64", live_cache)  # the indexes the test above fetched
    assert re.fullmatch(r"3\.11\.\d+", shipped)
    assert choose_interpreter(shipped, cache_root=live_cache).provider == "debian"
    newer = f"3.11.{int(shipped.split('.')[2]) + 2}"
    assert choose_interpreter(newer, cache_root=live_cache).provider == "standalone"


def test_the_scanned_index_answers_as_a_full_parse_for_every_package(live_cache: Path):
    from full_parse import assert_answers_as_a_full_parse

    from cogbuild.content_store import ContentStore
    from cogbuild.debian.archive import fetch_packages
    from cogbuild.debian.index import PackageIndex
    from cogbuild.http_fetch import new_client

    with new_client() as client:  # the indexes the closure test above fetched, verified again
        texts = fetch_packages(DebianSource(), "bookworm", "amd64", client=client,
                               cache=ContentStore(live_cache / "debian-indexes"))  # fmt: skip
    assert assert_answers_as_a_full_parse(PackageIndex.from_texts(texts, "amd64"), texts, "amd64") > 60_000
