"""resolve_closure against a signed fixture archive served on loopback: verification, caching, suites."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
from dataclasses import replace
from pathlib import Path

import pytest
from debian_fixture_repo import FixtureRepo, SigningKey

from cogbuild.debian import Archive, DebianSource, archive, forget_parsed_indexes, resolve_closure
from cogbuild.debian.archive import PackagesText
from cogbuild.debian.release import IndexFile
from cogbuild.errors import CogbuildError


def publish_app(repo: FixtureRepo, suite: str = "testing", **publish_options) -> None:
    repo.add("app", "1.0", suite=suite, depends="libfoo (>= 1.0), python3:any, debconf | debconf-2.0")
    repo.add("libfoo", "1.1", suite=suite, pre_depends="libc6 (>= 2.36)")
    repo.add("libc6", "2.36-9", suite=suite)
    repo.add("libc6", "2.36-9", arch="arm64", suite=suite)
    repo.add("python3", "3.11.2-1", arch="all", suite=suite, multi_arch="allowed")
    repo.add("debconf", "1.5.82", arch="all", suite=suite)
    repo.publish(suite, **publish_options)


def source_for(url: str, key: SigningKey, *suites: str) -> DebianSource:
    archives = tuple(Archive(url, suite) for suite in suites) or (Archive(url),)
    return DebianSource(archives=archives, keyring=key.keyring)


def test_closure_from_a_signed_archive_pins_real_files(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    url = serve(repo.root)
    debs = resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf", "debconf-2.0"],
                           source=source_for(url, signing_key), cache_root=tmp_path / "cache")  # fmt: skip
    assert [d.name for d in debs] == ["app", "libc6", "libfoo", "python3"]
    for deb in debs:
        local = repo.root / deb.url.removeprefix(url + "/")
        assert deb.url.startswith(f"{url}/pool/main/")
        assert deb.size == local.stat().st_size
        assert deb.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert {d.name: d.filename for d in debs}["python3"] == "python3_3.11.2-1_all.deb"


def test_arm64_uses_its_own_index(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    source = source_for(serve(repo.root), signing_key)
    debs = resolve_closure(["libc6", "python3"], suite="testing", arch="arm64", source=source, cache_root=tmp_path)
    assert {d.name: d.filename for d in debs} == {"libc6": "libc6_2.36-9_arm64.deb",
                                                  "python3": "python3_3.11.2-1_all.deb"}  # fmt: skip
    with pytest.raises(CogbuildError, match="Architecture 'i386' is not supported"):
        resolve_closure(["libfoo"], suite="testing", arch="i386", source=source, cache_root=tmp_path)


def test_libfoo_is_amd64_only_so_arm64_reports_it_missing(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    source = source_for(serve(repo.root), signing_key)
    with pytest.raises(CogbuildError, match=r"'app' is not in testing \(arm64\)"):
        resolve_closure(["app"], suite="testing", arch="arm64", source=source, cache_root=tmp_path)


def test_updates_suite_with_a_higher_version_wins(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    repo.add("libfoo", "1.1+deb12u1", suite="testing-updates", pre_depends="libc6 (>= 2.36)")
    repo.publish("testing-updates")
    source = source_for(serve(repo.root), signing_key, "{suite}", "{suite}-updates")
    debs = resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source, cache_root=tmp_path)
    libfoo = {d.name: d for d in debs}["libfoo"]
    assert libfoo.version == "1.1+deb12u1"
    assert libfoo.sha256 == hashlib.sha256(repo.deb_path("libfoo", "1.1+deb12u1", suite="testing-updates")
                                           .read_bytes()).hexdigest()  # fmt: skip


def test_by_hash_indexes_are_used_when_the_release_offers_them(repo, serve, signing_key, tmp_path):
    publish_app(repo, by_hash=True)
    for plain in repo.root.glob("dists/testing/main/binary-*/Packages*"):
        plain.unlink()  # only the by-hash copies remain
    debs = resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                           cache_root=tmp_path)  # fmt: skip
    assert [d.name for d in debs] == ["libc6", "libfoo"]


def test_indexes_are_cached_by_hash_and_a_corrupt_cache_entry_is_refetched(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    source = source_for(serve(repo.root), signing_key)
    cache = tmp_path / "cache"
    first = resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source, cache_root=cache)
    xz = repo.root / "dists/testing/main/binary-amd64/Packages.xz"
    blob = cache / "debian-indexes" / "sha256" / hashlib.sha256(xz.read_bytes()).hexdigest()
    assert blob.read_bytes() == xz.read_bytes()
    # With the index gone from the server, the cache (checked against the signed hash) still answers.
    saved = xz.read_bytes()
    xz.unlink()
    assert resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source,
                           cache_root=cache) == first  # fmt: skip
    # A corrupted cache entry is noticed, dropped and fetched again.
    xz.write_bytes(saved)
    blob.write_bytes(b"corrupt")
    assert resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source,
                           cache_root=cache) == first  # fmt: skip
    assert blob.read_bytes() == saved


def test_tampered_index_is_rejected(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    xz = repo.root / "dists/testing/main/binary-amd64/Packages.xz"
    text = lzma.decompress(xz.read_bytes()).replace(b"Version: 1.1", b"Version: 9.9")
    xz.write_bytes(lzma.compress(text))
    with pytest.raises(CogbuildError, match=r"Packages\.xz does not match the size and sha256 its signed InRelease"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip
    assert not (tmp_path / "debian-indexes" / "sha256").exists() or not any((tmp_path / "debian-indexes").rglob("*"))


def test_oversized_index_is_cut_off(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    xz = repo.root / "dists/testing/main/binary-amd64/Packages.xz"
    xz.write_bytes(xz.read_bytes() + b"\0" * 100_000)
    with pytest.raises(CogbuildError, match="is larger than the size its signed InRelease lists"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_altered_inrelease_has_a_bad_signature(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    inrelease = repo.root / "dists/testing/InRelease"
    inrelease.write_bytes(inrelease.read_bytes().replace(b"Origin: cogbuild-tests", b"Origin: cogbuild-tezts"))
    with pytest.raises(CogbuildError, match="InRelease has a bad signature"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_release_signed_by_an_unknown_key_is_rejected(repo, serve, signing_key, other_key, tmp_path):
    publish_app(repo)
    release = (repo.root / "dists/testing/Release").read_bytes()
    (repo.root / "dists/testing/InRelease").write_bytes(other_key.clearsign(release))
    with pytest.raises(CogbuildError, match="InRelease is not signed by a key in"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_release_signed_by_an_expired_key_is_rejected(repo, serve, expired_key, tmp_path):
    publish_app(repo)
    release = (repo.root / "dists/testing/Release").read_bytes()
    (repo.root / "dists/testing/InRelease").write_bytes(expired_key.clearsign(release))
    with pytest.raises(CogbuildError, match="InRelease is signed only by an expired or revoked key"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), expired_key),
                        cache_root=tmp_path)  # fmt: skip


def test_unsigned_release_is_rejected(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    release = repo.root / "dists/testing/Release"
    (repo.root / "dists/testing/InRelease").write_bytes(release.read_bytes())
    with pytest.raises(CogbuildError, match="InRelease is not signed by a key in"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_release_with_a_detached_signature(repo, serve, signing_key, tmp_path):
    publish_app(repo, detached=True)
    url = serve(repo.root)
    debs = resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source_for(url, signing_key),
                           cache_root=tmp_path)  # fmt: skip
    assert [d.name for d in debs] == ["libc6", "libfoo"]
    release = repo.root / "dists/testing/Release"
    release.write_bytes(release.read_bytes().replace(b"Origin: cogbuild-tests", b"Origin: cogbuild-tezts"))
    with pytest.raises(CogbuildError, match=r"dists/testing/Release has a bad signature"):
        resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source_for(url, signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_text_outside_the_signature_is_ignored(repo, serve, signing_key, tmp_path):
    """An attacker may append an unsigned Release; only gpgv's signed output is trusted."""
    publish_app(repo)
    inrelease = repo.root / "dists/testing/InRelease"
    fake = b"\nSHA256:\n " + b"0" * 64 + b" 1 main/binary-amd64/Packages.xz\n"
    inrelease.write_bytes(inrelease.read_bytes() + fake)
    debs = resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source_for(serve(repo.root), signing_key),
                           cache_root=tmp_path)  # fmt: skip
    assert [d.name for d in debs] == ["libc6", "libfoo"]


def test_release_of_another_suite_is_rejected(repo, serve, signing_key, tmp_path):
    """A mirror replaying one release's signed files under another release's name is caught."""
    publish_app(repo)
    (repo.root / "dists/newrelease").symlink_to(repo.root / "dists/testing")
    with pytest.raises(CogbuildError, match="describes suite 'testing', not 'newrelease'"):
        resolve_closure(["app"], suite="newrelease", arch="amd64", source=source_for(serve(repo.root), signing_key),
                        cache_root=tmp_path)  # fmt: skip


def test_expired_release_is_rejected_unless_the_user_accepts_it(repo, serve, signing_key, tmp_path):
    publish_app(repo, extra_release_fields="Valid-Until: Sat, 01 Jan 2000 00:00:00 UTC\n")
    url = serve(repo.root)
    with pytest.raises(CogbuildError, match=r"expired on Sat, 01 Jan 2000 .*Valid-Until.*IGNORE_VALID_UNTIL=1"):
        resolve_closure(["libfoo"], suite="testing", arch="amd64", source=source_for(url, signing_key),
                        cache_root=tmp_path)  # fmt: skip
    accepting = replace(source_for(url, signing_key), check_valid_until=False)  # IGNORE_VALID_UNTIL=1
    debs = resolve_closure(["libfoo"], suite="testing", arch="amd64", source=accepting, cache_root=tmp_path)
    assert [d.name for d in debs] == ["libc6", "libfoo"]


def test_missing_suite_and_unreachable_mirror_are_clear_errors(repo, serve, signing_key, tmp_path):
    publish_app(repo)
    url = serve(repo.root)
    with pytest.raises(CogbuildError, match=r"has no suite 'nosuch' \(neither dists/nosuch/InRelease nor Release"):
        resolve_closure(["app"], suite="nosuch", arch="amd64", source=source_for(url, signing_key), cache_root=tmp_path)
    dead = DebianSource(archives=(Archive("http://127.0.0.1:9"),), keyring=signing_key.keyring)
    with pytest.raises(CogbuildError, match=r"Could not fetch http://127\.0\.0\.1:9/dists/testing/InRelease"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=dead, cache_root=tmp_path)


def test_missing_keyring_is_a_clear_error(repo, serve, tmp_path):
    publish_app(repo)
    source = DebianSource(archives=(Archive(serve(repo.root)),), keyring=Path(tmp_path / "none.gpg"))
    with pytest.raises(CogbuildError, match=r"keyring .*none\.gpg does not exist"):
        resolve_closure(["app"], suite="testing", arch="amd64", source=source, cache_root=tmp_path)


def test_decompressed_index_cache_is_used_and_survives_corruption(repo, serve, signing_key, tmp_path, monkeypatch):
    publish_app(repo)
    source = source_for(serve(repo.root), signing_key)
    cache = tmp_path / "cache"
    first = resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source, cache_root=cache)
    refs = sorted((cache / "debian-indexes" / "refs").iterdir())
    assert [ref.name.split("-")[1] for ref in refs] == ["text1"]
    kept = cache / "debian-indexes" / "sha256" / refs[0].read_text()
    text = kept.read_bytes()
    assert b"Package: libfoo\nVersion: 1.1\n" in text

    def no_decompression(self, copy_to=None):
        raise AssertionError("the index was decompressed again")

    with monkeypatch.context() as patched:  # a second lock reads the text it kept
        patched.setattr(PackagesText, "text", no_decompression)
        forget_parsed_indexes()
        assert resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source,
                               cache_root=cache) == first  # fmt: skip
    for damage in (text[:-10], text.replace(b"Version: 1.1", b"Version: 6.6")):  # neither is what was hashed
        kept.write_bytes(damage)
        forget_parsed_indexes()
        assert resolve_closure(["app"], suite="testing", arch="amd64", exclude=["debconf"], source=source,
                               cache_root=cache) == first  # fmt: skip
        assert kept.read_bytes() == text  # decompressed and kept again


def test_the_inspection_command(repo, serve, signing_key, tmp_path, capsys):
    from cogbuild.debian.__main__ import main

    publish_app(repo)
    common = ["--mirror", serve(repo.root), "--keyring", str(signing_key.keyring), "--suite", "testing",
              "--cache-dir", str(tmp_path)]  # fmt: skip
    assert main([*common, "--json", "libfoo"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(d["name"], d["required_by"]) for d in printed] == [("libc6", ["libfoo"]), ("libfoo", ["request"])]
    assert main([*common, "libfo"]) == 1
    assert capsys.readouterr().err == (
        "error: Debian package 'libfo' is not in testing (amd64); did you mean 'libfoo'?\n"
    )


TEXT = "Package: café\nDescription: ünïcode split across pieces\n\n" * 50


def packages_text(path: str, data: bytes) -> PackagesText:
    return PackagesText(Archive("http://mirror.invalid"), "testing", IndexFile(path, "0" * 64, len(data)), data)


@pytest.mark.parametrize(
    "extension, compressed",
    [
        ("", TEXT.encode()),
        (".xz", lzma.compress(TEXT[:1000].encode()) + lzma.compress(TEXT[1000:].encode())),  # two xz streams
        (".gz", gzip.compress(TEXT[:1001].encode()) + gzip.compress(TEXT[1001:].encode())),  # two gzip members
    ],
)
def test_index_text_comes_whole_from_small_steps(monkeypatch, extension, compressed):
    monkeypatch.setattr(archive, "_STEP", 7)  # many steps: characters and streams are cut between them
    pieces: list[bytes] = []
    text = packages_text("main/binary-amd64/Packages" + extension, compressed).text(copy_to=pieces.append)
    assert len(pieces) > 10
    assert text == b"".join(pieces) == TEXT.encode()


def test_truncated_or_garbled_index_is_one_clear_error():
    truncated = lzma.compress(TEXT.encode())[:-20]
    with pytest.raises(CogbuildError, match=r"^main/binary-amd64/Packages.xz is not valid .xz data"):
        packages_text("main/binary-amd64/Packages.xz", truncated).text()
    with pytest.raises(CogbuildError, match=r"^main/binary-amd64/Packages.gz is not valid .gz data"):
        packages_text("main/binary-amd64/Packages.gz", b"not gzip at all").text()
