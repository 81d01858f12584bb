"""Cog's training interface, as cog.yaml's `train:` names it (tests/runtime/test_cog_parity.py)."""

import os
import tempfile
import time

from cog import BaseModel, BasePredictor, Input, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(n: int = Input(description="bytes of weights", ge=0), pause: float = 0.0) -> TrainingOutput:
    print(f"training with n={n}")
    time.sleep(pause)
    path = os.path.join(tempfile.mkdtemp(), "weights.bin")
    with open(path, "w") as handle:
        handle.write("a" * n)
    return TrainingOutput(weights=Path(path))


class Trainer(BasePredictor):
    def setup(self) -> None:
        print("Trainer is setting up.")
        self.greeting = "hello train"

    def train(self, s: str) -> str:
        return f"{self.greeting} {s}"

    def predict(self, s: str) -> str:
        return "hello predict " + s


class SlowTrainer(Trainer):
    def setup(self) -> None:
        time.sleep(2)
        super().setup()
