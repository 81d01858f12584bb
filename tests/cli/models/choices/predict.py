
from cog import BasePredictor, ConcatenateIterator, Input, Path


class Predictor(BasePredictor):
    def predict(self,
                mode: str = Input(choices=["fast", "slow"], default="fast"),
                steps: int = Input(ge=1, le=50, default=10),
                scale: float = Input(default=1.0),
                words: list[str] = Input(default=[]),
                notes: list[Path] = Input(default=[])) -> ConcatenateIterator[str]:
        yield f"{mode} {steps} {scale}"
        for word in words:
            yield f" {word}"
        for note in notes:
            yield f" {note.read_text().strip()}"
