"""The SDK and schema, in-process: signatures, load errors, OpenAPI layout. Fast, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator, List, Optional

import pytest

import cog
from cog import BaseModel, BasePredictor, ConcatenateIterator, Input, Path, Secret
from cog.command.openapi_schema import openapi_schema
from cog.errors import PredictorError
from cog.openapi import openapi_document
from cog.signature import read_signature

from .conftest import MODELS


def schema_of(fn) -> dict:
    return openapi_document(read_signature(fn))["components"]["schemas"]


def test_import_cog_is_cheap_and_has_the_public_names():
    code = ("import sys, cog; print(json.dumps(['aiohttp' in sys.modules, cog.__version__, "
            "[n for n in ['BasePredictor','BaseRunner','Input','Path','File','Secret','BaseModel',"
            "'ConcatenateIterator','AsyncConcatenateIterator','current_scope','concurrent',"
            "'ExperimentalFeatureWarning','CancelationException','Model','input','emit_metric'] "
            "if not hasattr(cog, n)]]))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    aiohttp_loaded, version, missing = json.loads(out.stdout)
    assert aiohttp_loaded is False
    assert version == cog.__version__ and version
    assert missing == []


def test_input_schema_has_cog_layout():
    class P(BasePredictor):
        def predict(self,
                    prompt: str = Input(description="The prompt", min_length=1, max_length=10, regex="^[a-z]+$"),
                    n: int = Input(default=3, ge=1, le=10),
                    image: Path = Input(description="An image"),
                    key: Secret = Input(default=None),
                    color: str = Input(choices=["red", "green"], default="red"),
                    maybe: Optional[str] = None,
                    tags: List[str] = Input(default=["a"])) -> str:
            return prompt

    schemas = schema_of(P().predict)
    props = schemas["Input"]["properties"]
    assert schemas["Input"]["required"] == ["prompt", "image"]
    assert props["prompt"] == {"title": "Prompt", "type": "string", "minLength": 1, "maxLength": 10,
                               "pattern": "^[a-z]+$", "description": "The prompt", "x-order": 0}
    assert props["n"] == {"title": "N", "type": "integer", "minimum": 1, "maximum": 10, "default": 3, "x-order": 1}
    assert props["image"]["format"] == "uri"
    assert props["key"]["format"] == "password" and props["key"]["x-cog-secret"] is True
    assert props["color"]["allOf"] == [{"$ref": "#/components/schemas/color"}]
    assert schemas["color"]["enum"] == ["red", "green"] and schemas["color"]["type"] == "string"
    assert props["maybe"]["nullable"] is True
    assert props["tags"]["type"] == "array" and props["tags"]["items"] == {"type": "string"}
    assert [p["x-order"] for p in props.values()] == list(range(7))
    for name in ("PredictionRequest", "PredictionResponse", "Status", "HTTPValidationError", "Output"):
        assert name in schemas


class Out(BaseModel):
    text: str
    score: float = 0.0


def test_output_schemas():
    class Tokens(BasePredictor):
        def predict(self) -> ConcatenateIterator[str]:
            yield "a"

    class Items(BasePredictor):
        def predict(self) -> Iterator[Path]:
            yield Path("/x")

    class Structured(BasePredictor):
        def predict(self) -> Out:
            return Out(text="a")

    assert schema_of(Tokens().predict)["Output"] == {
        "title": "Output", "type": "array", "items": {"type": "string"},
        "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate"}
    assert schema_of(Items().predict)["Output"]["items"] == {"type": "string", "format": "uri"}
    out = schema_of(Structured().predict)["Output"]
    assert out["title"] == "Output" and out["type"] == "object" and out["required"] == ["text"]
    assert out["properties"]["score"] == {"title": "Score", "type": "number"}


def test_secret_defaults_stay_out_of_the_schema():
    class P(BasePredictor):
        def predict(self, key: Secret = Input(default="s3cr3t")) -> str:
            return key.get_secret_value()

    prop = schema_of(P().predict)["Input"]["properties"]["key"]
    assert prop["default"] == "**********" and "s3cr3t" not in json.dumps(prop)


def test_async_and_concurrency_are_read():
    class P(BasePredictor):
        @cog.concurrent(max=4)
        async def predict(self, x: int) -> int:
            return x

    signature = read_signature(P().predict)
    assert signature.is_async and signature.max_concurrency == 4
    with pytest.raises(TypeError):
        cog.concurrent(max=2)(lambda: None)


@pytest.mark.parametrize("name, words", [
    ("Untyped", ["'thing'", "no type annotation"]),
    ("Nested", ["'grid'", "nested lists"]),
    ("BadDefault", ["'n'", "greater than or equal to 1"]),
])
def test_unsupported_signatures_name_the_parameter(name, words, monkeypatch):
    monkeypatch.chdir(MODELS)
    with pytest.raises(PredictorError) as caught:
        openapi_schema(f"predict.py:{name}")
    for word in words:
        assert word in str(caught.value)


def test_missing_file_and_class_are_clear(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PredictorError, match="nothere.py does not exist"):
        openapi_schema("nothere.py:Predictor")
    (tmp_path / "p.py").write_text("x = 1\n")
    with pytest.raises(PredictorError, match="no Runner or Predictor"):
        openapi_schema("p.py")


def test_seed_style_schema(monkeypatch):
    monkeypatch.chdir(MODELS)
    schemas = openapi_schema("seed_model.py:HelloModel")["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert list(props) == ["name", "times", "mood", "picture"]
    assert schemas["Input"]["required"] == ["name"]
    assert props["name"]["description"] == "Who to greet"
    assert props["times"]["minimum"] == 1 and props["times"]["maximum"] == 3
    assert schemas["mood"]["enum"] == ["calm", "loud"]


def test_openapi_schema_command_prints_json_without_setup(tmp_path):
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor\n"
        "class Predictor(BasePredictor):\n"
        "    def setup(self):\n        raise SystemExit('setup must not run')\n"
        "    def predict(self, x: int = 1) -> int:\n        return x\n")
    out = subprocess.run([sys.executable, "-m", "cog.command.openapi_schema"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["components"]["schemas"]["Input"]["properties"]["x"]["default"] == 1
    bad = subprocess.run([sys.executable, "-m", "cog.command.openapi_schema", "--predictor", "missing.py:P"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 1 and "missing.py does not exist" in bad.stderr
    (tmp_path / "broken.py").write_text("import torch_is_not_here\n")
    broken = subprocess.run([sys.executable, "-m", "cog.command.openapi_schema", "--predictor", "broken.py:P"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert broken.returncode == 1
    assert broken.stderr.strip() == ("error: importing broken.py failed: ModuleNotFoundError: "
                                     "No module named 'torch_is_not_here'")


def test_secret_hides_itself_and_basemodel_is_a_dataclass():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) + str(secret)
    assert secret.get_secret_value() == "hunter2"

    class Out(BaseModel):
        a: int
        b: str = "x"

    assert Out(a=1) == Out(a=1, b="x")


def test_current_scope_outside_prediction_is_harmless():
    scope = cog.current_scope()
    scope.record_metric("x", 1)
    assert scope.context == {}


def test_the_worker_side_imports_nothing_but_the_stdlib():
    """The worker imports the model beside the SDK, with the model's packages only: no aiohttp & co there."""
    runtime = os.path.dirname(os.path.dirname(cog.__file__))
    code = ("import sys; sys.path.insert(0, sys.argv[1]);"
            "import cog, cog.server.worker, cog.command.openapi_schema, cog.loader;"
            "print(sorted({name.split('.')[0] for name in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}))")
    # -I -S: no site-packages at all, so any third-party import fails outright.
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, runtime], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['cog']"


def test_runtime_imports_only_the_stdlib_and_aiohttp():
    """The runtime is installed into images on its own: no cogbuild, layers, registry or other packages."""
    import ast
    from pathlib import Path as FsPath

    root = FsPath(cog.__file__).parent
    allowed = set(sys.stdlib_module_names) | {"cog", "aiohttp"}
    found = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    found[f"{path.relative_to(root)}:{node.lineno}"] = name
    assert found == {}
    lines = (root.parent / "requirements.in").read_text().splitlines()
    pins = [line.split(";")[0].strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {pin.split("==")[0] for pin in pins} == {"aiohttp"} and "aiohttp==3.14.5" in pins


def test_union_types_in_inputs_and_outputs():
    # union_input_http.txtar / union_input_list_http.txtar: JSON-native unions, and their schemas
    def predict(value: str | float | None = None, nums: list[int] | list[float] = [1],  # noqa: B006  Cog's form
                mixed: list[str | int] = ["a"]) -> str | int | None:  # noqa: B006  a schema default, never mutated
        return value

    schemas = schema_of(predict)
    props = schemas["Input"]["properties"]
    assert props["value"]["anyOf"] == [{"type": "string"}, {"type": "number"}] and props["value"]["nullable"]
    assert props["nums"]["anyOf"] == [{"type": "array", "items": {"type": "integer"}},
                                      {"type": "array", "items": {"type": "number"}}]
    assert props["mixed"]["items"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert schemas["Output"] == {"anyOf": [{"type": "string"}, {"type": "integer"}], "nullable": True,
                                 "title": "Output"}

    def files(image: cog.Path | str) -> str:
        return ""

    with pytest.raises(PredictorError, match="only str, int, float and bool"):
        read_signature(files)

