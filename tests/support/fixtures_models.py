"""Small Cog projects the tests write as a Cog user would."""

from __future__ import annotations

from pathlib import Path


def write_model(root: Path, predictor: str, extra_yaml: str = "") -> Path:
    """A model directory: `predict.py` holding `predictor` (class Predictor), cog.yaml on Python 3.11."""
    root.mkdir(parents=True)
    (root / "cog.yaml").write_text(f'build:\n  python_version: "3.11"\npredict: "predict.py:Predictor"\n{extra_yaml}')
    (root / "predict.py").write_text(predictor)
    return root


def write_subdirectory_model(model: Path, extra_yaml: str = "") -> Path:
    """`predict: "my-subdir/predict.py:Predictor"`, importing a module from the model's root, as Cog allows."""
    (model / "my-subdir").mkdir(parents=True)
    (model / "cog.yaml").write_text(f'build:\n  python_version: "3.11"\n{extra_yaml}'
                                    'predict: "my-subdir/predict.py:Predictor"\n')
    (model / "mylib.py").write_text("def concat(a, b):\n    return a + ' ' + b\n")
    (model / "my-subdir" / "predict.py").write_text(
        "from cog import BasePredictor\nfrom mylib import concat\n\nclass Predictor(BasePredictor):\n"
        "    def predict(self, s: str) -> str:\n        return concat('hello', s)\n")
    return model
