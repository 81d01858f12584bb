"""The content store every cache sits on: atomic writes, verified reads, named references, checked keys."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest

from cogbuild.content_store import CHUNK, ContentStore, InvalidStoreKey
from cogbuild.errors import CogbuildError

DATA = b"some bytes worth keeping\n"
SHA = hashlib.sha256(DATA).hexdigest()


def leftovers(store: ContentStore) -> list[str]:
    """Temporary files a write left behind."""
    return sorted(p.name for p in store.root.rglob(".*"))


def test_bytes_are_kept_under_their_sha256_and_read_back(tmp_path):
    store = ContentStore(tmp_path)
    assert store.put_bytes(DATA) == SHA
    assert (tmp_path / "sha256" / SHA).read_bytes() == DATA
    assert store.get_bytes(SHA) == DATA
    assert store.get_path(SHA) == tmp_path / "sha256" / SHA
    assert store.put_bytes(DATA) == SHA  # again: same name, same content
    assert leftovers(store) == []


def test_an_absent_blob_is_none(tmp_path):
    store = ContentStore(tmp_path)
    assert store.get_bytes(SHA) is None and store.get_path(SHA) is None


@pytest.mark.parametrize("read", ["get_bytes", "get_path"])
@pytest.mark.parametrize("damage", [b"tampered", DATA[:-1], b""])
def test_a_blob_whose_bytes_no_longer_match_its_name_is_removed_on_read(tmp_path, read, damage):
    store = ContentStore(tmp_path)
    store.put_bytes(DATA)
    store.path(SHA).write_bytes(damage)
    assert getattr(store, read)(SHA) is None
    assert not store.path(SHA).exists()
    store.put_bytes(DATA)  # and the next put heals it
    assert getattr(store, read)(SHA) is not None


def test_a_stream_longer_than_a_chunk_is_hashed_while_written_a_chunk_at_a_time(tmp_path):
    data = bytes(range(256)) * ((2 * CHUNK + 12345) // 256)
    source = tmp_path / "big"
    source.write_bytes(data)
    asked: list[int] = []

    class CountingReader(io.FileIO):
        def read(self, size: int = -1) -> bytes:
            asked.append(size)
            return super().read(size)

    store = ContentStore(tmp_path / "store")
    with CountingReader(source) as reader:
        sha256 = store.put_stream(reader)
    assert sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_path(sha256).read_bytes() == data
    assert len(asked) >= 3 and max(asked) == CHUNK  # never one read of the whole file
    assert leftovers(store) == []


def test_a_write_that_fails_leaves_no_blob_and_no_temporary_file(tmp_path):
    store = ContentStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.writer() as sink:
            sink.write(DATA)
            assert list(store.blobs.iterdir()) != [] and not store.path(SHA).exists()  # only the temporary file
            raise RuntimeError("connection dropped")
    assert not store.path(SHA).exists()
    assert leftovers(store) == []


def test_a_failed_rewrite_keeps_the_blob_that_was_there(tmp_path):
    store = ContentStore(tmp_path)
    store.put_bytes(DATA)
    with pytest.raises(RuntimeError):
        with store.writer() as sink:
            sink.write(DATA[:5])
            raise RuntimeError("interrupted")
    assert store.get_bytes(SHA) == DATA


def test_references_name_blobs_and_are_replaced_whole(tmp_path):
    store = ContentStore(tmp_path)
    assert store.get_ref("parsed-index.json") is None and store.get_named("parsed-index.json") is None
    first = store.put_named("parsed-index.json", b"[1]")
    assert store.get_ref("parsed-index.json") == first
    assert store.get_named("parsed-index.json") == b"[1]"
    second = store.put_named("parsed-index.json", b"[2]")
    assert second != first and store.get_named("parsed-index.json") == b"[2]"
    assert (tmp_path / "refs" / "parsed-index.json").read_text() == second
    assert store.get_bytes(first) == b"[1]"  # the blob the reference named before stays
    assert leftovers(store) == []


def test_a_reference_older_than_the_age_asked_for_is_a_miss(tmp_path):
    store = ContentStore(tmp_path)
    sha256 = store.put_named("seen", DATA)
    hour_ago = time.time() - 3600
    os.utime(store.refs / "seen", (hour_ago, hour_ago))
    assert store.get_ref("seen", max_age=3600 + 60) == sha256 and store.get_named("seen") == DATA
    assert store.get_ref("seen", max_age=3600 - 60) is None and store.get_named("seen", max_age=3600 - 60) is None
    store.set_ref("seen", sha256)  # set again: young again
    assert store.get_named("seen", max_age=60) == DATA


def test_a_reference_to_a_corrupt_or_missing_blob_or_holding_no_digest_is_a_miss(tmp_path):
    store = ContentStore(tmp_path)
    sha256 = store.put_named("entry", DATA)
    store.path(sha256).write_bytes(b"tampered")
    assert store.get_named("entry") is None and not store.path(sha256).exists()
    (tmp_path / "refs" / "entry").write_text("../../etc/passwd")
    assert store.get_ref("entry") is None and store.get_named("entry") is None


@pytest.mark.parametrize("bad", ["", "../" + SHA[3:], SHA.upper(), SHA[:-1], SHA + "0", "sha256:" + SHA, "g" * 64,
                                 SHA[:-1] + "/"])
def test_a_digest_that_is_not_64_lowercase_hex_digits_is_refused_before_any_path_is_built(tmp_path, bad):
    store = ContentStore(tmp_path / "store")
    for call in (store.path, store.get_bytes, store.get_path, lambda sha: store.set_ref("entry", sha)):
        with pytest.raises(InvalidStoreKey, match="is not a sha256"):
            call(bad)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("bad", ["", "../escape", "a/b", ".hidden", "-flag", "x" * 201, "name with space", "é"])
def test_a_reference_name_that_could_leave_the_store_is_refused(tmp_path, bad):
    store = ContentStore(tmp_path / "store")
    for call in (lambda: store.put_named(bad, DATA), lambda: store.get_named(bad), lambda: store.get_ref(bad)):
        with pytest.raises(InvalidStoreKey, match="is not a store reference name"):
            call()
    assert not (tmp_path / "store").exists()


def test_a_refused_key_is_one_sentence_for_the_cli_and_a_value_error_for_callers(tmp_path):
    with pytest.raises(CogbuildError) as caught:
        ContentStore(tmp_path).path("nope")
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)
