"""The schema label comes from the predictor's source alone, without its dependencies installed."""

from __future__ import annotations

import re

import pytest

from cogbuild.errors import UsageError
from cogbuild.schema import static_schema


def test_cog_style_with_uninstalled_dependencies(tmp_path):
    (tmp_path / "predict.py").write_text('''
import torch_that_is_not_installed as torch
from typing import Iterator, Optional
from cog import BasePredictor, BaseModel, Input, Path

SIZES = ["small", "large"]
MODEL = torch.load("weights.pt")


class Result(BaseModel):
    label: str
    score: float


class Frames(torch.utils.data.Dataset):  # a helper on a third-party base: not part of the interface
    pass


@torch.no_grad()
def helper(x: torch.Tensor) -> torch.Tensor:
    return x


class Predictor(BasePredictor):
    def setup(self):
        self.model = torch.load("x")

    def predict(self, image: Path = Input(description="An image"),
                size: str = Input(default="small", choices=SIZES),
                steps: int = Input(default=4, ge=1, le=50),
                note: Optional[str] = None) -> Result:
        return Result(label=self.model(image), score=1.0)
''')
    schema = static_schema(tmp_path, "predict.py:Predictor")
    assert schema is not None
    components = schema["components"]["schemas"]
    props = components["Input"]["properties"]
    assert props["image"]["format"] == "uri" and components["Input"]["required"] == ["image"]
    assert props["steps"]["minimum"] == 1 and props["steps"]["maximum"] == 50
    assert components["size"]["enum"] == ["small", "large"]
    assert set(components["Output"]["properties"]) == {"label", "score"}


def test_seed_style(tmp_path):
    (tmp_path / "model.py").write_text('''
import cog

class Model(cog.Model):
    def setup(self):
        pass

    @cog.input("text", type=str, help="Text to echo")
    @cog.input("times", type=int, default=1, min=1, max=3)
    def predict(self, text, times):
        return text * times
''')
    schema = static_schema(tmp_path, "model.py:Model")
    assert schema is not None
    props = schema["components"]["schemas"]["Input"]["properties"]
    assert props["text"]["description"] == "Text to echo" and props["times"]["maximum"] == 3


def test_a_signature_that_needs_another_module_fails_in_cogs_words(tmp_path):
    (tmp_path / "predict.py").write_text('''
from cog import BasePredictor, Input
from mypackage import Output

class Predictor(BasePredictor):
    def predict(self, prompt: str) -> Output:
        return Output(prompt)
''')
    with pytest.raises(UsageError, match=r'predict.py: cannot resolve type "Output" \(imported from "mypackage"\)'):
        static_schema(tmp_path, "predict.py:Predictor")


@pytest.mark.parametrize("parameter, message", [
    ("steps: int = Input(default=0, ge=1)", "default 0 is not valid: ensure this value is greater than or equal to 1"),
    ("steps: str = Input(default='x', ge=1)", "ge/le (min/max) only apply to int and float inputs"),
    ("size: str = Input(default='x', choices=['a', 'b'])", "default 'x' is not valid"),
])
def test_invalid_input_defaults_and_constraints_fail(tmp_path, parameter, message):
    (tmp_path / "predict.py").write_text(f"from cog import BasePredictor, Input\n\n"
                                         f"class Predictor(BasePredictor):\n"
                                         f"    def predict(self, {parameter}) -> str:\n        return ''\n")
    with pytest.raises(UsageError, match=r"predict.py: invalid predictor signature: .*" + re.escape(message)):
        static_schema(tmp_path, "predict.py:Predictor")


def test_a_predictor_in_a_subdirectory(tmp_path):
    (tmp_path / "my-subdir").mkdir()
    (tmp_path / "my-subdir" / "predict.py").write_text('''
from cog import BasePredictor
from mylib import concat

class Predictor(BasePredictor):
    def predict(self, s: str) -> str:
        return concat("hello", s)
''')
    schema = static_schema(tmp_path, "my-subdir/predict.py:Predictor")
    assert list(schema["components"]["schemas"]["Input"]["properties"]) == ["s"]


def test_a_function_predictor(tmp_path):
    (tmp_path / "predict.py").write_text("import numpy\nfrom cog import Input\n\n"
                                         "def run(n: int = Input(default=2, ge=1)) -> int:\n    return numpy.square(n)\n")
    props = static_schema(tmp_path, "predict.py:run")["components"]["schemas"]["Input"]["properties"]
    assert props["n"]["minimum"] == 1


def test_an_output_type_that_cannot_be_served_fails(tmp_path):
    (tmp_path / "predict.py").write_text("from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
                                         "    def predict(self) -> set:\n        return set()\n")
    with pytest.raises(UsageError, match="predict.py: unsupported output type: set is not a supported output type"):
        static_schema(tmp_path, "predict.py:Predictor")


TRAIN_SOURCE = '''
from cog import BaseModel, Input, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(epochs: int = Input(description="passes", ge=1, le=9)) -> TrainingOutput:
    return TrainingOutput(weights=Path("w"))
'''


def test_the_trainer_joins_the_schema_from_its_own_file(tmp_path):
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n        return text\n")
    (tmp_path / "train.py").write_text(TRAIN_SOURCE)
    schema = static_schema(tmp_path, "predict.py:Predictor", "train.py:train")
    components = schema["components"]["schemas"]
    assert components["TrainingInput"]["properties"]["epochs"]["maximum"] == 9
    assert set(components["TrainingOutput"]["properties"]) == {"weights"}
    assert "/trainings" in schema["paths"] and "text" in components["Input"]["properties"]
    assert "TrainingInput" not in static_schema(tmp_path, "predict.py:Predictor")["components"]["schemas"]


def test_a_trainer_beside_the_predictor_in_one_file(tmp_path):
    (tmp_path / "predict.py").write_text(TRAIN_SOURCE + (
        "\nfrom cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n        return text\n"))
    schema = static_schema(tmp_path, "predict.py:Predictor", "predict.py:train")
    assert set(schema["components"]["schemas"]["TrainingInput"]["properties"]) == {"epochs"}


def test_a_trainer_whose_types_cannot_be_resolved_is_named(tmp_path):
    (tmp_path / "predict.py").write_text(
        "from cog import BasePredictor\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self, text: str) -> str:\n        return text\n")
    (tmp_path / "train.py").write_text("from mylib import Config\n\ndef train(c: Config) -> str:\n    return ''\n")
    with pytest.raises(UsageError, match=r'^train\.py: cannot resolve type "Config" \(imported from "mylib"\)'):
        static_schema(tmp_path, "predict.py:Predictor", "train.py:train")


def test_the_schema_cache_is_used_and_a_damaged_entry_is_computed_again(tmp_path):
    (tmp_path / "predict.py").write_text('''
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(description="Some text")) -> str:
        return text
''')
    first = static_schema(tmp_path, "predict.py:Predictor", cache_root=tmp_path / "cache")
    blobs = tmp_path / "cache" / "schemas" / "sha256"
    (entry,) = blobs.iterdir()
    assert static_schema(tmp_path, "predict.py:Predictor", cache_root=tmp_path / "cache") == first
    entry.write_bytes(b'{"openapi": "tampered"')  # neither the schema nor even JSON
    assert static_schema(tmp_path, "predict.py:Predictor", cache_root=tmp_path / "cache") == first
    assert [p.name for p in blobs.iterdir()] == [entry.name] and entry.read_bytes() != b'{"openapi": "tampered"'
