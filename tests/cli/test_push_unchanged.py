"""`cogbuild push` of an unchanged image (issue 15): answered from the record of the last push and a few
questions to the registry, and only when nothing the image is made from changed and the registry still has
it all; anything else builds and pushes as before."""

from __future__ import annotations

from pathlib import Path

import pytest

from cogbuild.content_store import ContentStore
from cogbuild.push_record import PushRecord
from cogbuild.registry.light import LightClient
from cogbuild.registry.layout import Layout
from cogbuild.registry.remote import push_image
from oci_images import write_image

pytestmark = pytest.mark.e2e

FULL_PATH = "pushing to"  # what the full path reports; an unchanged push reports nothing


def tag_digest(pushed) -> str | None:
    return LightClient(pushed.registry.host).manifest_digest("tests/model", "v1")


def test_an_unchanged_push_prints_the_same_reference_without_building_or_pushing(pushed_model):
    again = pushed_model.push()
    assert again.code == 0, again.err
    assert again.out == pushed_model.first.out
    assert FULL_PATH not in again.err and FULL_PATH in pushed_model.first.err


@pytest.mark.parametrize("change", [
    lambda model: (model / "helper.py").write_text("VALUE = 2\n"),
    lambda model: (model / "predict.py").chmod(0o755),
    lambda model: (model / "empty").mkdir(),
], ids=["new file", "mode", "empty directory"])
def test_a_change_to_the_model_directory_is_built_and_pushed(pushed_model, change):
    change(pushed_model.model)
    changed = pushed_model.push()
    assert changed.code == 0, changed.err
    assert FULL_PATH in changed.err and changed.out != pushed_model.first.out
    assert tag_digest(pushed_model) == changed.out.strip().rsplit("@", 1)[1]


def test_another_option_is_built_and_pushed(pushed_model):
    other = pushed_model.push("--compression", "zstd")
    assert other.code == 0, other.err
    assert FULL_PATH in other.err and other.out != pushed_model.first.out


def test_a_tag_moved_in_the_registry_is_pushed_again(pushed_model, tmp_path):
    elsewhere = Layout(tmp_path / "other").init()
    push_image(elsewhere, write_image(elsewhere, "linux/amd64", "cpu", {"another": "image"}), pushed_model.ref)
    again = pushed_model.push()
    assert again.code == 0, again.err
    assert FULL_PATH in again.err and again.out == pushed_model.first.out
    assert tag_digest(pushed_model) == again.out.strip().rsplit("@", 1)[1]


def test_a_damaged_record_is_not_believed(pushed_model):
    records = ContentStore(Path(pushed_model.env["COGBUILD_CACHE"]) / "pushes")
    ours = [records.path(records.get_ref(ref.name)) for ref in records.refs.iterdir()
            if PushRecord.from_bytes(records.get_named(ref.name)).root == str(pushed_model.model)]
    assert len(ours) == 1
    data = bytearray(ours[0].read_bytes())
    data[-3] ^= 1
    ours[0].write_bytes(bytes(data))
    again = pushed_model.push()
    assert again.code == 0, again.err
    assert FULL_PATH in again.err and again.out == pushed_model.first.out
    assert FULL_PATH not in pushed_model.push().err  # the full path wrote a good record again
