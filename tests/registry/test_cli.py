"""`cogbuild login`, `pull` and `show` against a real registry, through the click CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cogbuild.cli import cli
from cogbuild.registry.layout import Layout
from cogbuild.lock_artifacts import attach_lock_and_sbom
from cogbuild.registry.remote import push_image
from oci_registry_server import PASSWORD, USER
from synthetic_images import write_image, write_index

pytestmark = pytest.mark.e2e

SCHEMA = json.dumps({"openapi": "3.0.2", "components": {"schemas": {
    "Input": {"type": "object", "required": ["prompt"], "properties": {
        "prompt": {"type": "string", "title": "Prompt", "x-order": 0, "description": "What to say"},
        "steps": {"type": "integer", "default": 4, "x-order": 1}}},
    "Output": {"type": "string", "format": "uri"}}}})
LOCK = b'version = 1\npython = "3.11"\ndebian = "bookworm"\n\n[[package]]\ngroup = "python"\nkind = "wheel"\n' \
       b'name = "numpy"\nsize = 1000\n\n[[package]]\ngroup = "os"\nkind = "deb"\nname = "libc6"\nsize = 500\n'


def _cli(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def _model(layout: Layout):
    lock = {"run.cog.lock-digest": "sha256:" + "1" * 64}
    amd = write_image(layout, [{"src/predict.py": b"amd"}], arch="amd64",
                      labels={"run.cog.openapi_schema": SCHEMA, **lock})
    # As cogbuild writes a schema too large for a container label: a manifest annotation of the same key.
    arm = write_image(layout, [{"src/predict.py": b"arm"}], arch="arm64", labels=lock,
                      annotations={"run.cog.openapi_schema": SCHEMA})
    return write_index(layout, [amd, arm])


def test_login_checks_then_stores_and_bad_password_is_one_sentence(basic_registry):
    bad = CliRunner().invoke(cli, ["login", basic_registry.host, "-u", USER, "--password-stdin"], input="nope\n")
    assert bad.exit_code != 0
    assert "rejected the username" in bad.output and bad.output.count("\n") == 1
    good = _cli("login", basic_registry.host, "-u", USER, "--password-stdin", input=PASSWORD + "\n")
    assert good.exit_code == 0, good.output
    assert "Login succeeded" in good.output


def test_login_with_token_auth(token_registry):
    good = _cli("login", token_registry.host, "-u", USER, "-p", PASSWORD)
    assert good.exit_code == 0, good.output
    bad = CliRunner().invoke(cli, ["login", token_registry.host, "-u", USER, "-p", "wrong"])
    assert bad.exit_code != 0 and "rejected" in bad.output


def test_pull_then_show_local_and_remote(registry, layout):
    index = _model(layout)
    ref = f"{registry.host}/ns/shown:v1"
    push_image(layout, index, ref)
    attach_lock_and_sbom(ref, index, LOCK, [])

    pulled = _cli("pull", ref)
    assert pulled.exit_code == 0, pulled.output
    assert pulled.output.strip().endswith(f"{registry.host}/ns/shown@{index.digest}")

    remote = json.loads(_cli("show", ref, "--json", "--remote").output)
    local = json.loads(_cli("show", ref, "--json").output)
    for summary in (remote, local):
        assert summary["digest"] == index.digest
        assert [i["platform"] for i in summary["images"]] == ["linux/amd64", "linux/arm64"]
        for image in summary["images"]:  # the schema from a label (amd64) and from an annotation (arm64)
            inputs = image["schema"]["inputs"]
            assert [(i["name"], i["type"], i["required"]) for i in inputs] == [("prompt", "string", True),
                                                                               ("steps", "integer", False)]
            assert image["schema"]["output"] == "Path"
    assert remote["lock"]["packages"] == 2 and remote["lock"]["by_group"] == {"os/deb": 1, "python/wheel": 1}

    text = _cli("show", ref, "--remote").output
    assert "linux/arm64" in text and "input prompt: string (required)" in text and "2 packages" in text


def test_show_layout_directory(layout):
    index = _model(layout)
    layout.tag("v1", index)
    shown = _cli("show", str(layout.root), "--json")
    assert json.loads(shown.output)["digest"] == index.digest


def test_show_unknown_image_is_one_sentence(registry):
    out = CliRunner().invoke(cli, ["show", f"{registry.host}/ns/none:v1"])
    assert out.exit_code != 0
    assert out.output.startswith("error: ") and "ns/none" in out.output and out.output.count("\n") == 1


def test_show_model_directory_not_built_yet_says_what_to_run(tmp_path):
    model = tmp_path / "mymodel"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\nrun: "predict.py:Predictor"\n')
    (model / "predict.py").write_text("from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
                                      "    def predict(self) -> str:\n        return 'x'\n")
    out = CliRunner().invoke(cli, ["show", str(model)])
    assert out.exit_code != 0
    assert "mymodel:latest" in out.output and "cogbuild build" in out.output


def test_show_model_directory_after_a_local_build(tmp_path, layout, monkeypatch):
    from cogbuild.project import open_store
    from cogbuild.settings import read_environment

    model = tmp_path / "built"
    model.mkdir()
    (model / "cog.yaml").write_text('build:\n  python_version: "3.11"\nrun: "predict.py:Predictor"\n')
    (model / "predict.py").write_text("from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
                                      "    def predict(self) -> str:\n        return 'x'\n")
    store = open_store(read_environment().store_root)  # where the CLI below looks (COGBUILD_STORE)
    index = _model(store)
    store.tag("built:latest", index)
    summary = json.loads(_cli("show", str(model), "--json").output)
    assert summary["digest"] == index.digest and len(summary["images"]) == 2
