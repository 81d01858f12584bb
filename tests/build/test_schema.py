"""The schema label comes from the predictor's source alone, without its dependencies installed."""

from __future__ import annotations

import pytest

from cogbuild.schema import static_schema


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COGBUILD_CACHE", str(tmp_path / "cache"))


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


def test_a_signature_that_needs_another_module_gives_no_schema(tmp_path):
    (tmp_path / "predict.py").write_text('''
from cog import BasePredictor, Input
from mylib import DEFAULT_STEPS

class Predictor(BasePredictor):
    def predict(self, steps: int = Input(default=DEFAULT_STEPS)) -> int:
        return steps
''')
    assert static_schema(tmp_path, "predict.py:Predictor") is None
